import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplianceError } from '../../src/errors.js';
import { createLogger, createSilentLogger } from '../../src/log.js';
import { PassThrough } from 'node:stream';
import { fetchRancherOS, normalizeRancherOSVersion, parseChecksums } from '../../src/fetch/rancheros.js';
import { makeFakeRelease, sha256, startMirror, type Mirror } from './_mirror.js';

const log = createSilentLogger();

function isCode(code: string) {
  return { instanceOf: ApplianceError, code } as const;
}

async function setup(version = 'v1.5.8') {
  const release = makeFakeRelease(version);
  const mirror: Mirror = await startMirror(release.files);
  const assetsDir = await mkdtemp(join(tmpdir(), 'fetch-ros-'));
  const dir = join(assetsDir, 'rancheros', version);
  return {
    release,
    mirror,
    assetsDir,
    dir,
    cleanup: async () => {
      await mirror.close();
      await rm(assetsDir, { recursive: true, force: true });
    },
  };
}

test('fetches vmlinuz and initrd from the mirror and verifies them', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  const progressFiles = new Set<string>();
  const result = await fetchRancherOS({ mirror: s.mirror.base, assetsDir: s.assetsDir, log, onProgress: (p) => progressFiles.add(p.file) });
  t.is(result.version, 'v1.5.8');
  t.is(result.dir, s.dir);
  t.deepEqual(await readFile(join(s.dir, 'vmlinuz')), s.release.vmlinuz);
  t.deepEqual(await readFile(join(s.dir, 'initrd')), s.release.initrd);
  t.deepEqual(
    result.files.map((f) => [f.name, f.action, f.sha256]),
    [
      ['vmlinuz', 'downloaded', sha256(s.release.vmlinuz)],
      ['initrd', 'downloaded', sha256(s.release.initrd)],
    ],
  );
  t.deepEqual((await readdir(s.dir)).sort(), ['initrd', 'vmlinuz'], 'no part files, no extras');
  t.deepEqual([...progressFiles].sort(), ['initrd', 'vmlinuz']);
  t.is(s.mirror.requestsFor('/v1.5.8/rancheros.iso').length, 0);
});

test('a second run keeps verified files and downloads nothing', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  await fetchRancherOS({ mirror: s.mirror.base, assetsDir: s.assetsDir, log });
  const before = s.mirror.requestsFor('/v1.5.8/initrd').length;
  const result = await fetchRancherOS({ mirror: `${s.mirror.base}/`, assetsDir: s.assetsDir, log });
  t.deepEqual(
    result.files.map((f) => f.action),
    ['present', 'present'],
  );
  t.is(s.mirror.requestsFor('/v1.5.8/initrd').length, before);
});

test('an existing file with the wrong content is replaced', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  await mkdir(s.dir, { recursive: true });
  await writeFile(join(s.dir, 'vmlinuz'), 'stale');
  const result = await fetchRancherOS({ mirror: s.mirror.base, assetsDir: s.assetsDir, log });
  t.is(result.files[0]?.action, 'downloaded');
  t.deepEqual(await readFile(join(s.dir, 'vmlinuz')), s.release.vmlinuz);
});

test('a corrupted checksum fails with ERR_FETCH_CHECKSUM and leaves nothing at dest', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  const good = sha256(s.release.initrd);
  const bad = `${good.slice(0, -1)}${good.endsWith('0') ? '1' : '0'}`;
  s.mirror.files.set('/v1.5.8/checksums.txt', Buffer.from(s.release.checksums.replace(good, bad)));
  const err = await t.throwsAsync(fetchRancherOS({ mirror: s.mirror.base, assetsDir: s.assetsDir, log }), isCode('ERR_FETCH_CHECKSUM'));
  t.true(err?.message.includes(bad));
  t.true(err?.message.includes(good));
  t.true(err?.message.includes(`${s.mirror.base}/v1.5.8/initrd`));
  t.false(existsSync(join(s.dir, 'initrd')));
  t.false(existsSync(join(s.dir, 'initrd.part')));
  t.true(existsSync(join(s.dir, 'vmlinuz')), 'the verified vmlinuz stays');
});

test('a download interrupted in one run is resumed by the next', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  s.mirror.faults.cutOnce.set('/v1.5.8/initrd', 400_000);
  await t.throwsAsync(fetchRancherOS({ mirror: s.mirror.base, assetsDir: s.assetsDir, log, retries: 0 }), isCode('ERR_FETCH_NETWORK'));
  t.false(existsSync(join(s.dir, 'initrd')));
  const partSize = (await stat(join(s.dir, 'initrd.part'))).size;
  t.true(partSize > 0);

  const result = await fetchRancherOS({ mirror: s.mirror.base, assetsDir: s.assetsDir, log, retries: 0 });
  t.deepEqual(await readFile(join(s.dir, 'initrd')), s.release.initrd);
  const initrd = result.files.find((f) => f.name === 'initrd');
  t.is(initrd?.resumedFrom, partSize);
  t.is(result.files.find((f) => f.name === 'vmlinuz')?.action, 'present');
  t.is(s.mirror.requestsFor('/v1.5.8/initrd')[1]?.headers.range, `bytes=${partSize}-`);
});

