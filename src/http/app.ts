/**
 * The HTTP boot service as a value: `createHttpApp(deps)` returns a Koa app that never listens
 * (tests drive `app.callback()`; server.ts binds it). Routes: boot scripts, cloud-config,
 * assets, the REST API, health and metrics, the web console. Errors are coded and mapped to statuses only in
 * errors.ts.
 */
import Router from '@koa/router';
import Koa from 'koa';
import { AsyncLocalStorage } from 'node:async_hooks';
import { isIPv4, isIPv6 } from 'node:net';
import { ConfigError } from '../errors.js';
import { createIpmiPower } from '../power/ipmi.js';
import { createDiscovery } from '../store/discovery.js';
import { DEFAULT_CALLBACK_TOKEN_SECONDS, MAX_CALLBACK_TOKEN_SECONDS } from '../store/lifecycle.js';
import { createBootSessions, dhcpAddress } from './boot-sessions.js';
import { grantCallback } from './callback-grant.js';
import type { HttpDeps, RouteEnv } from './context.js';
import { errorMiddleware } from './errors.js';
import { createHttpMetrics, isInstrumented, registerFactsIndexMetrics, registerFileStreamMetrics } from './metrics.js';
import { createDigestCache } from './asset-files.js';
import { createRenderer } from './render.js';
import { assetsMiddleware } from './routes/assets.js';
import { registerApiRoutes } from './routes/api.js';
import { registerFactsRoutes } from './routes/facts.js';
import { registerMachineActionRoutes } from './routes/machine-actions.js';
import { registerPreseedRoutes } from './routes/preseed.js';
import { registerBootRoutes } from './routes/boot.js';
import { registerBootFileRoutes } from './routes/boot-files.js';
import { registerConsoleRoutes } from './routes/console.js';
import { registerCompatRoutes } from './routes/compat.js';
import { registerHealthRoutes } from './routes/health.js';

export type { HttpDeps } from './context.js';

/** The URL host of the request being answered, when it differs from `deps.address` (IPv6). */
const requestHost = new AsyncLocalStorage<string>();

