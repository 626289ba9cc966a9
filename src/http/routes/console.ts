/**
 * The web console: `GET /` and `/ui/*` serve the single-page console from the package itself
 * (web/ plus preact and htm from node_modules: no CDN, the lab has no internet), and the API
 * it needs beyond the REST resources, all behind the bearer token:
 *  - `GET /api/events/stream[?mac=]`: Server-Sent Events of the event log (backlog, then live);
 *    the token travels in the Authorization header (the console reads the stream with fetch),
 *    never in the URL, where it would land in logs and browser history;
 *  - `GET /api/console/machines[/:mac]`: declared, discovered and wire-only machines with
 *    the profile selected and why, last seen, arch, facts summary and the standing failure;
 *  - `GET /api/console/status`: address, ports, DHCP mode and start-up warnings, version;
 *  - `GET /api/console/schema`: the database JSON Schema with the server's messages on patterns;
 *  - `GET /api/console/preview?mac=`: the iPXE script and cloud-config the machine would get;
 *  - `GET /api/console/assets[?sha256=1]`: each profile's files present or missing, the iPXE binaries.
 * The console pages are static and public (they hold no data); everything they show comes
 * from these token-checked endpoints.
 */
import type Router from '@koa/router';
import type Koa from 'koa';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { APPLIANCE_HOME } from '../../config.js';
import { ApplianceError } from '../../errors.js';
import { normalizeMac, type BootEvent } from '../../events.js';
import { inspectAssets } from '../console-assets.js';
import { previewBoot } from '../console-preview.js';
import { consoleJsonSchema } from '../console-schema.js';
import { consoleMachineRows } from '../console-machines.js';
import type { RouteEnv } from '../context.js';
import { bearerAccess } from '../token.js';
import { normalizeUuid } from '../../store/select.js';

/** Most event streams open at once (each holds a socket and a listener). */
export const MAX_EVENT_STREAMS = 32;
/** Comment line sent this often (or at a third of the socket's idle timeout, if shorter) so idle-timeouts and proxies keep a quiet stream open. */
export const STREAM_HEARTBEAT_MS = 15_000;
/** A stream whose client reads slower than this much buffered output is closed. */
const STREAM_MAX_BUFFER = 1024 * 1024;

const WEB_DIR = path.join(APPLIANCE_HOME, 'web');
const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
};

interface StaticFile {
  body: Buffer;
  type: string;
  etag: string;
}

function staticFile(file: string): StaticFile {
  const body = readFileSync(file);
  return {
    body,
    type: TYPES[path.extname(file)] ?? 'application/octet-stream',
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
  };
}

/** preact, preact/hooks and htm as browser ES modules, resolved from this package's dependencies. */
function vendorFiles(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const dir = (spec: string): string => path.dirname(require.resolve(spec));
  return {
    'vendor/preact.js': path.join(dir('preact'), 'preact.module.js'),
    'vendor/hooks.js': path.join(dir('preact/hooks'), 'hooks.module.js'),
    'vendor/htm.js': path.join(dir('htm'), 'htm.module.js'),
  };
}

/** The console's files by URL name below /ui/, read once (they ship with the package). */
function loadConsoleFiles(): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  for (const name of ['app.js', 'api.js', 'schema.js', 'views.js', 'style.css']) files.set(name, staticFile(path.join(WEB_DIR, name)));
  for (const [name, file] of Object.entries(vendorFiles())) files.set(name, staticFile(file));
  return files;
}

