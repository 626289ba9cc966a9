/**
 * Prometheus metrics for one HTTP app, in its own Registry (never prom-client's global one, so
 * two apps in one process, as in tests, do not collide).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EventLog } from '../events.js';
import type { FactsIndexStatus } from '../store/facts-index.js';
import { fileStreamStats } from './file-stream.js';

const BOOT_EVENTS = 'netboot_boot_events_total';

/** The metrics an app records. */
export interface HttpMetrics {
  registry: Registry;
  requests: Counter<'method' | 'route' | 'status'>;
  duration: Histogram<'route'>;
  bootEvents: Counter<'type'>;
}

function bootEventsCounter(registry: Registry): Counter<'type'> {
  const existing = registry.getSingleMetric(BOOT_EVENTS);
  if (existing) return existing as Counter<'type'>;
  return new Counter({ name: BOOT_EVENTS, help: 'Boot events recorded, by type', labelNames: ['type'], registers: [registry] });
}

/** Create the app's metrics in `registry` (a new Registry by default). */
export function createHttpMetrics(registry: Registry = new Registry()): HttpMetrics {
  return {
    registry,
    requests: new Counter({
      name: 'netboot_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'netboot_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['route'],
      buckets: [0.005, 0.02, 0.1, 0.5, 2, 10, 60],
      registers: [registry],
    }),
    bootEvents: bootEventsCounter(registry),
  };
}

/**
 * Asset bytes sent by sendfile(2) and by copying through the process (src/http/file-stream.ts),
 * process-wide, read at each scrape: a copy share above a few per cent means sendfile is off
 * or clients are slow (each full send buffer costs one 64 KiB copy).
 */
export function registerFileStreamMetrics(registry: Registry): void {
  const name = 'netboot_http_asset_bytes_total';
  registry.removeSingleMetric(name);
  new Counter({
    name,
    help: 'Asset bytes sent, by how: sendfile (the kernel copies page cache to the socket) or copy (read into the process, then written)',
    labelNames: ['how'],
    registers: [registry],
    collect() {
      const stats = fileStreamStats();
      this.reset();
      this.inc({ how: 'sendfile' }, stats.sendfileBytes);
      this.inc({ how: 'copy' }, stats.copiedBytes);
    },
  });
}

/**
 * Gauges of the facts index (store/facts-index.ts), read from `status` at each scrape:
 * machines held, bytes held, and machines its bounds left out.
 */
export function registerFactsIndexMetrics(registry: Registry, status: () => FactsIndexStatus): void {
  const gauges: Array<[string, string, (s: FactsIndexStatus) => number]> = [
    ['netboot_facts_index_machines', 'Machines whose verified facts the DHCP facts index holds', (s) => s.machines],
    ['netboot_facts_index_bytes', 'Bytes of facts the DHCP facts index holds', (s) => s.bytes],
    ['netboot_facts_index_skipped_machines', 'Machines with verified facts the DHCP facts index left out by its limits', (s) => s.skipped],
  ];
  for (const [name, help, read] of gauges) {
    // One app per registry in the appliance; a test reusing a registry gets the newest index.
    registry.removeSingleMetric(name);
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(status()));
      },
    });
  }
}

/**
 * Seconds of each lease journal append (the write and, with the default `--lease-sync`, its
 * fdatasync), by address family: every ACK waits for at least one, so its tail bounds the
 * ACK's (npm run bench reads it around the DORA runs).
 */
export function leaseJournalWriteHistogram(registry: Registry): Histogram<'family'> {
  const name = 'netboot_dhcp_lease_journal_write_seconds';
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Histogram<'family'>;
  return new Histogram({
    name,
    help: 'Seconds of each DHCP lease journal append (write and fdatasync)',
    labelNames: ['family'],
    buckets: [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.02, 0.035, 0.06, 0.1, 0.25, 1],
    registers: [registry],
  });
}

const INSTRUMENTED = Symbol('netboot.instrumentedEventLog');

/** True when `events` already counts its records (see instrumentEventLog). */
export function isInstrumented(events: EventLog): boolean {
  return (events as { [INSTRUMENTED]?: boolean })[INSTRUMENTED] === true;
}

/**
 * Wrap the process's EventLog so every boot event, from DHCP and TFTP as well as HTTP, is
 * counted in `netboot_boot_events_total` in `registry`. Pass the wrapper to every server and
 * the same `registry` to createHttpApp; the app then does not count its own events twice.
 */
export function instrumentEventLog(events: EventLog, registry: Registry): EventLog {
  const counter = bootEventsCounter(registry);
  // One labelled child per event type, looked up once: hashing the labels of every event showed
  // in the DHCP answer path's profile.
  const byType = new Map<string, { inc(): void }>();
  return {
    [INSTRUMENTED]: true,
    record(event) {
      const recorded = events.record(event);
      let child = byType.get(recorded.type);
      if (child === undefined) {
        child = counter.labels({ type: recorded.type });
        byType.set(recorded.type, child);
      }
      child.inc();
      return recorded;
    },
    list: (filter) => events.list(filter),
    macForIp: (ip) => events.macForIp(ip),
    lastIp: (mac) => events.lastIp(mac),
    timelineMac: (ip) => events.timelineMac(ip),
    ...(events.subscribe ? { subscribe: events.subscribe.bind(events) } : {}),
  } as EventLog;
}
