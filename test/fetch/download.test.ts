import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { ApplianceError } from '../../src/errors.js';
import { createLogger, createSilentLogger } from '../../src/log.js';
import { downloadFile, fetchText, normalizeMirror, parseContentRange, parseHttpUrl, type DownloadProgress } from '../../src/fetch/download.js';
import { createProgressReporter, formatSize } from '../../src/fetch/progress.js';
import { etagFor, sha256, startMirror, type Mirror } from './_mirror.js';

const log = createSilentLogger();

async function setup(size = 256 * 1024): Promise<{ mirror: Mirror; dir: string; body: Buffer; url: string; dest: string; cleanup: () => Promise<void> }> {
  const body = randomBytes(size);
  const mirror = await startMirror(new Map([['/file.bin', body]]));
  const dir = await mkdtemp(join(tmpdir(), 'fetch-dl-'));
  return {
    mirror,
    dir,
    body,
    url: `${mirror.base}/file.bin`,
    dest: join(dir, 'out', 'file.bin'),
    cleanup: async () => {
      await mirror.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Leave a part file and sidecar as an interrupted earlier run would have. */
async function seedPart(dest: string, prefix: Buffer, url: string, validator?: string): Promise<void> {
  await mkdir(join(dest, '..'), { recursive: true });
  await writeFile(`${dest}.part`, prefix);
  await writeFile(`${dest}.part.json`, JSON.stringify({ url, ...(validator !== undefined ? { validator } : {}) }));
}

function isCode(code: string) {
  return { instanceOf: ApplianceError, code } as const;
}

test('downloads, verifies, renames into place and leaves no part files', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  const events: DownloadProgress[] = [];
  const result = await downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(s.body), log, onProgress: (p) => events.push(p) });
  t.deepEqual(await readFile(s.dest), s.body);
  t.is(result.sha256, sha256(s.body));
  t.is(result.bytes, s.body.length);
  t.is(result.resumedFrom, 0);
  t.false(existsSync(`${s.dest}.part`));
  t.false(existsSync(`${s.dest}.part.json`));
  const last = events.at(-1);
  t.truthy(last);
  t.true(last?.done);
  t.is(last?.received, s.body.length);
  t.is(last?.total, s.body.length);
  t.is(events.filter((e) => e.done).length, 1);
  t.is(s.mirror.requestsFor('/file.bin')[0]?.headers.range, undefined);
});

test('checksum mismatch throws ERR_FETCH_CHECKSUM naming both hashes and the url, and leaves nothing', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  const wrong = 'ab'.repeat(32);
  const err = await t.throwsAsync(downloadFile({ url: s.url, dest: s.dest, expectedSha256: wrong, log }), isCode('ERR_FETCH_CHECKSUM'));
  t.regex(err?.message ?? '', new RegExp(wrong));
  t.regex(err?.message ?? '', new RegExp(sha256(s.body)));
  t.true(err?.message.includes(s.url));
  t.false(existsSync(s.dest));
  t.false(existsSync(`${s.dest}.part`));
  t.false(existsSync(`${s.dest}.part.json`));
});

test('an interrupted download keeps its part and the next call resumes with Range', async (t) => {
  const s = await setup(512 * 1024);
  t.teardown(s.cleanup);
  s.mirror.faults.cutOnce.set('/file.bin', 100_000);
  await t.throwsAsync(downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(s.body), log }), isCode('ERR_FETCH_NETWORK'));
  t.false(existsSync(s.dest), 'nothing half-written at dest');
  const partSize = (await stat(`${s.dest}.part`)).size;
  t.true(partSize > 0 && partSize <= 100_000, `part holds a prefix (${partSize} bytes)`);

  const result = await downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(s.body), log });
  t.deepEqual(await readFile(s.dest), s.body);
  t.is(result.resumedFrom, partSize);
  const second = s.mirror.requestsFor('/file.bin')[1];
  t.is(second?.headers.range, `bytes=${partSize}-`);
  t.truthy(second?.headers['if-range'], 'If-Range carries the validator from the first response');
  t.false(existsSync(`${s.dest}.part`));
  t.false(existsSync(`${s.dest}.part.json`));
});