function packageVersion(): string | null {
  try {
    const v = (JSON.parse(readFileSync(path.join(APPLIANCE_HOME, 'package.json'), 'utf8')) as { version?: unknown }).version;
    return typeof v === 'string' ? v : null;
  } catch {
    return null;
  }
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * index.html with the token file's path filled in, and the Content-Security-Policy that allows
 * exactly its inline import map (by hash) and the appliance's own scripts, styles and API.
 */
function loadIndex(tokenFile: string | undefined): { html: string; csp: string } {
  const template = readFileSync(path.join(WEB_DIR, 'index.html'), 'utf8');
  const html = template.replace('{{tokenFile}}', escapeHtml(tokenFile ?? 'the token given with --api-token'));
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '';
  const hash = createHash('sha256').update(importMap).digest('base64');
  const csp = [
    "default-src 'none'",
    `script-src 'self' 'sha256-${hash}'`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}

function securityHeaders(ctx: Koa.Context, csp?: string): void {
  if (csp) ctx.set('Content-Security-Policy', csp);
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('Referrer-Policy', 'no-referrer');
  ctx.set('X-Frame-Options', 'DENY');
}

function macQuery(ctx: Koa.Context, raw: unknown): string | undefined {
  if (raw === undefined) return undefined;
  const mac = typeof raw === 'string' ? normalizeMac(raw) : undefined;
  if (!mac) throw new ApplianceError('ERR_BAD_REQUEST', 'mac is not a MAC address', { field: 'mac' });
  return mac;
}

/** Register the console pages and its API on `router`. */
export function registerConsoleRoutes(router: Router, env: RouteEnv): void {
  const { deps } = env;
  const files = loadConsoleFiles();
  const index = loadIndex(deps.console?.tokenFile);
  const version = deps.console?.version ?? packageVersion();
  let openStreams = 0;

  const auth: Koa.Middleware = async (ctx, next) => {
    // Every console endpoint only reads: the read-only token is enough (writes go to /api/*).
    if (bearerAccess(ctx.get('Authorization') || undefined, deps.apiToken, deps.apiReadToken) === undefined) {
      throw new ApplianceError('ERR_UNAUTHORIZED', 'the console api needs "Authorization: Bearer <token>" with the api token or the read-only token');
    }
    await next();
  };

  router.get(['/', '/index.html'], (ctx) => {
    securityHeaders(ctx, index.csp);
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = index.html;
  });
  router.get(['/ui/:name', '/ui/vendor/:name'], (ctx) => {
    const f = files.get(ctx.path.slice('/ui/'.length));
    if (!f) throw new ApplianceError('ERR_NOT_FOUND', `no console file ${ctx.path}`);
    securityHeaders(ctx);
    ctx.set('Cache-Control', 'no-cache');
    ctx.set('ETag', f.etag);
    if (ctx.get('If-None-Match') === f.etag) {
      ctx.status = 304;
      return;
    }
    ctx.type = f.type;
    ctx.body = f.body;
  });

  router.get('/api/console/machines', auth, async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await consoleMachineRows(deps, env.discovery.state);
  });
  router.get('/api/console/machines/:mac', auth, async (ctx) => {
    const mac = macQuery(ctx, ctx.params.mac);
    const [row] = await consoleMachineRows(deps, env.discovery.state, mac);
    if (!row) throw new ApplianceError('ERR_MACHINE_NOT_FOUND', `nothing known about machine ${mac}`);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = row;
  });

  router.get('/api/console/preview', auth, async (ctx) => {
    const mac = macQuery(ctx, ctx.query.mac);
    if (mac === undefined) throw new ApplianceError('ERR_BAD_REQUEST', 'pass ?mac=<MAC>', { field: 'mac' });
    const uuid = normalizeUuid(typeof ctx.query.uuid === 'string' ? ctx.query.uuid : undefined) ?? (await deps.store.getMachine(mac))?.uuid;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await previewBoot(env, { mac, uuid });
  });

  router.get('/api/console/assets', auth, async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await inspectAssets({
      profiles: await deps.store.listProfiles(),
      assetsDir: deps.assetsDir,
      ...(deps.bootDirs ? { bootDirs: deps.bootDirs } : {}),
      digests: env.digests,
      hash: ctx.query.sha256 === '1',
    });
  });

  const schema = JSON.stringify(consoleJsonSchema());
  router.get('/api/console/schema', auth, (ctx) => {
    ctx.type = 'application/schema+json';
    ctx.body = schema;
  });

  router.get('/api/console/status', auth, (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      version,
      address: deps.address,
      httpPort: deps.httpPort(),
      tokenFile: deps.console?.tokenFile ?? null,
      store: deps.store.status(),
      ...(deps.console?.status?.() ?? {}),
    };
  });

  router.get('/api/events/stream', auth, (ctx) => {
    const mac = macQuery(ctx, ctx.query.mac);
    const subscribe = deps.events.subscribe;
    if (!subscribe) throw new ApplianceError('ERR_NOT_FOUND', 'this event log cannot be streamed');
    if (openStreams >= MAX_EVENT_STREAMS) {
      throw new ApplianceError('ERR_TOO_MANY_STREAMS', `${MAX_EVENT_STREAMS} event streams are open already; close a console tab`, {
        headers: { 'Retry-After': '10' },
      });
    }
    openStreams++;
    const stream = new PassThrough();
    const send = (event: BootEvent): void => {
      if (mac !== undefined && event.mac !== mac) return;
      if (stream.writableLength > STREAM_MAX_BUFFER) {
        stream.end();
        return;
      }
      stream.write(`event: boot\ndata: ${JSON.stringify(event)}\n\n`);
    };
    // Backlog first, then live: the console needs no second request and misses nothing between.
    stream.write('retry: 3000\n\n');
    for (const e of deps.events.list(mac !== undefined ? { mac } : { limit: 500 })) send(e);
    stream.write('event: ready\ndata: {}\n\n');
    const unsubscribe = subscribe.call(deps.events, send);
    let heartbeat: NodeJS.Timeout | undefined;
    let closed = false;
    const close = (): void => {
      if (closed) return;
      closed = true;
      openStreams--;
      clearInterval(heartbeat);
      unsubscribe();
      stream.end();
    };
    ctx.req.on('close', close);
    stream.on('close', close);
    stream.on('finish', close);
    ctx.req.socket.setNoDelay(true);
    // The server's idle timeout stays (it reaps peers that vanished); the heartbeat keeps a
    // quiet stream inside it. Read after the server's own request handlers have set it.
    setImmediate(() => {
      if (closed) return;
      const idle = ctx.req.socket.timeout;
      const every = idle !== undefined && idle > 0 ? Math.min(STREAM_HEARTBEAT_MS, Math.max(50, Math.floor(idle / 3))) : STREAM_HEARTBEAT_MS;
      heartbeat = setInterval(() => stream.write(': ping\n\n'), every);
      heartbeat.unref();
    });
    ctx.status = 200;
    ctx.type = 'text/event-stream; charset=utf-8';
    ctx.set('Cache-Control', 'no-store');
    ctx.set('X-Accel-Buffering', 'no');
    ctx.body = stream;
  });
}
