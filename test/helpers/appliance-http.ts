/**
 * The appliance's real HTTP server (createHttpServer, not just the Koa app) on 127.0.0.1:0
 * over a memory store seeded with the default db and the shipped templates: what a discovery
 * agent or a microkernel image talks to in the tests. Stopped, with its temp assets directory,
 * when the test ends.
 */
import type { ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEventLog, type EventLog } from '../../src/events.js';
import { createHttpServer } from '../../src/http/server.js';
import { createSilentLogger } from '../../src/log.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createStateStore, type StateStore } from '../../src/store/state-store.js';
import { createMemoryStore, type Store } from '../../src/store/store.js';

const TEMPLATES = fileURLToPath(new URL('../../templates/', import.meta.url));

/** A started server: its base URL and port, the operator store and the runtime state it writes. */
export interface ApplianceHttp {
  url: string;
  port: number;
  store: Store;
  state: StateStore;
  /** The boot event log (record a `dhcp-ack` to say what the DHCP side saw). */
  events: EventLog;
}

/** Start the server; `assetsDir` defaults to a fresh temp directory removed at teardown. */
export async function startApplianceHttp(t: ExecutionContext, options: { store?: Store; assetsDir?: string } = {}): Promise<ApplianceHttp> {
  const store = options.store ?? createMemoryStore(createDefaultDb());
  const state = createStateStore({ log: createSilentLogger() });
  const events = createEventLog();
  const assetsDir = options.assetsDir ?? (await mkdtemp(path.join(tmpdir(), 'netboot-http-assets-')));
  let port = 0;
  const server = createHttpServer({
    host: '127.0.0.1',
    port: 0,
    log: createSilentLogger(),
    deps: {
      store,
      events,
      log: createSilentLogger(),
      address: '127.0.0.1',
      httpPort: () => port,
      templatesDir: TEMPLATES,
      assetsDir,
      apiToken: 'appliance-http-test-token',
      state,
    },
  });
  port = (await server.start()).port;
  t.teardown(async () => {
    await server.stop();
    if (options.assetsDir === undefined) await rm(assetsDir, { recursive: true, force: true });
  });
  return { url: `http://127.0.0.1:${port}`, port, store, state, events };
}
