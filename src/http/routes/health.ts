/**
 * `GET /healthz`, `GET /api/version` and `GET /metrics` (Prometheus text format from the app's own
 * registry). `/api/version` is an API read like every other `/api/*` route: it needs the API
 * token or the read-only token (the version tells an attacker which advisories apply).
 */
import type Router from '@koa/router';
import { ApplianceError } from '../../errors.js';
import { versionInfo } from '../../version.js';
import type { RouteEnv } from '../context.js';
import { bearerAccess } from '../token.js';

/** Register health and metrics routes. */
export function registerHealthRoutes(router: Router, env: RouteEnv): void {
  router.get('/healthz', (ctx) => {
    // 200 while serving, even from the last good state (restarting would not help); `status`
    // says `degraded` while a hand edit is refused or a write of the database, the state
    // store or the timeline fails, and `problems` says which; `warnings` says what works but
    // less well than configured.
    ctx.set('Cache-Control', 'no-store');
    const store = env.deps.store.status();
    const state = env.discovery.state.status();
    const timeline = env.deps.timelineStatus?.();
    const problems = [
      ...(store.ok ? [] : [`database: ${store.error ?? 'not ok'}`]),
      ...(state.ok ? [] : [`state store: ${state.error ?? 'not ok'}`]),
      ...(timeline && !timeline.ok ? [`timeline: ${timeline.error ?? 'not ok'}`] : []),
    ];
    // A bound reached is no failure (the discovered-machine and connection caps do not degrade
    // it either): said in `warnings`, the status left as it is.
    const index = env.deps.factsIndexStatus?.();
    const warnings =
      index && index.skipped > 0
        ? [
            `facts index: ${index.skipped} machine${index.skipped === 1 ? '' : 's'} left out by its limits; DHCP chooses their boot file without facts (the boot script still uses them)`,
          ]
        : [];
    ctx.body = {
      status: problems.length === 0 ? 'ok' : 'degraded',
      ...(problems.length > 0 ? { problems } : {}),
      ...(warnings.length > 0 ? { warnings } : {}),
      store,
      state: { ok: state.ok, machines: state.machines, factsBytes: state.factsBytes, discovery: env.discovery.state.discovery },
      ...(index ? { factsIndex: { machines: index.machines, bytes: index.bytes, skipped: index.skipped } } : {}),
    };
  });
  router.get('/api/version', (ctx) => {
    if (bearerAccess(ctx.get('Authorization') || undefined, env.deps.apiToken, env.deps.apiReadToken) === undefined)
      throw new ApplianceError('ERR_UNAUTHORIZED', 'the api needs "Authorization: Bearer <token>" with the api token or the read-only token');
    ctx.body = versionInfo();
  });
  router.get('/metrics', async (ctx) => {
    ctx.type = env.metrics.registry.contentType;
    ctx.body = await env.metrics.registry.metrics();
  });
}
