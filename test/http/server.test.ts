import test from 'ava';
import http from 'node:http';
import { createEventLog } from '../../src/events.js';
import { createSilentLogger } from '../../src/log.js';
import { createHttpApp } from '../../src/http/app.js';
import { createHttpServer } from '../../src/http/server.js';
import { createMemoryStore } from '../../src/store/store.js';
import { TEMPLATES, TOKEN } from './helpers.js';

function deps(port: () => number) {
  return {
    store: createMemoryStore(),
    events: createEventLog(),
    log: createSilentLogger(),
    address: '127.0.0.1',
    httpPort: port,
    templatesDir: TEMPLATES,
    assetsDir: TEMPLATES,
    apiToken: TOKEN,
  };
}

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

test('start() on port 0 reports the real port; stop() closes it', async (t) => {
  let port = 0;
  const server = createHttpServer({ host: '127.0.0.1', port: 0, log: createSilentLogger(), deps: deps(() => port) });
  t.is(server.port(), 0, 'constructor does not bind');
  port = (await server.start()).port;
  t.true(port > 0);
  t.is(server.port(), port);
  const r = await get(`http://127.0.0.1:${port}/boot.ipxe`);
  t.is(r.status, 200);
  t.true(r.body.includes(`http://127.0.0.1:${port}/ipxe?`), 'script uses the real port');
  await server.stop();
  await t.throwsAsync(get(`http://127.0.0.1:${port}/healthz`), { code: 'ECONNREFUSED' });
  await server.stop();
});

test('start() rejects on a bind error (port in use)', async (t) => {
  const app = createHttpApp(deps(() => 0));
  const a = createHttpServer({ host: '127.0.0.1', port: 0, log: createSilentLogger(), app });
  const { port } = await a.start();
  t.teardown(() => a.stop());
  const b = createHttpServer({ host: '127.0.0.1', port, log: createSilentLogger(), app });
  await t.throwsAsync(b.start(), { code: 'EADDRINUSE' });
});

test('createHttpApp refuses an address that cannot go into a script', (t) => {
  t.throws(() => createHttpApp({ ...deps(() => 0), address: '10.0.0.1 || shell' }), { code: 'ERR_CONFIG' });
  t.throws(() => createHttpApp({ ...deps(() => 0), apiToken: '' }), { code: 'ERR_CONFIG' });
});
