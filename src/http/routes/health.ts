/** `GET /healthz`, `GET /api/version` and `GET /metrics` (Prometheus text format from the app's own registry). */
import type Router from '@koa/router';
import { versionInfo } from '../../version.js';
import type { RouteEnv } from '../context.js';

/** Register health and metrics routes. */
export function registerHealthRoutes(router: Router, env: RouteEnv): void {
  router.get('/healthz', (ctx) => {
    // 200 while serving, even from the last good state; `store.ok` says whether a hand edit
    // is currently refused.
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok', store: env.deps.store.status() };
  });
  router.get('/api/version', (ctx) => {
    ctx.body = versionInfo();
  });
  router.get('/metrics', async (ctx) => {
    ctx.type = env.metrics.registry.contentType;
    ctx.body = await env.metrics.registry.metrics();
  });
}