test('retries within one call resume automatically', async (t) => {
  const s = await setup(512 * 1024);
  t.teardown(s.cleanup);
  s.mirror.faults.cutOnce.set('/file.bin', 200_000);
  const result = await downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(s.body), log, retries: 2, retryDelayMs: 10 });
  t.deepEqual(await readFile(s.dest), s.body);
  t.true(result.resumedFrom > 0);
  t.is(s.mirror.requestsFor('/file.bin').length, 2);
  t.regex(String(s.mirror.requestsFor('/file.bin')[1]?.headers.range), /^bytes=\d+-$/);
});

test('a server that ignores Range (200) makes the download restart from zero', async (t) => {
  const s = await setup(512 * 1024);
  t.teardown(s.cleanup);
  await seedPart(s.dest, s.body.subarray(0, 100_000), s.url);
  s.mirror.faults.ignoreRange = true;
  const result = await downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(s.body), log });
  t.deepEqual(await readFile(s.dest), s.body);
  t.is(result.resumedFrom, 0);
  t.is(s.mirror.requestsFor('/file.bin')[0]?.headers.range, 'bytes=100000-', 'it did ask for a range');
});

test('a 206 with a Content-Range that does not start at the offset is not appended', async (t) => {
  const s = await setup(512 * 1024);
  t.teardown(s.cleanup);
  await seedPart(s.dest, s.body.subarray(0, 100_000), s.url);
  s.mirror.faults.badContentRange = true;
  const result = await downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(s.body), log });
  t.deepEqual(await readFile(s.dest), s.body);
  t.is(result.resumedFrom, 0);
  const reqs = s.mirror.requestsFor('/file.bin');
  t.is(reqs.length, 2, 'bogus range reply, then a fresh request');
  t.is(reqs[0]?.headers.range, 'bytes=100000-');
  t.is(reqs[1]?.headers.range, undefined);
});

test('a file changed upstream since the interruption is fetched whole (If-Range)', async (t) => {
  const s = await setup(512 * 1024);
  t.teardown(s.cleanup);
  await seedPart(s.dest, s.body.subarray(0, 100_000), s.url, etagFor(s.body));
  const replaced = randomBytes(400 * 1024);
  s.mirror.files.set('/file.bin', replaced);
  const result = await downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(replaced), log });
  t.deepEqual(await readFile(s.dest), replaced);
  t.is(result.resumedFrom, 0);
  t.is(s.mirror.requestsFor('/file.bin')[0]?.headers['if-range'], etagFor(s.body));
});

test('a part that is already complete (416) is verified and installed', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  await seedPart(s.dest, s.body, s.url);
  const result = await downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(s.body), log });
  t.deepEqual(await readFile(s.dest), s.body);
  t.is(result.resumedFrom, s.body.length);
  t.is(s.mirror.requestsFor('/file.bin')[0]?.headers.range, `bytes=${s.body.length}-`);
});

test('a part longer than the file upstream (416 for another length) starts over', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  await seedPart(s.dest, Buffer.concat([s.body, randomBytes(10)]), s.url);
  const result = await downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(s.body), log });
  t.deepEqual(await readFile(s.dest), s.body);
  t.is(result.resumedFrom, 0);
  t.is(s.mirror.requestsFor('/file.bin').length, 2);
});

test('a part without our sidecar is discarded, not trusted as a prefix', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  await mkdir(join(s.dir, 'out'), { recursive: true });
  await writeFile(`${s.dest}.part`, randomBytes(1000));
  await downloadFile({ url: s.url, dest: s.dest, expectedSha256: sha256(s.body), log });
  t.deepEqual(await readFile(s.dest), s.body);
  t.is(s.mirror.requestsFor('/file.bin')[0]?.headers.range, undefined);
});

