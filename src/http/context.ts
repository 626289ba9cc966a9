/**
 * What every route needs: the app's dependencies plus the renderer, metrics and helpers for
 * reading a booting machine's identity from a request.
 */
import type Koa from 'koa';
import type { Registry } from 'prom-client';
import type { BootEventType, EventLog } from '../events.js';
import { normalizeMac, normalizeUuid } from '../identity.js';
import type { Logger } from '../log.js';
import type { PowerController } from '../power/ipmi.js';
import type { Discovery } from '../store/discovery.js';
import type { StateStore } from '../store/state-store.js';
import type { Store } from '../store/store.js';
import type { Machine } from '../store/schema.js';
import type { Selection, SelectQuery } from '../store/select.js';
import type { BootBinding, BootSessions } from './boot-sessions.js';
import type { CallbackGrant } from './callback-grant.js';
import type { HttpMetrics } from './metrics.js';
import type { FactsIndexStatus } from '../store/facts-index.js';
import type { DigestCache } from './asset-files.js';
import type { BootRequest, Renderer, ServerAddress } from './render.js';

/** Dependencies of the HTTP app (injected; the app never reads config or binds a port). */
export interface HttpDeps {
  store: Store;
  events: EventLog;
  log: Logger;
  /** The IPv4 address (or host name) machines reach this appliance at; goes into scripts. */
  address: string;
  /**
   * The IPv6 address of the appliance (`--address6`): requests that arrive over IPv6 get scripts
   * and placeholders with `[ADDRESS6]` as the host (src/dhcp6/, README: IPv6).
   */
  address6?: string;
  /** The real HTTP port, known only after listen (port 0 in tests). */
  httpPort: () => number;
  /** Operator templates (profile.ipxe.njk, cloud-config.yaml.njk ...). */
  templatesDir: string;
  /** Files served under /assets/. */
  assetsDir: string;
  /** Bearer token required for API writes (and accepted for reads). */
  apiToken: string;
  /** A token that may only read the API (GET); optional. */
  apiReadToken?: string | undefined;
  /** Health of the persisted boot timeline, for /healthz. */
  timelineStatus?: () => { ok: boolean; error?: string };
  /** Size of the facts index DHCP's boot-file choice reads (store/facts-index.ts), for /healthz and /metrics. */
  factsIndexStatus?: () => FactsIndexStatus;
  /** Runtime state (sightings, facts); default: in memory. Ignored when `discovery` is given. */
  state?: StateStore;
  /** Registry for /metrics (default: a new one per app). */
  registry?: Registry;
  /** Seconds a machine that cannot boot yet waits before asking again (default 20). */
  retrySeconds?: number;
  /** Registers first boots and stores facts (default: createDiscovery over `store`, cap 4096). */
  discovery?: Discovery;
  /** Where `/boot/<file>` (UEFI HTTP boot) finds iPXE binaries: the TFTP root, then system dirs. */
  bootDirs?: readonly string[];
  /** What the web console shows about the appliance (routes/console.ts). */
  console?: ConsoleInfo;
  /** BMC power control (default: ipmitool). */
  power?: PowerController;
  /**
   * How a request is tied to a machine (boot-sessions.ts): `dhcp` (default) trusts only the
   * address DHCP saw for the MAC with verified facts and one-shot consumption; `none` trusts
   * the MAC alone (an appliance that sees no DHCP).
   */
  bootBinding?: BootBinding;
  /** Lifetime of a boot's facts token, seconds (default 1800). */
  factsTokenSeconds?: number;
  /** Lifetime of a provisioning's callback token from the boot that started it, seconds (default 86400). */
  callbackTokenSeconds?: number;
  /** The boot sessions, when shared with the TFTP side (grub); default: made from bootBinding and factsTokenSeconds. */
  sessions?: BootSessions;
}

/** Appliance facts for the web console's login and status pages. */
export interface ConsoleInfo {
  /** Where the generated API token is stored (shown on the login page); unset with --api-token. */
  tokenFile?: string;
  /** Package version. */
  version?: string;
  /** Ports, DHCP mode and why, start-up warnings: merged into `GET /api/console/status`. */
  status?: () => Record<string, unknown>;
}

/** Shared state handed to every route module. */
export interface RouteEnv {
  deps: HttpDeps;
  log: Logger;
  renderer: Renderer;
  metrics: HttpMetrics;
  server(): ServerAddress;
  discovery: Discovery;
  power: PowerController;
  /** sha256 of microkernel tarballs, cached by path, size and mtime. */
  digests: DigestCache;
  /** Boot sessions: facts tokens and which address speaks for which MAC. */
  sessions: BootSessions;
  /** Whether the document for `mac` sent to `ip` carries `machine`'s callback token (callback-grant.ts). */
  grantCallback(machine: Machine | undefined, mac: string, ip: string): CallbackGrant;
  /** Profile selection with the machine's verified facts (the only facts fact selectors read). */
  select(query: SelectQuery & { mac: string }): Promise<Selection>;
  /** Record a boot event and count it in the metrics. */
  record(type: BootEventType, mac: string, ip: string | undefined, detail?: Record<string, unknown>): void;
}

/** The client's IPv4 address without the IPv4-mapped IPv6 prefix. */
export function clientIp(ctx: Koa.Context): string {
  const ip = ctx.request.ip || ctx.req.socket.remoteAddress || '';
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}

function queryString(ctx: Koa.Context, name: string): string | undefined {
  const v = ctx.query[name];
  const s = Array.isArray(v) ? v[0] : v;
  return typeof s === 'string' && s !== '' ? s : undefined;
}

/**
 * A booting machine's identity from the query (`mac`, `uuid`, `arch`, `platform`), falling back
 * to the MAC last seen at the client's address (learned from DHCP). Values that fail
 * validation are dropped, never passed on: a hostile query string cannot reach a template.
 */
export function bootRequestFrom(ctx: Koa.Context, events: EventLog, fallbackMac?: string): BootRequest | undefined {
  const rawMac = queryString(ctx, 'mac');
  const mac = (rawMac !== undefined ? normalizeMac(rawMac) : undefined) ?? events.macForIp(clientIp(ctx)) ?? fallbackMac;
  if (mac === undefined) return undefined;
  const word = (s: string | undefined): string | undefined => (s !== undefined && /^[A-Za-z0-9_-]{1,32}$/.test(s) ? s : undefined);
  return {
    mac,
    uuid: normalizeUuid(queryString(ctx, 'uuid')),
    arch: word(queryString(ctx, 'arch')),
    platform: word(queryString(ctx, 'platform')),
  };
}

/**
 * The booting machine's identity like bootRequestFrom, and when the request carries no usable
 * MAC but a UUID (`/ipxe?uuid=`, bootcfg's and matchbox's habit), the MAC of the operator's
 * machine record with that UUID. Never a discovered record: the network cannot pick a MAC.
 */
export async function identifyMachine(ctx: Koa.Context, deps: Pick<HttpDeps, 'events' | 'store'>): Promise<BootRequest | undefined> {
  const req = bootRequestFrom(ctx, deps.events);
  if (req) return req;
  const uuid = normalizeUuid(queryString(ctx, 'uuid'));
  if (uuid === undefined) return undefined;
  const machine = await deps.store.findMachineByUuid(uuid);
  return machine ? bootRequestFrom(ctx, deps.events, machine.mac) : undefined;
}