/** Create the Koa app for `deps`. Throws ConfigError when `deps.address` cannot go into a script. */
export function createHttpApp(deps: HttpDeps): Koa {
  if (!isIPv4(deps.address) && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(deps.address)) {
    throw new ConfigError(`advertised address ${JSON.stringify(deps.address)} is not an IPv4 address or host name`);
  }
  if (deps.address6 !== undefined && !isIPv6(deps.address6))
    throw new ConfigError(`advertised ipv6 address ${JSON.stringify(deps.address6)} is not an IPv6 address`);
  if (deps.retrySeconds !== undefined && !(Number.isInteger(deps.retrySeconds) && deps.retrySeconds >= 1 && deps.retrySeconds <= 3600)) {
    throw new ConfigError(`retry delay ${deps.retrySeconds} must be a whole number of seconds from 1 to 3600`);
  }
  if (deps.apiToken.length === 0) throw new ConfigError('api token is empty; pass --api-token or let the appliance generate one');
  if (deps.factsTokenSeconds !== undefined && !(Number.isInteger(deps.factsTokenSeconds) && deps.factsTokenSeconds >= 60 && deps.factsTokenSeconds <= 86_400)) {
    throw new ConfigError(`facts token lifetime ${deps.factsTokenSeconds} must be a whole number of seconds from 60 to 86400`);
  }
  if (
    deps.callbackTokenSeconds !== undefined &&
    !(Number.isInteger(deps.callbackTokenSeconds) && deps.callbackTokenSeconds >= 600 && deps.callbackTokenSeconds <= MAX_CALLBACK_TOKEN_SECONDS)
  ) {
    throw new ConfigError(`callback token lifetime ${deps.callbackTokenSeconds} must be a whole number of seconds from 600 to ${MAX_CALLBACK_TOKEN_SECONDS}`);
  }
  const log = deps.log.child({ subsystem: 'http' });
  const discovery = deps.discovery ?? createDiscovery({ store: deps.store, log, ...(deps.state ? { state: deps.state } : {}) });
  const sessions =
    deps.sessions ??
    createBootSessions({
      ...(deps.bootBinding !== undefined ? { binding: deps.bootBinding } : {}),
      ...(deps.factsTokenSeconds !== undefined ? { ttlSeconds: deps.factsTokenSeconds } : {}),
      history: (mac) => deps.events.list({ mac }),
    });
  const grants = { sessions, lifetimeSeconds: deps.callbackTokenSeconds ?? DEFAULT_CALLBACK_TOKEN_SECONDS };
  const metrics = createHttpMetrics(deps.registry);
  if (deps.factsIndexStatus) registerFactsIndexMetrics(metrics.registry, deps.factsIndexStatus);
  registerFileStreamMetrics(metrics.registry);
  const countEvents = !isInstrumented(deps.events);
  const env: RouteEnv = {
    deps,
    log,
    renderer: createRenderer(deps.templatesDir),
    metrics,
    discovery,
    power: deps.power ?? createIpmiPower(),
    digests: createDigestCache(),
    sessions,
    grantCallback: (machine, mac, ip) => grantCallback(grants, machine, mac, ip),
    select: async (query) => deps.store.selectProfile({ ...query, facts: await discovery.selectionFacts(query.mac) }),
    server: () => ({ address: requestHost.getStore() ?? deps.address, port: deps.httpPort() }),
    record(type, mac, ip, detail) {
      // The requester's address goes on the event; it teaches the address maps only when the
      // DHCP side saw this MAC there (a stranger's `?mac=VICTIM` must not move VICTIM).
      const trusted = dhcpAddress(sessions, mac, ip) !== undefined;
      deps.events.record({ mac, type, ...(ip ? { ip } : {}), ...(detail ? { detail } : {}), ...(trusted ? { addressTrusted: true as const } : {}) });
      if (countEvents) metrics.bootEvents.inc({ type });
    },
  };

  // DHCP offers and acks teach the sessions which address is whose (as they teach the event
  // log's address maps; HTTP events only with addressTrusted, set in record above).
  deps.events.subscribe?.((event) => env.sessions.noteEvent(event));

  const app = new Koa();
  // A request that reached us over IPv6 (not IPv4-mapped) is answered with URLs an IPv6-only
  // client can fetch: the host of every script and placeholder becomes [address6].
  if (deps.address6 !== undefined) {
    const host6 = `[${deps.address6}]`;
    app.use((ctx, next) => {
      const local = ctx.req.socket.localAddress ?? '';
      return isIPv6(local) && !local.startsWith('::ffff:') ? requestHost.run(host6, next) : next();
    });
  }
  // Metrics outermost so they see the final status, including error responses.
  app.use(async (ctx, next) => {
    const end = metrics.duration.startTimer();
    try {
      await next();
    } finally {
      const matched = (ctx as unknown as { _matchedRoute?: unknown })._matchedRoute;
      const route = typeof ctx.state.route === 'string' ? ctx.state.route : typeof matched === 'string' ? matched : 'unmatched';
      const status = ctx.respond === false ? ctx.res.statusCode : ctx.status;
      metrics.requests.inc({ method: ctx.method, route, status: String(status) });
      end({ route });
    }
  });
  app.use(errorMiddleware(log));
  app.use(assetsMiddleware(env));

  const router = new Router();
  registerBootRoutes(router, env);
  registerBootFileRoutes(router, env);
  registerMachineActionRoutes(router, env);
  registerPreseedRoutes(router, env);
  registerFactsRoutes(router, env);
  registerApiRoutes(router, env);
  registerCompatRoutes(router, env);
  registerHealthRoutes(router, env);
  registerConsoleRoutes(router, env);
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  // Koa would print its own errors to stderr; ours are logged by errorMiddleware.
  app.silent = true;
  return app;
}