test('404 throws ERR_FETCH_HTTP naming the url and status', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  const url = `${s.mirror.base}/nope.bin`;
  const err = await t.throwsAsync(downloadFile({ url, dest: s.dest, log }), isCode('ERR_FETCH_HTTP'));
  t.true(err?.message.includes(url));
  t.regex(err?.message ?? '', /404/);
  t.is((err as ApplianceError).detail?.status, 404);
  t.false(existsSync(s.dest));
  t.false(existsSync(`${s.dest}.part`));
});

test('follows relative and absolute redirects, and bounds them', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  s.mirror.faults.redirects.set('/a', '/b');
  s.mirror.faults.redirects.set('/b', `${s.mirror.base}/file.bin`);
  const result = await downloadFile({ url: `${s.mirror.base}/a`, dest: s.dest, expectedSha256: sha256(s.body), log });
  t.deepEqual(await readFile(s.dest), s.body);
  t.is(result.finalUrl, s.url);

  s.mirror.faults.redirects.set('/loop1', '/loop2');
  s.mirror.faults.redirects.set('/loop2', '/loop1');
  const before = s.mirror.seen.length;
  const err = await t.throwsAsync(
    downloadFile({ url: `${s.mirror.base}/loop1`, dest: join(s.dir, 'loop'), log, maxRedirects: 3 }),
    isCode('ERR_FETCH_REDIRECT'),
  );
  t.regex(err?.message ?? '', /too many redirects/);
  t.is(s.mirror.seen.length - before, 4, 'initial request plus 3 redirects');

  s.mirror.faults.redirects.set('/evil', 'file:///etc/passwd');
  await t.throwsAsync(downloadFile({ url: `${s.mirror.base}/evil`, dest: join(s.dir, 'evil'), log }), isCode('ERR_FETCH_REDIRECT'));
  t.false(existsSync(join(s.dir, 'evil')));
});

test('an idle connection times out with ERR_FETCH_TIMEOUT and nothing at dest', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  s.mirror.faults.stall.set('/file.bin', 60_000);
  await t.throwsAsync(downloadFile({ url: s.url, dest: s.dest, log, idleTimeoutMs: 200 }), isCode('ERR_FETCH_TIMEOUT'));
  t.false(existsSync(s.dest));
});

test('an abort signal stops the download with ERR_FETCH_ABORTED', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  s.mirror.faults.stall.set('/file.bin', 60_000);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  await t.throwsAsync(downloadFile({ url: s.url, dest: s.dest, log, signal: controller.signal }), isCode('ERR_FETCH_ABORTED'));
  t.false(existsSync(s.dest));
});

test('connection refused is ERR_FETCH_NETWORK', async (t) => {
  const s = await setup();
  const url = s.url;
  await s.cleanup();
  await t.throwsAsync(downloadFile({ url, dest: join(tmpdir(), `never-${process.pid}`), log }), isCode('ERR_FETCH_NETWORK'));
});

test('bad urls and checksums are rejected before any request', async (t) => {
  const s = await setup();
  t.teardown(s.cleanup);
  for (const url of ['not a url', 'file:///etc/passwd', 'ftp://127.0.0.1/x', '']) {
    await t.throwsAsync(downloadFile({ url, dest: s.dest, log }), isCode('ERR_FETCH_URL'), url);
  }
  await t.throwsAsync(downloadFile({ url: s.url, dest: s.dest, expectedSha256: 'abc', log }), isCode('ERR_FETCH_ARGS'));
  t.is(s.mirror.seen.length, 0);
  t.throws(() => parseHttpUrl('gopher://x', 'mirror'), isCode('ERR_FETCH_URL'));
  t.throws(() => normalizeMirror('http://x/?q=1'), isCode('ERR_FETCH_MIRROR'));
  t.is(normalizeMirror('http://127.0.0.1:1/os///'), 'http://127.0.0.1:1/os');
});

