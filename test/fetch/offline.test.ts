/**
 * Offline fetches: `--from DIR|FILE` and `file://` mirrors import kernel/initrd with the release's
 * sha256 check; an unreachable mirror gets a plain message naming the files and the folder.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fetchRancherOS } from '../../src/fetch/rancheros.js';
import { fetchIpxe } from '../../src/fetch/ipxe.js';
import { createSilentLogger } from '../../src/log.js';
import { BIN, ROOT } from '../helpers/appliance-process.js';

const log = createSilentLogger();
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** A folder as a user copies it from the release page: vmlinuz, initrd, checksums.txt. */
function releaseFolder(opts: { corruptInitrd?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'rancheros-usb-'));
  const vmlinuz = Buffer.from('kernel bytes '.repeat(1000));
  const initrd = Buffer.from('initrd bytes '.repeat(2000));
  writeFileSync(join(dir, 'vmlinuz'), vmlinuz);
  writeFileSync(join(dir, 'initrd'), opts.corruptInitrd ? Buffer.concat([initrd, Buffer.from('x')]) : initrd);
  // md5 and sha256 lines, as RancherOS publishes them.
  writeFileSync(
    join(dir, 'checksums.txt'),
    `md5: 0123456789abcdef0123456789abcdef  vmlinuz\nsha256: ${sha(vmlinuz)}  vmlinuz\nsha256: ${sha(initrd)}  initrd\n`,
  );
  return { dir, vmlinuz, initrd };
}

