import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileStreamStats, streamFileRange, type StreamOptions } from '../../src/http/file-stream.js';
import { EAGAIN, sendfileNative, sendfileUnavailableReason } from '../../src/http/sendfile.js';

const run = promisify(execFile);
const SIZE = 12 * 1024 * 1024 + 12_345;

async function fixture(t: ExecutionContext): Promise<{ file: string; data: Buffer }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-stream-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const data = randomBytes(SIZE);
  const file = path.join(dir, 'initrd');
  await writeFile(file, data);
  return { file, data };
}

/**
 * A node:http server that sends bytes `from..to` of `file` (the whole file unless the request
 * says `?from=&to=`) with the Content-Length `claim` (default: the range's length).
 */
async function serve(t: ExecutionContext, file: string, options: StreamOptions = {}, claim?: number): Promise<{ url: string; errors: Error[] }> {
  const errors: Error[] = [];
  const server = http.createServer((req, res) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    const from = Number(q.get('from') ?? 0);
    const to = Number(q.get('to') ?? SIZE - 1);
    res.setHeader('Content-Length', claim ?? to - from + 1);
    res.on('error', (err) => errors.push(err));
    streamFileRange(file, from, to, res, options).catch((err: Error) => {
      errors.push(err);
      res.destroy(err);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())).then(() => server.closeAllConnections()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, errors };
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

async function curlBody(url: string): Promise<Buffer> {
  const { stdout } = await run('curl', ['-sf', '--max-time', '30', url], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

async function openFds(): Promise<number> {
  return (await readdir('/proc/self/fd')).length;
}

test.serial('the sendfile addon is built and loads (scripts/build-native, run by npm ci)', (t) => {
  t.is(sendfileUnavailableReason(), undefined);
  t.is(typeof sendfileNative(), 'function');
});

test.serial('the build bin/appliance runs (dist/) finds the addon too', async (t) => {
  const dist = (await import(new URL('../../dist/src/http/sendfile.js', import.meta.url).href)) as typeof import('../../src/http/sendfile.js');
  t.is(dist.sendfileUnavailableReason(), undefined);
  t.is(typeof dist.sendfileNative(), 'function');
});

test.serial('the addon refuses bad arguments with a TypeError and reports errno as a negative number', (t) => {
  const sendfile = sendfileNative()!;
  t.throws(() => (sendfile as unknown as (...a: unknown[]) => number)(1, 2), { instanceOf: TypeError, message: /four numbers/ });
  t.throws(() => sendfile(-1, 0, 0, 1), { instanceOf: TypeError, message: /non-negative/ });
  // An unused descriptor: EBADF (9), never a crash.
  t.is(sendfile(100_000, 100_001, 0, 10), -9);
  t.is(EAGAIN, 11);
});

test.serial('sendfile: curl gets the exact file and the exact ranges across the 64 KiB copy and 4 MiB turn boundaries', async (t) => {
  const { file, data } = await fixture(t);
  const { url, errors } = await serve(t, file);
  const before = fileStreamStats();
  t.is(sha(await curlBody(url)), sha(data));
  for (const [from, to] of [
    [0, 65_536],
    [65_535, 4 * 1024 * 1024 + 65_537],
    [SIZE - 65_537, SIZE - 1],
    [7, SIZE - 8],
  ] as const) {
    const got = await curlBody(`${url}/?from=${from}&to=${to}`);
    t.is(got.length, to - from + 1);
    t.is(sha(got), sha(data.subarray(from, to + 1)), `${from}-${to}`);
  }
  const after = fileStreamStats();
  const sent = SIZE + 65_537 + (4 * 1024 * 1024 + 3) + 65_537 + (SIZE - 14);
  t.is(after.sendfileBytes - before.sendfileBytes + after.copiedBytes - before.copiedBytes, sent);
  t.true(after.sendfileBytes - before.sendfileBytes > sent / 2, 'most bytes went by sendfile');
  t.deepEqual(errors, []);
});

test.serial('sendfile off: the same bytes by copying, none by sendfile', async (t) => {
  const { file, data } = await fixture(t);
  const { url } = await serve(t, file, { sendfile: false });
  const before = fileStreamStats();
  t.is(sha(await curlBody(url)), sha(data));
  const after = fileStreamStats();
  t.is(after.sendfileBytes, before.sendfileBytes);
});

test.serial('a client that stops reading fills the send buffer: the response waits (EAGAIN), then finishes exact', async (t) => {
  const { file, data } = await fixture(t);
  const { url, errors } = await serve(t, file);
  const { port } = new URL(url);
  const before = fileStreamStats();
  const socket = net.connect(Number(port), '127.0.0.1');
  const chunks: Buffer[] = [];
  const ended = new Promise((resolve) => socket.on('end', resolve));
  const first = new Promise((resolve) => socket.once('data', resolve));
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  // Stop reading at the first bytes: the server fills both socket buffers and has to wait.
  await first;
  socket.pause();
  await new Promise((resolve) => setTimeout(resolve, 400));
  socket.resume();
  await ended;
  const raw = Buffer.concat(chunks);
  const body = raw.subarray(raw.indexOf('\r\n\r\n') + 4);
  t.regex(raw.subarray(0, 200).toString('latin1'), /^HTTP\/1\.1 200 OK\r\n[\s\S]*Content-Length: 12595257\r\n/);
  t.is(body.length, SIZE);
  t.is(sha(body), sha(data));
  const after = fileStreamStats();
  // More than the first chunk was copied: each full send buffer costs one 64 KiB write.
  t.true(after.copiedBytes - before.copiedBytes > 65_536, `${after.copiedBytes - before.copiedBytes} bytes copied`);
  t.deepEqual(errors, []);
});

test.serial('keep-alive: two responses on one connection arrive whole and in order', async (t) => {
  const { file, data } = await fixture(t);
  const { url } = await serve(t, file);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const sockets = new Set<net.Socket>();
  const get = (q: string): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      http
        .get(`${url}/${q}`, { agent }, (res) => {
          sockets.add(res.socket);
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve(Buffer.concat(parts)));
        })
        .on('error', reject);
    });
  const first = await get('?from=100&to=5000000');
  const second = await get('');
  t.is(sha(first), sha(data.subarray(100, 5_000_001)));
  t.is(sha(second), sha(data));
  t.is(sockets.size, 1, 'one connection');
});

test.serial('a client that goes away mid-transfer: the server keeps serving and closes the file', async (t) => {
  const { file, data } = await fixture(t);
  const { url } = await serve(t, file);
  const { port } = new URL(url);
  const fds = await openFds();
  for (let i = 0; i < 5; i++) {
    const socket = net.connect(Number(port), '127.0.0.1');
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((resolve) => socket.once('data', resolve));
    socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.resetAndDestroy();
  }
  t.is(sha(await curlBody(url)), sha(data));
  // Each aborted response closed its file and socket.
  for (let i = 0; i < 50 && (await openFds()) > fds; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  t.true((await openFds()) <= fds, `${await openFds()} descriptors open, ${fds} before`);
});

test.serial('a file shorter than its Content-Length ends the connection, never sends wrong bytes', async (t) => {
  const { file, data } = await fixture(t);
  const { url } = await serve(t, file, {}, SIZE + 1000);
  const err = await t.throwsAsync(run('curl', ['-s', '--max-time', '20', '-o', '/dev/null', '-w', '%{size_download}', `${url}/?from=0&to=${SIZE + 999}`]));
  // curl: 18, partial file; every byte it got was the file's own.
  t.is((err as Error & { code?: number }).code, 18);
  t.is(Number((err as Error & { stdout?: string }).stdout), data.length);
});