test('fetchText reads small bodies and refuses large ones', async (t) => {
  const s = await setup(4096);
  t.teardown(s.cleanup);
  s.mirror.files.set('/hello.txt', Buffer.from('hello\n'));
  t.is(await fetchText({ url: `${s.mirror.base}/hello.txt`, log }), 'hello\n');
  await t.throwsAsync(fetchText({ url: s.url, log, maxBytes: 100 }), isCode('ERR_FETCH_SIZE'));
  await t.throwsAsync(fetchText({ url: `${s.mirror.base}/missing.txt`, log }), isCode('ERR_FETCH_HTTP'));
});

test('parseContentRange accepts valid ranges only', (t) => {
  t.deepEqual(parseContentRange('bytes 100-199/1000'), { start: 100, end: 199, total: 1000 });
  t.deepEqual(parseContentRange('bytes 0-0/*'), { start: 0, end: 0, total: undefined });
  for (const bad of [undefined, '', 'bytes */1000', 'bytes 200-100/1000', 'bytes 0-1000/1000', 'items 0-1/2', 'bytes 1-2']) {
    t.is(parseContentRange(bad), undefined, String(bad));
  }
});

test('progress: log lines when not a TTY, a bar when it is', async (t) => {
  const lines: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  const plainStream = Object.assign(new PassThrough(), { isTTY: false }) as unknown as NodeJS.WriteStream;
  const reporter = createProgressReporter({ log: createLogger({ destination: sink }), stream: plainStream, intervalMs: 1_000_000 });
  const base = { file: 'initrd', url: 'http://127.0.0.1/x', total: 2048, resumedFrom: 0 };
  reporter.onProgress({ ...base, received: 0, done: false });
  reporter.onProgress({ ...base, received: 1024, done: false });
  reporter.onProgress({ ...base, received: 2048, done: true });
  reporter.stop();
  await new Promise((r) => setImmediate(r));
  const parsed = lines.map((l) => JSON.parse(l) as { received: number; percent?: number; msg: string });
  t.is(parsed.length, 2, 'first report, throttled middle report dropped, final report');
  t.is(parsed[1]?.percent, 100);

  let written = '';
  const ttyStream = Object.assign(new PassThrough(), {
    isTTY: true,
    columns: 100,
    cursorTo: () => true,
    clearLine: () => true,
    moveCursor: () => true,
  }) as unknown as NodeJS.WriteStream;
  (ttyStream as unknown as PassThrough).on('data', (d: Buffer) => {
    written += d.toString();
  });
  const bar = createProgressReporter({ log: createSilentLogger(), stream: ttyStream });
  bar.onProgress({ ...base, received: 1024, done: false });
  bar.onProgress({ ...base, received: 2048, done: true });
  bar.stop();
  await new Promise((r) => setImmediate(r));
  t.regex(written, /initrd/);
  t.regex(written, /100%/);
  t.is(formatSize(1024 * 1024, 2 * 1024 * 1024), '1.0 MiB / 2.0 MiB');
});

test('a keep-alive socket the server dropped as it was reused is retried once on a new one, not reported as a network error', async (t) => {
  // A raw server: each connection answers its first request with keep-alive, then closes without
  // answering the next one (the race with a server's keep-alive timeout, made certain).
  const connections: number[] = [];
  const server = net.createServer((socket) => {
    connections.push(0);
    const index = connections.length - 1;
    socket.on('data', () => {
      connections[index]! += 1;
      if (connections[index] === 1) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
      else socket.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/checksums.txt`;
  const log = createSilentLogger();
  t.is(await fetchText({ url, log }), 'ok');
  t.is(await fetchText({ url, log }), 'ok', 'the second request reused the dropped socket and was sent again');
  t.deepEqual(connections, [2, 1], 'the first connection saw the reused request; a new one answered it');
});
