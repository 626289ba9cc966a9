import http from 'node:http';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type Koa from 'koa';
import { createEventLog, type EventLog } from '../../src/events.js';
import { createSilentLogger, type Logger } from '../../src/log.js';
import { createHttpApp, type HttpDeps } from '../../src/http/app.js';
import { createMemoryStore, type Store } from '../../src/store/store.js';
import { createStateStore, type StateStore } from '../../src/store/state-store.js';
import { createDefaultDb } from '../../src/store/defaults.js';

export const TOKEN = 'test-token-0123456789abcdef';
export const TEMPLATES = fileURLToPath(new URL('../../templates/', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('../fixtures/http/', import.meta.url));

/** Response as the tests look at it. */
export interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

/** A running app on 127.0.0.1:0 driven through app.callback(), plus its temp dirs. */
export interface Harness {
  app: Koa;
  store: Store;
  /** Runtime state (sightings, facts, discovered machines) the app writes. */
  state: StateStore;
  events: EventLog;
  assetsDir: string;
  port: number;
  url: string;
  /** `from`: the local address the request is sent from (any 127.x.y.z), default 127.0.0.1. */
  req(method: string, p: string, opts?: { headers?: Record<string, string>; body?: unknown; raw?: string; from?: string }): Promise<Res>;
  /** Record what the DHCP side would: `mac` got an answer at `ip` (boot-sessions.ts trusts it). */
  dhcpSaw(mac: string, ip?: string): void;
  close(): Promise<void>;
}

/** Start the app with a memory store seeded with the default db and a temp assets dir. */
export async function startHarness(overrides: Partial<HttpDeps> & { log?: Logger; fixedPort?: number } = {}): Promise<Harness> {
  const assetsDir = await mkdtemp(path.join(tmpdir(), 'netboot-assets-'));
  const store = overrides.store ?? createMemoryStore(createDefaultDb());
  const events = overrides.events ?? createEventLog();
  const state = overrides.discovery?.state ?? overrides.state ?? createStateStore({ log: createSilentLogger() });
  let port = 0;
  const app = createHttpApp({
    store,
    events,
    log: overrides.log ?? createSilentLogger(),
    address: overrides.address ?? '10.0.0.1',
    httpPort: () => overrides.fixedPort ?? port,
    templatesDir: overrides.templatesDir ?? TEMPLATES,
    assetsDir: overrides.assetsDir ?? assetsDir,
    apiToken: overrides.apiToken ?? TOKEN,
    ...(overrides.registry ? { registry: overrides.registry } : {}),
    ...(overrides.discovery ? { discovery: overrides.discovery } : {}),
    ...(overrides.bootDirs ? { bootDirs: overrides.bootDirs } : {}),
    ...(overrides.console ? { console: overrides.console } : {}),
    ...(overrides.power ? { power: overrides.power } : {}),
    ...(overrides.apiReadToken ? { apiReadToken: overrides.apiReadToken } : {}),
    ...(overrides.address6 ? { address6: overrides.address6 } : {}),
    ...(overrides.bootBinding ? { bootBinding: overrides.bootBinding } : {}),
    ...(overrides.factsTokenSeconds ? { factsTokenSeconds: overrides.factsTokenSeconds } : {}),
    ...(overrides.callbackTokenSeconds ? { callbackTokenSeconds: overrides.callbackTokenSeconds } : {}),
    ...(overrides.timelineStatus ? { timelineStatus: overrides.timelineStatus } : {}),
    ...(overrides.factsIndexStatus ? { factsIndexStatus: overrides.factsIndexStatus } : {}),
    state,
  });
  const server = http.createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
  const url = `http://127.0.0.1:${port}`;
  return {
    app,
    store,
    state,
    events,
    assetsDir,
    port,
    url,
    req(method, p, opts = {}) {
      return new Promise((resolve, reject) => {
        const body = opts.raw ?? (opts.body !== undefined ? JSON.stringify(opts.body) : undefined);
        const headers: Record<string, string> = {
          ...(body !== undefined && opts.raw === undefined ? { 'content-type': 'application/json' } : {}),
          ...opts.headers,
        };
        if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
        // Raw path (no URL normalization), so traversal attempts reach the server as written.
        const r = http.request(
          { host: '127.0.0.1', port, path: p, method, headers, agent: false, ...(opts.from ? { localAddress: opts.from } : {}) },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let json: unknown;
              try {
                json = JSON.parse(text);
              } catch {
                json = undefined;
              }
              resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
            });
          },
        );
        r.on('error', reject);
        r.setTimeout(10_000, () => r.destroy(new Error('request timed out')));
        if (body !== undefined) r.write(body);
        r.end();
      });
    },
    dhcpSaw(mac, ip = '127.0.0.1') {
      events.record({ type: 'dhcp-ack', mac, ip, detail: { port: 4011 } });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(assetsDir, { recursive: true, force: true });
    },
  };
}

/** Put the RancherOS assets (small fake files) into the harness's assets dir. */
export async function addRancherAssets(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'rancheros', 'v1.5.8'), { recursive: true });
  await writeFile(path.join(dir, 'rancheros', 'v1.5.8', 'vmlinuz'), Buffer.alloc(4096, 7));
  await writeFile(path.join(dir, 'rancheros', 'v1.5.8', 'initrd'), Buffer.alloc(8192, 9));
}

export const auth = { authorization: `Bearer ${TOKEN}` };
