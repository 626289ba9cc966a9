import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startHarness } from './helpers.js';

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function dirs() {
  const base = mkdtempSync(path.join(tmpdir(), 'netboot-bootfiles-'));
  const root = path.join(base, 'tftpboot');
  const outside = path.join(base, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(path.join(root, 'custom.efi'), 'MZ custom build');
  writeFileSync(path.join(outside, 'secret'), 'do not serve');
  symlinkSync(path.join(outside, 'secret'), path.join(root, 'escape.efi'));
  return { root, outside };
}

test('UEFI HTTP boot gets the iPXE binary from the TFTP root, then the system iPXE package', async (t) => {
  const { root } = dirs();
  const h = await startHarness({ bootDirs: [root, '/usr/lib/ipxe'] });
  t.teardown(() => h.close());
  const custom = await fetch(`${h.url}/boot/custom.efi`);
  t.is(custom.status, 200);
  t.is(custom.headers.get('content-type'), 'application/efi');
  t.is(await custom.text(), 'MZ custom build');
  const system = await fetch(`${h.url}/boot/snponly.efi`);
  t.is(system.status, 200);
  t.is(sha256(Buffer.from(await system.arrayBuffer())), sha256(readFileSync('/usr/lib/ipxe/snponly.efi')));
  // Debian ships ipxe.efi as a symlink into /boot: the package's own symlink is followed.
  const full = await fetch(`${h.url}/boot/ipxe.efi`, { method: 'HEAD' });
  t.is(full.status, 200);
  t.is(Number(full.headers.get('content-length')), readFileSync('/usr/lib/ipxe/ipxe.efi').length);
  t.true(h.events.list().some((e) => e.type === 'http-asset' && e.detail?.file === 'snponly.efi'));
});

test('nothing outside the boot directories is served', async (t) => {
  const { root } = dirs();
  const h = await startHarness({ bootDirs: [root] });
  t.teardown(() => h.close());
  for (const p of ['/boot/escape.efi', '/boot/..%2Foutside%2Fsecret', '/boot/%2e%2e/outside/secret', '/boot/missing.efi', '/boot/undionly.kpxe']) {
    const res = await fetch(`${h.url}${p}`);
    t.is(res.status, 404, p);
    const body = (await res.json()) as { error: { code: string } };
    // fetch folds %2e%2e before sending, so that one never reaches /boot/ at all.
    t.regex(body.error.code, /^ERR_(ASSET_)?NOT_FOUND$/, p);
    t.false(JSON.stringify(body).includes('do not serve'), p);
  }
});
