import test from 'ava';
import path from 'node:path';
import { fetchCommandFor } from '../../src/fetch/hint.js';

test('fetchCommandFor names the fetch command of each layout it writes, with flags only where they differ from the defaults', (t) => {
  t.is(fetchCommandFor('/assets/rancheros/v1.5.8/vmlinuz', 'assets'), 'node bin/appliance fetch rancheros');
  t.is(fetchCommandFor('/assets/rancheros/v1.4.2/initrd', 'assets'), 'node bin/appliance fetch rancheros --version v1.4.2');
  t.is(fetchCommandFor('/assets/rancheros/v1.5.8/vmlinuz', '/srv/assets'), 'node bin/appliance fetch rancheros --assets /srv/assets');
  t.is(fetchCommandFor('/assets/debian-installer/12/amd64/linux', path.resolve('assets')), 'node bin/appliance fetch debian-installer');
  t.is(fetchCommandFor('/assets/debian-installer/12/amd64/initrd.gz', '/srv/a'), 'node bin/appliance fetch debian-installer --assets /srv/a');
  t.is(fetchCommandFor('/assets/rancheros/v1.5.8/sub/vmlinuz', 'assets'), undefined, 'not a layout fetch writes');
  t.is(fetchCommandFor('/assets/fedora/vmlinuz', 'assets'), undefined);
});