test('by default one run rides out an interruption by resuming', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  s.mirror.faults.cutOnce.set('/v1.5.8/vmlinuz', 50_000);
  const result = await fetchRancherOS({ mirror: s.mirror.base, assetsDir: s.assetsDir, log, retryDelayMs: 10 });
  t.true((result.files[0]?.resumedFrom ?? 0) > 0);
  t.deepEqual(await readFile(join(s.dir, 'vmlinuz')), s.release.vmlinuz);
});

test('an unknown version is ERR_FETCH_HTTP 404 on checksums.txt', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  const err = await t.throwsAsync(fetchRancherOS({ version: 'v9.9.9', mirror: s.mirror.base, assetsDir: s.assetsDir, log }), isCode('ERR_FETCH_HTTP'));
  t.true(err?.message.includes(`${s.mirror.base}/v9.9.9/checksums.txt`));
  t.false(existsSync(join(s.assetsDir, 'rancheros', 'v9.9.9', 'vmlinuz')));
});

test('checksums.txt without an initrd line is ERR_FETCH_CHECKSUMS', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  const text = s.release.checksums
    .split('\n')
    .filter((l) => !/^sha256: \S+ +initrd$/.test(l))
    .join('\n');
  t.not(text, s.release.checksums);
  s.mirror.files.set('/v1.5.8/checksums.txt', Buffer.from(text));
  const err = await t.throwsAsync(fetchRancherOS({ mirror: s.mirror.base, assetsDir: s.assetsDir, log }), isCode('ERR_FETCH_CHECKSUMS'));
  t.regex(err?.message ?? '', /initrd/);
  t.is(s.mirror.requestsFor('/v1.5.8/vmlinuz').length, 0, 'nothing downloaded');
});

test('bad versions and mirrors are rejected with coded errors and no request', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  for (const version of ['', 'latest', 'v1.5', '../../etc', 'v1.5.8/../../x', 'v1.5.8\\..', '1.5.8;rm -rf', 'v1.5.8\n', ' v1.5.8']) {
    await t.throwsAsync(fetchRancherOS({ version, mirror: s.mirror.base, assetsDir: s.assetsDir, log }), isCode('ERR_FETCH_VERSION'), JSON.stringify(version));
  }
  for (const mirror of ['', 'releases.rancher.com/os', 'ftp://127.0.0.1/os', 'http://127.0.0.1/os?x=1', 'http://127.0.0.1/os#a']) {
    await t.throwsAsync(fetchRancherOS({ mirror, assetsDir: s.assetsDir, log }), isCode('ERR_FETCH_MIRROR'), JSON.stringify(mirror));
  }
  // file:// mirrors are local imports (test/fetch/offline.test.ts); a folder that is not there is a setting error.
  await t.throwsAsync(fetchRancherOS({ mirror: 'file:///nonexistent/os', assetsDir: s.assetsDir, log }), isCode('ERR_CONFIG'));
  t.is(s.mirror.seen.length, 0);
  t.is(normalizeRancherOSVersion('1.5.8'), 'v1.5.8');
  t.is(normalizeRancherOSVersion('v1.6.0-rc1'), 'v1.6.0-rc1');
});

test('a version without the v prefix lands in the v-prefixed directory', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  const result = await fetchRancherOS({ version: '1.5.8', mirror: s.mirror.base, assetsDir: s.assetsDir, log });
  t.is(result.dir, s.dir);
  t.deepEqual(await readFile(join(s.dir, 'initrd')), s.release.initrd);
});

test('parseChecksums: sha256 lines in RancherOS and sha256sum layouts; md5 ignored; conflicts rejected', async (t) => {
  const sample = await readFile(new URL('../fixtures/fetch/rancheros-checksums.txt', import.meta.url), 'utf8');
  const sums = parseChecksums(sample);
  t.is(sums.get('vmlinuz'), 'a'.repeat(64));
  t.is(sums.get('initrd'), 'b'.repeat(64));
  t.is(sums.get('rancheros.iso'), 'c'.repeat(64));
  t.is(sums.get('rootfs.tar.gz'), 'd'.repeat(64));
  t.is(sums.get('binary-mode.img'), 'e'.repeat(64));
  t.false([...sums.values()].some((v) => v.length !== 64));
  t.is(sums.size, 5);
  t.throws(() => parseChecksums(`sha256: ${'a'.repeat(64)}  initrd\nsha256: ${'b'.repeat(64)}  initrd\n`), isCode('ERR_FETCH_CHECKSUMS'));
  t.is(parseChecksums(`sha256: ${'a'.repeat(64)}  initrd\nsha256: ${'A'.repeat(64)} initrd\n`).get('initrd'), 'a'.repeat(64));
  t.is(parseChecksums('').size, 0);
  t.is(parseChecksums(`sha256: ${'a'.repeat(63)}  initrd\nsha512: ${'a'.repeat(128)}  initrd\n`).size, 0);
});

test('without an onProgress listener, progress goes to log lines (stderr is not a TTY here)', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  const chunks: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => chunks.push(b.toString()));
  await fetchRancherOS({ mirror: s.mirror.base, assetsDir: s.assetsDir, log: createLogger({ destination: sink }) });
  await new Promise((r) => setImmediate(r));
  const entries = chunks
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; file?: string; received?: number });
  const ended = entries.filter((e) => e.msg === 'transfer ended');
  t.deepEqual(
    ended.map((e) => [e.file, e.received]),
    [
      ['vmlinuz', s.release.vmlinuz.length],
      ['initrd', s.release.initrd.length],
    ],
  );
});
