import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplianceError } from '../../src/errors.js';
import { createLogger, createSilentLogger } from '../../src/log.js';
import { checkIpxeImage, fetchIpxe, KPXE_MIN_BYTES } from '../../src/fetch/ipxe.js';
import { sha256, startMirror } from './_mirror.js';
import { PassThrough } from 'node:stream';

const log = createSilentLogger();

function isCode(code: string) {
  return { instanceOf: ApplianceError, code } as const;
}

/** A minimal PE image: DOS header with e_lfanew, `PE\0\0`, COFF machine type, random rest. */
function fakePe(machine: number, size = 100 * 1024): Buffer {
  const data = randomBytes(size);
  data.write('MZ', 0, 'latin1');
  data.writeUInt32LE(0x80, 0x3c);
  data.writeUInt32BE(0x50450000, 0x80);
  data.writeUInt16LE(machine, 0x84);
  return data;
}

function fakeKpxe(size = 70 * 1024): Buffer {
  const data = randomBytes(size);
  data[0] = 0xeb; // a jmp, like real boot code; anything but "MZ" or "<"
  return data;
}

async function tempDirs(t: { teardown: (fn: () => Promise<void>) => void }) {
  const root = await mkdtemp(join(tmpdir(), 'fetch-ipxe-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const system = join(root, 'system');
  const tftpRoot = join(root, 'tftpboot');
  await mkdir(system, { recursive: true });
  return { root, system, tftpRoot };
}

test('copies the boot files from a system directory, atomically and idempotently', async (t) => {
  const d = await tempDirs(t);
  const files = {
    'undionly.kpxe': fakeKpxe(),
    'ipxe.efi': fakePe(0x8664),
    'snponly.efi': fakePe(0x8664, 60 * 1024),
  };
  for (const [name, data] of Object.entries(files)) await writeFile(join(d.system, name), data);
  await mkdir(join(d.system, 'arm64-efi'));
  await writeFile(join(d.system, 'arm64-efi', 'snponly.efi'), fakePe(0xaa64));

  const results = await fetchIpxe({ tftpRoot: d.tftpRoot, systemDirs: [join(d.root, 'absent'), d.system], download: false, log });
  t.deepEqual(
    results.map((r) => [r.name, r.source, r.changed]),
    [
      ['undionly.kpxe', 'system', true],
      ['ipxe.efi', 'system', true],
      ['snponly.efi', 'system', true],
      ['snponly-arm64.efi', 'system', true],
    ],
  );
  for (const [name, data] of Object.entries(files)) {
    t.deepEqual(await readFile(join(d.tftpRoot, name)), data, name);
    const r = results.find((x) => x.name === name);
    t.is(r?.from, join(d.system, name));
    t.is(r?.sha256, sha256(data));
  }
  t.deepEqual((await readdir(d.tftpRoot)).sort(), ['ipxe.efi', 'snponly-arm64.efi', 'snponly.efi', 'undionly.kpxe'], 'no temp files left');

  const again = await fetchIpxe({ tftpRoot: d.tftpRoot, systemDirs: [d.system], download: false, log });
  t.true(again.every((r) => !r.changed));
});

test('a system file that looks wrong is skipped, and a wrong-arch arm64 build is not installed', async (t) => {
  const d = await tempDirs(t);
  await writeFile(join(d.system, 'undionly.kpxe'), fakeKpxe());
  await writeFile(join(d.system, 'ipxe.efi'), fakePe(0x8664));
  await writeFile(join(d.system, 'snponly.efi'), Buffer.alloc(0));
  await writeFile(join(d.system, 'snponly-arm64.efi'), fakePe(0x8664));
  const err = await t.throwsAsync(fetchIpxe({ tftpRoot: d.tftpRoot, systemDirs: [d.system], download: false, log }), isCode('ERR_FETCH_IPXE_MISSING'));
  t.deepEqual((err as ApplianceError).detail?.missing, ['snponly.efi']);
  t.false(existsSync(join(d.tftpRoot, 'snponly.efi')));
  t.false(existsSync(join(d.tftpRoot, 'snponly-arm64.efi')));
  t.true(existsSync(join(d.tftpRoot, 'ipxe.efi')), 'the good files were still installed');
});

test('missing files without download fail naming apt-get install ipxe', async (t) => {
  const d = await tempDirs(t);
  await writeFile(join(d.system, 'ipxe.efi'), fakePe(0x8664));
  const err = await t.throwsAsync(fetchIpxe({ tftpRoot: d.tftpRoot, systemDirs: [d.system], download: false, log }), isCode('ERR_FETCH_IPXE_MISSING'));
  t.regex(err?.message ?? '', /apt-get install ipxe/);
  t.regex(err?.message ?? '', /undionly\.kpxe, snponly\.efi/);
  t.regex(err?.message ?? '', /allow downloading/);
});

test('files the system lacks are downloaded from the mirror and format-checked', async (t) => {
  const d = await tempDirs(t);
  await writeFile(join(d.system, 'ipxe.efi'), fakePe(0x8664));
  const snp = fakePe(0x8664, 80 * 1024);
  const kpxe = fakeKpxe();
  const mirror = await startMirror(
    new Map([
      ['/ipxe/snponly.efi', snp],
      ['/ipxe/undionly.kpxe', kpxe],
    ]),
  );
  t.teardown(() => mirror.close());
  const lines: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => lines.push(b.toString()));
  const results = await fetchIpxe({
    tftpRoot: d.tftpRoot,
    systemDirs: [d.system],
    mirror: `${mirror.base}/ipxe/`,
    download: true,
    log: createLogger({ destination: sink }),
  });
  t.deepEqual(
    results.map((r) => [r.name, r.source]),
    [
      ['undionly.kpxe', 'download'],
      ['ipxe.efi', 'system'],
      ['snponly.efi', 'download'],
    ],
  );
  t.is(results[2]?.from, `${mirror.base}/ipxe/snponly.efi`);
  t.deepEqual(await readFile(join(d.tftpRoot, 'snponly.efi')), snp);
  t.deepEqual(await readFile(join(d.tftpRoot, 'undionly.kpxe')), kpxe);
  t.is(mirror.requestsFor('/ipxe/ipxe.efi').length, 0);
  t.regex(lines.join(''), /publishes no checksums/);

  // Once downloaded, a later run keeps them and does not download again.
  const again = await fetchIpxe({ tftpRoot: d.tftpRoot, systemDirs: [d.system], mirror: `${mirror.base}/ipxe`, download: false, log });
  t.deepEqual(
    again.map((r) => r.source),
    ['present', 'system', 'present'],
  );
  t.is(mirror.requestsFor('/ipxe/snponly.efi').length, 1);
});

test('a download that is not an EFI image (an HTML page) is refused and not installed', async (t) => {
  const d = await tempDirs(t);
  await writeFile(join(d.system, 'ipxe.efi'), fakePe(0x8664));
  await writeFile(join(d.system, 'undionly.kpxe'), fakeKpxe());
  const mirror = await startMirror(new Map([['/snponly.efi', Buffer.from('<!DOCTYPE html><html>captive portal</html>')]]));
  t.teardown(() => mirror.close());
  const err = await t.throwsAsync(
    fetchIpxe({ tftpRoot: d.tftpRoot, systemDirs: [d.system], mirror: mirror.base, download: true, log }),
    isCode('ERR_FETCH_IPXE_INVALID'),
  );
  t.regex(err?.message ?? '', /MZ/);
  t.false(existsSync(join(d.tftpRoot, 'snponly.efi')));
  t.false(existsSync(join(d.tftpRoot, 'snponly.efi.part')));
});

test('a 404 from the mirror is ERR_FETCH_HTTP', async (t) => {
  const d = await tempDirs(t);
  const mirror = await startMirror(new Map());
  t.teardown(() => mirror.close());
  const err = await t.throwsAsync(
    fetchIpxe({ tftpRoot: d.tftpRoot, systemDirs: [d.system], mirror: mirror.base, download: true, log }),
    isCode('ERR_FETCH_HTTP'),
  );
  t.true(err?.message.includes(`${mirror.base}/undionly.kpxe`));
});

test('a bad mirror is ERR_FETCH_MIRROR', async (t) => {
  const d = await tempDirs(t);
  await t.throwsAsync(
    fetchIpxe({ tftpRoot: d.tftpRoot, systemDirs: [d.system], mirror: 'file:///usr/lib/ipxe', download: true, log }),
    isCode('ERR_FETCH_MIRROR'),
  );
});

// /usr/lib/ipxe comes from Debian's `ipxe` package, installed here and by .ci/run. This test
// fails (rather than skips) without it, because then the appliance would have nothing to serve.
test('copies the real binaries from the system iPXE package', async (t) => {
  const d = await tempDirs(t);
  t.true(existsSync('/usr/lib/ipxe/snponly.efi'), '/usr/lib/ipxe/snponly.efi missing: apt-get install ipxe');
  const results = await fetchIpxe({ tftpRoot: d.tftpRoot, download: false, log });
  for (const name of ['undionly.kpxe', 'ipxe.efi', 'snponly.efi']) {
    const r = results.find((x) => x.name === name);
    t.is(r?.source, 'system', name);
    t.true(r?.from.startsWith('/usr/lib/ipxe/') || r?.from.startsWith('/usr/share/ipxe/'), r?.from);
    t.deepEqual(await readFile(join(d.tftpRoot, name)), await readFile(r?.from ?? ''), name);
  }
  const snp = await readFile(join(d.tftpRoot, 'snponly.efi'));
  t.is(snp.subarray(0, 2).toString('latin1'), 'MZ');
  t.is(checkIpxeImage(snp, 'efi-x64'), undefined);
  t.is(checkIpxeImage(await readFile(join(d.tftpRoot, 'undionly.kpxe')), 'bios'), undefined);
});

test('checkIpxeImage tells images from impostors', (t) => {
  t.is(checkIpxeImage(fakePe(0x8664), 'efi-x64'), undefined);
  t.is(checkIpxeImage(fakePe(0xaa64), 'efi-arm64'), undefined);
  t.regex(checkIpxeImage(fakePe(0xaa64), 'efi-x64') ?? '', /machine type 0xaa64/);
  t.regex(checkIpxeImage(Buffer.alloc(0), 'efi-x64') ?? '', /empty/);
  t.regex(checkIpxeImage(randomBytes(4096), 'efi-x64') ?? '', /MZ/);
  const noPe = fakePe(0x8664);
  noPe.writeUInt32BE(0, 0x80);
  t.regex(checkIpxeImage(noPe, 'efi-x64') ?? '', /PE signature/);
  const farPe = fakePe(0x8664, 1024);
  farPe.writeUInt32LE(0xfffffff0, 0x3c);
  t.regex(checkIpxeImage(farPe, 'efi-x64') ?? '', /PE signature/);
  t.is(checkIpxeImage(fakeKpxe(), 'bios'), undefined);
  t.regex(checkIpxeImage(fakeKpxe(KPXE_MIN_BYTES - 1), 'bios') ?? '', /outside/);
  const html = Buffer.concat([Buffer.from('  <html>'), Buffer.alloc(KPXE_MIN_BYTES)]);
  t.regex(checkIpxeImage(html, 'bios') ?? '', /html/);
  t.regex(checkIpxeImage(fakePe(0x8664), 'bios') ?? '', /PE/);
});
