import test from 'ava';
import { copyFileSync, mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '../src/config.js';

test('the shipped config/appliance.example.json is a valid settings file', (t) => {
  const home = mkdtempSync(join(tmpdir(), 'appliance-example-'));
  for (const d of ['tftpboot', 'assets', 'templates', 'config']) mkdirSync(join(home, d));
  copyFileSync(resolve(import.meta.dirname, '..', 'config', 'appliance.example.json'), join(home, 'config', 'appliance.json'));
  const c = loadConfig({
    home,
    env: {},
    interfaces: { br0: [{ address: '10.99.0.1', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: '10.99.0.1/24' }] },
  });
  t.is(c.address, '10.99.0.1');
  t.deepEqual(c.dhcpRange, { start: '10.99.0.100', end: '10.99.0.200' });
  t.is(c.sources.dhcpRange, 'file');
});
