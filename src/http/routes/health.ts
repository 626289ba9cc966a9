/** `GET /healthz` and `GET /metrics` (Prometheus text format from the app's own registry). */
import type Router from '@koa/router';
import type { RouteEnv } from '../context.js';

/** Register health and metrics routes. */
export function registerHealthRoutes(router: Router, env: RouteEnv): void {
  router.get('/healthz', (ctx) => {
    // 200 while serving, even from the last good state; `store.ok` says whether a hand edit
    // is currently refused.
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok', store: env.deps.store.status() };
  });
  router.get('/metrics', async (ctx) => {
    ctx.type = env.metrics.registry.contentType;
    ctx.body = await env.metrics.registry.metrics();
  });
}
