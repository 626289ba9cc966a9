import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DEBIAN_INSTALLER_PACKAGE, DEBIAN_INSTALLER_TREE, fetchDebianInstaller, parseMd5sums } from '../../src/fetch/debian-installer.js';
import { createSilentLogger } from '../../src/log.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/appliance', import.meta.url));

async function temp(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'netboot-di-'));
}

test('fetch debian-installer copies the packaged kernel and initrd, checked against the package md5sums', async (t) => {
  const assets = await temp();
  t.teardown(() => rm(assets, { recursive: true, force: true }));
  const { stdout } = await run(process.execPath, [BIN, 'fetch', 'debian-installer', '--assets', assets, '--log-level', 'warn']);
  const results = JSON.parse(stdout) as Array<{ asset: string; md5: string; action: string }>;
  t.deepEqual(
    results.map((r) => [r.asset, r.action]),
    [
      ['/assets/debian-installer/12/amd64/linux', 'copied'],
      ['/assets/debian-installer/12/amd64/initrd.gz', 'copied'],
    ],
  );
  // md5sum -c against dpkg's own list for the installed package: what was copied is what Debian shipped.
  const sums = parseMd5sums(await readFile(`/var/lib/dpkg/info/${DEBIAN_INSTALLER_PACKAGE}.md5sums`, 'utf8'));
  for (const r of results) t.is(r.md5, sums.get(`${DEBIAN_INSTALLER_TREE}/${path.basename(r.asset)}`) ?? 'missing');
  const check = await run('md5sum', [path.join(assets, 'debian-installer/12/amd64/linux')]);
  t.is(check.stdout.split(' ')[0], results[0]!.md5);
  // The kernel is a bzImage ("HdrS" at 0x202).
  const kernel = await readFile(path.join(assets, 'debian-installer/12/amd64/linux'));
  t.is(kernel.subarray(0x202, 0x206).toString('latin1'), 'HdrS');
  // Again: already there, nothing copied.
  const again = JSON.parse((await run(process.execPath, [BIN, 'fetch', 'debian-installer', '--assets', assets, '--log-level', 'warn'])).stdout) as Array<{
    action: string;
  }>;
  t.deepEqual(
    again.map((r) => r.action),
    ['present', 'present'],
  );
});

test('a damaged file in an unpacked package is refused and nothing is put in place', async (t) => {
  const root = await temp();
  const assets = await temp();
  t.teardown(async () => {
    await rm(root, { recursive: true, force: true });
    await rm(assets, { recursive: true, force: true });
  });
  await mkdir(path.join(root, 'DEBIAN'), { recursive: true });
  await mkdir(path.join(root, DEBIAN_INSTALLER_TREE), { recursive: true });
  await writeFile(path.join(root, DEBIAN_INSTALLER_TREE, 'linux'), 'not the kernel');
  await writeFile(path.join(root, DEBIAN_INSTALLER_TREE, 'initrd.gz'), 'x');
  await writeFile(
    path.join(root, 'DEBIAN', 'md5sums'),
    `e9bdb9f47b0a3d695a87ddd4df9703e8  ${DEBIAN_INSTALLER_TREE}/linux\n6b7d4330e0259939c24abad9ced5aff1  ${DEBIAN_INSTALLER_TREE}/initrd.gz\n`,
  );
  await t.throwsAsync(fetchDebianInstaller({ assetsDir: assets, log: createSilentLogger(), from: root }), { code: 'ERR_CHECKSUM', message: /is damaged/ });
  await t.throwsAsync(readFile(path.join(assets, 'debian-installer/12/amd64/linux')));
  await t.throwsAsync(fetchDebianInstaller({ assetsDir: assets, log: createSilentLogger(), from: assets }), {
    code: 'ERR_FETCH_SOURCE',
    message: /dpkg-deb -R/,
  });
});
