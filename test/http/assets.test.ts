import test from 'ava';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createEventLog } from '../../src/events.js';
import { createSilentLogger } from '../../src/log.js';
import { createHttpServer } from '../../src/http/server.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createMemoryStore } from '../../src/store/store.js';
import { TEMPLATES, TOKEN } from './helpers.js';

const run = promisify(execFile);

interface Curl {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Run real curl against the server; returns status, lowercased headers and body. */
async function curl(args: string[]): Promise<Curl> {
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-curl-'));
  try {
    const hdr = path.join(dir, 'h');
    const out = path.join(dir, 'b');
    await run('curl', ['-s', '--path-as-is', '--max-time', '20', '-D', hdr, '-o', out, ...args]);
    const { readFile } = await import('node:fs/promises');
    const raw = (await readFile(hdr, 'utf8'))
      .trim()
      .split(/\r?\n\r?\n/)
      .pop()!
      .split(/\r?\n/);
    const status = Number(raw[0]!.split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const line of raw.slice(1)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    let body = Buffer.alloc(0);
    try {
      body = await readFile(out);
    } catch {
      // HEAD: no body file.
    }
    return { status, headers, body };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function setup(t: import('ava').ExecutionContext) {
  const root = await mkdtemp(path.join(tmpdir(), 'netboot-assets-'));
  const assetsDir = path.join(root, 'assets');
  await mkdir(path.join(assetsDir, 'os', 'v1'), { recursive: true });
  const kernel = randomBytes(3 * 1024 * 1024 + 17);
  await writeFile(path.join(assetsDir, 'os', 'v1', 'vmlinuz'), kernel);
  await writeFile(path.join(root, 'secret.txt'), 'outside the assets dir');
  await symlink(path.join(root, 'secret.txt'), path.join(assetsDir, 'link-out'));
  await symlink(root, path.join(assetsDir, 'dir-out'));
  await symlink(path.join(assetsDir, 'os', 'v1', 'vmlinuz'), path.join(assetsDir, 'link-in'));
  const events = createEventLog();
  let port = 0;
  const server = createHttpServer({
    host: '127.0.0.1',
    port: 0,
    log: createSilentLogger(),
    deps: {
      store: createMemoryStore(createDefaultDb()),
      events,
      log: createSilentLogger(),
      address: '127.0.0.1',
      httpPort: () => port,
      templatesDir: TEMPLATES,
      assetsDir,
      apiToken: TOKEN,
    },
  });
  port = (await server.start()).port;
  t.teardown(async () => {
    await server.stop();
    await rm(root, { recursive: true, force: true });
  });
  return { base: `http://127.0.0.1:${port}`, kernel, events };
}

test('curl -r 0-99 gets 206 with the first 100 bytes and Content-Range', async (t) => {
  const { base, kernel } = await setup(t);
  const r = await curl(['-r', '0-99', `${base}/assets/os/v1/vmlinuz`]);
  t.is(r.status, 206);
  t.is(r.headers['content-range'], `bytes 0-99/${kernel.length}`);
  t.is(r.headers['content-length'], '100');
  t.deepEqual(r.body, kernel.subarray(0, 100));
  const tail = await curl(['-r', '-10', `${base}/assets/os/v1/vmlinuz`]);
  t.is(tail.status, 206);
  t.deepEqual(tail.body, kernel.subarray(kernel.length - 10));
});

test('curl -I: HEAD with length, ETag, Last-Modified, Accept-Ranges and no body', async (t) => {
  const { base, kernel } = await setup(t);
  const r = await curl(['-I', `${base}/assets/os/v1/vmlinuz`]);
  t.is(r.status, 200);
  t.is(r.headers['content-length'], String(kernel.length));
  t.is(r.headers['accept-ranges'], 'bytes');
  t.truthy(r.headers.etag);
  t.truthy(r.headers['last-modified']);
  // With -I curl writes only the header block to -o; no file bytes follow it.
  t.true(r.body.toString('latin1').startsWith('HTTP/1.1 200'));
  t.true(r.body.length < 1024);
});

test('If-Range: matching ETag gives 206, stale ETag gives the whole file; If-None-Match gives 304', async (t) => {
  const { base, kernel } = await setup(t);
  const etag = (await curl(['-I', `${base}/assets/os/v1/vmlinuz`])).headers.etag!;
  const ok = await curl(['-r', '100-199', '-H', `If-Range: ${etag}`, `${base}/assets/os/v1/vmlinuz`]);
  t.is(ok.status, 206);
  t.deepEqual(ok.body, kernel.subarray(100, 200));
  const stale = await curl(['-r', '100-199', '-H', 'If-Range: "stale-etag"', `${base}/assets/os/v1/vmlinuz`]);
  t.is(stale.status, 200);
  t.is(stale.body.length, kernel.length);
  const nm = await curl(['-H', `If-None-Match: ${etag}`, `${base}/assets/os/v1/vmlinuz`]);
  t.is(nm.status, 304);
  const bad = await curl(['-r', `${kernel.length + 10}-`, `${base}/assets/os/v1/vmlinuz`]);
  t.is(bad.status, 416);
  t.is(bad.headers['content-range'], `bytes */${kernel.length}`);
});

test('a full download streams the exact file by sendfile (counted in /metrics) and records an http-asset event for the MAC at that IP', async (t) => {
  const { base, kernel, events } = await setup(t);
  events.record({ mac: '52:54:00:00:00:42', type: 'dhcp-ack', ip: '127.0.0.1' });
  const sent = async (): Promise<number> => {
    const m = await curl([`${base}/metrics`]);
    return Number(/^netboot_http_asset_bytes_total\{how="sendfile"\} (\d+)$/m.exec(m.body.toString())?.[1]);
  };
  const before = await sent();
  const r = await curl([`${base}/assets/os/v1/vmlinuz`]);
  t.is(r.status, 200);
  t.is(createHash('sha256').update(r.body).digest('hex'), createHash('sha256').update(kernel).digest('hex'));
  // All but the first 64 KiB (which carries the header) went out by sendfile (other tests' downloads only add).
  t.true((await sent()) - before >= kernel.length - 65_536);
  const ev = events.list({ mac: '52:54:00:00:00:42' }).filter((e) => e.type === 'http-asset');
  t.is(ev.length, 1);
  t.like(ev[0]!.detail, { file: '/assets/os/v1/vmlinuz', status: 200 });
});

test('nothing outside the assets directory is served (.., %2e%2e, %2f, NUL, symlinks out)', async (t) => {
  const { base } = await setup(t);
  const attempts = [
    '/assets/../secret.txt',
    '/assets/os/../../secret.txt',
    '/assets/%2e%2e/secret.txt',
    '/assets/%2E%2E/secret.txt',
    '/assets/..%2fsecret.txt',
    '/assets/os%2f..%2f..%2fsecret.txt',
    '/assets/%252e%252e/secret.txt',
    '/assets/os/v1/vmlinuz%00',
    '/assets/..%5csecret.txt',
    '/assets/link-out',
    '/assets/dir-out/secret.txt',
    '/assets/os',
    '/assets/',
    '/assets/%zz',
  ];
  for (const p of attempts) {
    const r = await curl([`${base}${p}`]);
    t.not(r.status, 200, p);
    t.not(r.status, 206, p);
    t.false(r.body.toString('utf8').includes('outside the assets dir'), p);
    if (r.status === 404) t.regex(r.body.toString('utf8'), /"code":"ERR_(ASSET_)?NOT_FOUND"/, p);
  }
  // A symlink that stays inside the directory is fine.
  t.is((await curl(['-r', '0-0', `${base}/assets/link-in`])).status, 206);
});

test('only GET and HEAD on assets', async (t) => {
  const { base } = await setup(t);
  const r = await curl(['-X', 'DELETE', `${base}/assets/os/v1/vmlinuz`]);
  t.is(r.status, 405);
  t.is(r.headers.allow, 'GET, HEAD');
});

test('HEAD sends headers only (checked with node http as a second client)', async (t) => {
  const { base, kernel } = await setup(t);
  const http = await import('node:http');
  const { status, length, bytes } = await new Promise<{ status: number; length: string | undefined; bytes: number }>((resolve, reject) => {
    const req = http.request(`${base}/assets/os/v1/vmlinuz`, { method: 'HEAD', agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, length: res.headers['content-length'], bytes }));
    });
    req.on('error', reject);
    req.end();
  });
  t.is(status, 200);
  t.is(length, String(kernel.length));
  t.is(bytes, 0);
});

test('1 MiB reads: ranges across chunk boundaries, ten parallel downloads exact, buffers returned to the pool', async (t) => {
  const { base, kernel } = await setup(t);
  const { pooledBuffers, CHUNK_BYTES } = await import('../../src/http/file-stream.js');
  const from = CHUNK_BYTES - 5;
  const to = 2 * CHUNK_BYTES + 5;
  const r = await curl(['-r', `${from}-${to}`, `${base}/assets/os/v1/vmlinuz`]);
  t.is(r.status, 206);
  t.deepEqual(r.body, kernel.subarray(from, to + 1));
  const all = await Promise.all(Array.from({ length: 10 }, () => curl([`${base}/assets/os/v1/vmlinuz`])));
  const want = createHash('sha256').update(kernel).digest('hex');
  for (const got of all) t.is(createHash('sha256').update(got.body).digest('hex'), want);
  t.true(pooledBuffers() >= 2, `${pooledBuffers()} buffers pooled`);
});
