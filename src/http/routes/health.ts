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
    // store or the timeline fails, and `problems` says which.
    ctx.set('Cache-Control', 'no-store');
    const store = env.deps.store.status();
    const state = env.discovery.state.status();
    const timeline = env.deps.timelineStatus?.();
    const problems = [
      ...(store.ok ? [] : [`database: ${store.error ?? 'not ok'}`]),
      ...(state.ok ? [] : [`state store: ${state.error ?? 'not ok'}`]),
      ...(timeline && !timeline.ok ? [`timeline: ${timeline.error ?? 'not ok'}`] : []),
    ];
    ctx.body = {
      status: problems.length === 0 ? 'ok' : 'degraded',
      ...(problems.length > 0 ? { problems } : {}),
      store,
      state: { ok: state.ok, machines: state.machines, factsBytes: state.factsBytes, discovery: env.discovery.state.discovery },
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
