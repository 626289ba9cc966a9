import test from 'ava';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { downloadDebs, fetchSecureBoot, SIGNED_CHAIN, type Runner } from '../../src/fetch/secureboot.js';
import { createSilentLogger } from '../../src/log.js';
import { tempDir } from '../store/helpers.js';

const log = createSilentLogger();
// A real signed x86-64 PE image stands in for shim and grub: Debian's kernel (EFI stub, signed).
const SIGNED_X64 = join('/boot', readdirSync('/boot').find((n) => /^vmlinuz-.*-amd64$/.test(n)) ?? 'missing-kernel');

/** What downloading grub and shim for arm64 on an amd64 host runs, in order. */
const ARM64_DOWNLOAD = [
  'dpkg --print-architecture',
  'dpkg --print-foreign-architectures',
  'dpkg --add-architecture arm64',
  'apt-get update -qq',
  'apt-get download grub-efi-arm64-signed shim-signed:arm64',
  'dpkg --remove-architecture arm64',
  'apt-get update -qq',
];

function recorder(): { run: Runner; calls: string[] } {
  const calls: string[] = [];
  const run: Runner = async (cmd, args, options) => {
    calls.push([cmd, ...args].join(' '));
    if (cmd === 'dpkg' && args[0] === '--print-architecture') return { stdout: 'amd64\n' };
    if (cmd === 'dpkg' && args[0] === '--print-foreign-architectures') return { stdout: '\n' };
    if (cmd === 'apt-get' && args[0] === 'download') for (const p of args.slice(1)) writeFileSync(join(options!.cwd!, `${p.split(':')[0]}_1.0_arm64.deb`), '');
    return { stdout: '' };
  };
  return { run, calls };
}

test('installed packages are copied into the tftp root under the names shim looks for', async (t) => {
  t.true(existsSync(SIGNED_X64), 'no Debian kernel in /boot (scripts/install installs linux-image-cloud-amd64)');
  const { dir, cleanup } = await tempDir('netboot-sb-');
  t.teardown(cleanup);
  for (const spec of SIGNED_CHAIN.amd64) {
    mkdirSync(dirname(join(dir, 'sys', spec.packagePath)), { recursive: true });
    copyFileSync(SIGNED_X64, join(dir, 'sys', spec.packagePath));
  }
  const { run, calls } = recorder();
  const out = await fetchSecureBoot({ tftpRoot: join(dir, 'tftp'), systemRoot: join(dir, 'sys'), cacheDir: join(dir, 'cache'), log, run });
  t.deepEqual(
    out.map((r) => [r.name, r.source]),
    [
      ['shimx64.efi', 'system package'],
      ['grubx64.efi', 'system package'],
    ],
  );
  t.true(existsSync(join(dir, 'tftp', 'shimx64.efi')) && existsSync(join(dir, 'tftp', 'grubx64.efi')));
  t.deepEqual(calls, [], 'nothing downloaded when the system has the files');
});

test('an unsigned image is never installed as shim or grub', async (t) => {
  const { dir, cleanup } = await tempDir('netboot-sb-');
  t.teardown(cleanup);
  for (const spec of SIGNED_CHAIN.amd64) {
    mkdirSync(dirname(join(dir, 'sys', spec.packagePath)), { recursive: true });
    // Debian's iPXE build: a real PE image, but unsigned.
    copyFileSync('/usr/lib/ipxe/snponly.efi', join(dir, 'sys', spec.packagePath));
  }
  await t.throwsAsync(fetchSecureBoot({ tftpRoot: join(dir, 'tftp'), systemRoot: join(dir, 'sys'), cacheDir: join(dir, 'cache'), log, run: recorder().run }), {
    message: /is not a signed x86-64 efi image/,
  });
  t.false(existsSync(join(dir, 'tftp', 'shimx64.efi')));
});

test('arm64 packages: the architecture is added for the download and removed again, then unpacked', async (t) => {
  const { dir, cleanup } = await tempDir('netboot-sb-');
  t.teardown(cleanup);
  const { run, calls } = recorder();
  await downloadDebs(['grub-efi-arm64-signed', 'shim-signed:arm64'], join(dir, 'cache'), { log, run, foreignArch: 'arm64' });
  t.deepEqual(
    calls.filter((c) => !c.startsWith('dpkg-deb')),
    ARM64_DOWNLOAD,
  );
  t.is(calls.filter((c) => c.startsWith('dpkg-deb -x')).length, 2);
  // A second run finds the packages in the cache: no architecture change, no download.
  const again = recorder();
  await downloadDebs(['grub-efi-arm64-signed', 'shim-signed:arm64'], join(dir, 'cache'), { log, run: again.run, foreignArch: 'arm64' });
  t.deepEqual(
    again.calls.filter((c) => !c.startsWith('dpkg-deb')),
    [],
  );
});

test('two downloads at once run one after the other: apt is never run twice at once, and the second finds the packages', async (t) => {
  const { dir, cleanup } = await tempDir('netboot-sb-');
  t.teardown(cleanup);
  const { run: record, calls } = recorder();
  let running = 0;
  let most = 0;
  // Every command takes a turn of the event loop, as a real child process does.
  const run: Runner = async (cmd, args, options) => {
    running += 1;
    most = Math.max(most, running);
    await new Promise((resolve) => setTimeout(resolve, 2));
    try {
      return await record(cmd, args, options);
    } finally {
      running -= 1;
    }
  };
  const cache = join(dir, 'cache');
  const packages = ['grub-efi-arm64-signed', 'shim-signed:arm64'];
  await Promise.all([downloadDebs(packages, cache, { log, run, foreignArch: 'arm64' }), downloadDebs(packages, cache, { log, run, foreignArch: 'arm64' })]);
  t.is(most, 1, 'two commands ran at once');
  t.deepEqual(
    calls.filter((c) => !c.startsWith('dpkg-deb')),
    ARM64_DOWNLOAD,
  );
});

test('a failed download names the packages and the fix, and still removes the added architecture', async (t) => {
  const { dir, cleanup } = await tempDir('netboot-sb-');
  t.teardown(cleanup);
  const calls: string[] = [];
  const run: Runner = async (cmd, args) => {
    calls.push([cmd, ...args].join(' '));
    if (args[0] === '--print-architecture') return { stdout: 'amd64' };
    if (args[0] === '--print-foreign-architectures') return { stdout: '' };
    if (args[0] === 'download') throw Object.assign(new Error('exit 100'), { stderr: 'E: Unable to locate package grub-efi-arm64-signed' });
    return { stdout: '' };
  };
  await t.throwsAsync(downloadDebs(['grub-efi-arm64-signed'], join(dir, 'cache'), { log, run, foreignArch: 'arm64' }), {
    message: /apt-get download grub-efi-arm64-signed failed: E: Unable to locate package.*apt-get update/,
  });
  t.true(calls.includes('dpkg --remove-architecture arm64'));
});
