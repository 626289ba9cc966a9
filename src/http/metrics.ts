/**
 * Prometheus metrics for one HTTP app, in its own Registry (never prom-client's global one, so
 * two apps in one process, as in tests, do not collide).
 */
import { Counter, Histogram, Registry } from 'prom-client';

/** The metrics an app records. */
export interface HttpMetrics {
  registry: Registry;
  requests: Counter<'method' | 'route' | 'status'>;
  duration: Histogram<'route'>;
  bootEvents: Counter<'type'>;
}

/** Create the app's metrics in `registry` (a new Registry by default). */
export function createHttpMetrics(registry: Registry = new Registry()): HttpMetrics {
  return {
    registry,
    requests: new Counter({ name: 'netboot_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers: [registry] }),
    duration: new Histogram({ name: 'netboot_http_request_duration_seconds', help: 'HTTP request duration', labelNames: ['route'], buckets: [0.005, 0.02, 0.1, 0.5, 2, 10, 60], registers: [registry] }),
    bootEvents: new Counter({ name: 'netboot_boot_events_total', help: 'Boot events recorded by the HTTP service, by type', labelNames: ['type'], registers: [registry] }),
  };
}