/** A loopback port nothing listens on (connection refused, as offline). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('--from DIR imports vmlinuz and initrd, checked against checksums.txt; a second run keeps them', async (t) => {
  const src = releaseFolder();
  const assets = mkdtempSync(join(tmpdir(), 'assets-'));
  const r = await fetchRancherOS({ assetsDir: assets, from: src.dir, log });
  t.deepEqual(
    r.files.map((f) => [f.name, f.action]),
    [
      ['vmlinuz', 'imported'],
      ['initrd', 'imported'],
    ],
  );
  t.deepEqual(readFileSync(join(assets, 'rancheros', 'v1.5.8', 'initrd')), src.initrd);
  const again = await fetchRancherOS({ assetsDir: assets, from: src.dir, log });
  t.deepEqual(
    again.files.map((f) => f.action),
    ['present', 'present'],
  );
});

test('--from refuses a file whose sha256 does not match, and copies nothing of it', async (t) => {
  const src = releaseFolder({ corruptInitrd: true });
  const assets = mkdtempSync(join(tmpdir(), 'assets-'));
  await t.throwsAsync(fetchRancherOS({ assetsDir: assets, from: src.dir, log }), {
    code: 'ERR_FETCH_CHECKSUM',
    message: /initrd has sha256 [0-9a-f]{64}, but the release checksum is [0-9a-f]{64}/,
  } as never);
  t.false(existsSync(join(assets, 'rancheros', 'v1.5.8', 'initrd')));
});

test('--from FILE imports that one file; a folder without checksums.txt is refused with what to copy', async (t) => {
  const src = releaseFolder();
  const assets = mkdtempSync(join(tmpdir(), 'assets-'));
  const r = await fetchRancherOS({ assetsDir: assets, from: join(src.dir, 'vmlinuz'), log });
  t.deepEqual(
    r.files.map((f) => [f.name, f.action]),
    [['vmlinuz', 'imported']],
  );
  const bare = mkdtempSync(join(tmpdir(), 'bare-'));
  writeFileSync(join(bare, 'vmlinuz'), 'x');
  await t.throwsAsync(fetchRancherOS({ assetsDir: assets, from: bare, log }), {
    message: /no checksums\.txt in .*copy https:\/\/releases\.rancher\.com\/os\/v1\.5\.8\/checksums\.txt there too/,
  });
  await t.throwsAsync(fetchRancherOS({ assetsDir: assets, from: join(bare, 'nope'), log }), { code: 'ERR_CONFIG' } as never);
});

test('a file:// mirror with the release layout is imported the same way', async (t) => {
  const src = releaseFolder();
  const mirror = mkdtempSync(join(tmpdir(), 'mirror-'));
  mkdirSync(join(mirror, 'v1.5.8'));
  for (const f of ['vmlinuz', 'initrd', 'checksums.txt']) writeFileSync(join(mirror, 'v1.5.8', f), readFileSync(join(src.dir, f)));
  const assets = mkdtempSync(join(tmpdir(), 'assets-'));
  const r = await fetchRancherOS({ assetsDir: assets, mirror: pathToFileURL(mirror).href, log });
  t.deepEqual(
    r.files.map((f) => f.action),
    ['imported', 'imported'],
  );
});

test('an unreachable mirror says the machine looks offline, names the files, the folder and --from', async (t) => {
  const port = await closedPort();
  const assets = mkdtempSync(join(tmpdir(), 'assets-'));
  const err = await t.throwsAsync(fetchRancherOS({ assetsDir: assets, mirror: `http://127.0.0.1:${port}/os`, log, retries: 0 }));
  t.is((err as { code?: string }).code, 'ERR_FETCH_OFFLINE');
  t.regex(err!.message, new RegExp(`cannot reach 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\); this machine looks offline`));
  for (const f of ['checksums.txt', 'vmlinuz', 'initrd']) t.true(err!.message.includes(`http://127.0.0.1:${port}/os/v1.5.8/${f}`), f);
  t.true(err!.message.includes(join(assets, 'rancheros', 'v1.5.8')));
  t.regex(err!.message, /run: node bin\/appliance fetch rancheros --from FOLDER/);
  // fetch ipxe says the same when the system package lacks a file and the site is unreachable.
  const tftpRoot = mkdtempSync(join(tmpdir(), 'tftp-'));
  const empty = mkdtempSync(join(tmpdir(), 'no-ipxe-'));
  const ipxeErr = await t.throwsAsync(fetchIpxe({ tftpRoot, systemDirs: [empty], download: true, mirror: `http://127.0.0.1:${port}`, log, retries: 0 }));
  t.is((ipxeErr as { code?: string }).code, 'ERR_FETCH_OFFLINE');
  t.regex(ipxeErr!.message, /undionly\.kpxe .*ipxe\.efi .*snponly\.efi.*fetch ipxe --from FOLDER.*apt-get install ipxe/);
});

test('through the CLI: fetch rancheros --from imports (exit 0), refuses a bad checksum (exit 1), a missing --from exits 2', (t) => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 30_000 });
  const assets = mkdtempSync(join(tmpdir(), 'assets-'));
  const ok = run(['fetch', 'rancheros', '--from', releaseFolder().dir, '--assets', assets]);
  t.is(ok.status, 0, ok.stderr);
  t.deepEqual(
    (JSON.parse(ok.stdout) as { files: Array<{ action: string }> }).files.map((f) => f.action),
    ['imported', 'imported'],
  );
  const bad = run(['fetch', 'rancheros', '--from', releaseFolder({ corruptInitrd: true }).dir, '--assets', mkdtempSync(join(tmpdir(), 'assets-'))]);
  t.is(bad.status, 1);
  t.regex(bad.stderr, /^appliance: .*initrd has sha256 .* nothing was copied$/m);
  const missing = run(['fetch', 'rancheros', '--from', '/nonexistent/usb', '--assets', assets]);
  t.is(missing.status, 2);
  t.regex(missing.stderr, /--from \/nonexistent\/usb is not a file or folder/);
  const ipxe = run(['fetch', 'ipxe', '--from', '/nonexistent/usb', '--tftp-root', mkdtempSync(join(tmpdir(), 'tftp-'))]);
  t.is(ipxe.status, 2);
});
