import test from 'ava';
import http from 'node:http';
import net from 'node:net';
import { createEventLog } from '../../src/events.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { createHttpServer, type HttpServerOptions } from '../../src/http/server.js';
import { createMemoryStore } from '../../src/store/store.js';
import { TEMPLATES, TOKEN } from './helpers.js';

interface Line {
  level: number;
  msg: string;
  [key: string]: unknown;
}

async function start(extra: Partial<Pick<HttpServerOptions, 'limits' | 'timeouts'>>) {
  const { log, lines: logs } = captureLogger<Line>();
  let port = 0;
  const deps = {
    store: createMemoryStore(),
    events: createEventLog(),
    log,
    address: '127.0.0.1',
    httpPort: () => port,
    templatesDir: TEMPLATES,
    assetsDir: TEMPLATES,
    apiToken: TOKEN,
  };
  const server = createHttpServer({ host: '127.0.0.1', port: 0, log, deps, ...extra });
  port = (await server.start()).port;
  return { server, port, logs };
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** Open a raw TCP connection; resolves once connected. `closed` resolves when the server closes it. */
async function connect(port: number): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const socket = net.connect(port, '127.0.0.1');
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  // Read whatever comes (a 408), so the end of the stream and 'close' are seen.
  socket.resume();
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, closed };
}

function settled(p: Promise<void>, ms: number): Promise<boolean> {
  return Promise.race([p.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
}

test('idle connections beyond the cap are shed (oldest first) while /healthz keeps answering; a warning is logged once', async (t) => {
  const { server, port, logs } = await start({ limits: { maxConnections: 20, maxPerClient: 10 } });
  t.teardown(() => server.stop());
  const idle: Array<Awaited<ReturnType<typeof connect>>> = [];
  for (let i = 0; i < 200; i++) idle.push(await connect(port));
  t.teardown(() => {
    for (const c of idle) c.socket.destroy();
  });
  // Give the server the last 'connection' events.
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.true(server.connections().open <= 10, `${server.connections().open} open`);
  // The oldest idle ones were closed by the server; the newest are still open.
  t.true(await settled(idle[0]!.closed, 1000), 'oldest idle connection closed');
  t.false(await settled(idle.at(-1)!.closed, 100), 'newest idle connection kept');
  for (let i = 0; i < 5; i++) {
    const r = await get(port, '/healthz');
    t.is(r.status, 200);
  }
  const warnings = logs.filter((l) => l.level === 40 && l.msg === 'http connection limit per client reached');
  t.is(warnings.length, 1, 'rate-limited');
  t.like(warnings[0], { scope: 'client', ip: '127.0.0.1', limit: 10 });
  t.true(server.connections().shed >= 190);
});

test('the connection-limit warning is throttled, and each shed connection is counted in exactly one warning', async (t) => {
  const { server, port, logs } = await start({ limits: { maxConnections: 100, maxPerClient: 5, warnIntervalMs: 1000 } });
  t.teardown(() => server.stop());
  const open: Array<Awaited<ReturnType<typeof connect>>> = [];
  t.teardown(() => {
    for (const c of open) c.socket.destroy();
  });
  for (let i = 0; i < 40; i++) open.push(await connect(port));
  await new Promise((resolve) => setTimeout(resolve, 1100));
  // One more past the next interval: its warning carries the sheds not warned about.
  open.push(await connect(port));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const warnings = logs.filter((l) => l.level === 40 && l.msg === 'http connection limit per client reached');
  const shed = server.connections().shed;
  t.is(shed, 36);
  t.true(warnings.length >= 2 && warnings.length < 10, `${warnings.length} warnings`);
  t.is(
    warnings.reduce((sum, w) => sum + Number(w['shed']), 0),
    shed,
  );
});

test('busy connections are never cut: with every connection in scope mid-request, a new one is refused', async (t) => {
  const { server, port, logs } = await start({ limits: { maxConnections: 100, maxPerClient: 3 } });
  t.teardown(() => server.stop());
  const busy: Array<Awaited<ReturnType<typeof connect>>> = [];
  for (let i = 0; i < 3; i++) {
    const c = await connect(port);
    // Headers complete, body promised but never sent: a request is in flight on this connection.
    c.socket.write(
      `PUT /api/profiles/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`,
    );
    busy.push(c);
  }
  t.teardown(() => {
    for (const c of busy) c.socket.destroy();
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const extra = await connect(port);
  t.true(await settled(extra.closed, 2000), 'the fourth connection is refused');
  for (const c of busy) t.false(await settled(c.closed, 50), 'busy connection kept');
  await t.throwsAsync(get(port, '/healthz'));
  t.is(server.connections().refused >= 1, true);
  t.true(logs.some((l) => l.level === 40 && l.msg === 'http connection limit per client reached' && Number(l.refused) >= 1));
  // Once one finishes, there is room again.
  busy[0]!.socket.destroy();
  await busy[0]!.closed;
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.is((await get(port, '/healthz')).status, 200);
});

test('a connection that never completes its headers is closed after the header timeout', async (t) => {
  const { server, port } = await start({ timeouts: { headersMs: 500 } });
  t.teardown(() => server.stop());
  const slow = await connect(port);
  slow.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // never finished (slowloris)
  const silent = await connect(port); // never sends anything
  t.true(await settled(slow.closed, 4000), 'slow headers closed');
  t.true(await settled(silent.closed, 4000), 'silent connection closed');
});
