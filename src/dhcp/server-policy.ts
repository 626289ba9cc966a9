/**
 * The lease server policy (`--dhcp-mode server`): leases from a range on the interface's subnet
 * (and subnets behind relays), boot data in the same OFFER/ACK, and the PXE boot server port
 * 4011 answered exactly as the proxy policy does, for firmware that goes there anyway.
 *
 * Layers: lease-decisions.ts decides (pure), leases.ts allocates (pure), lease-rate.ts bounds new
 * leases per segment, lease-journal.ts persists; sockets, decoding and admission are the
 * listener's (listener.ts); probing for other servers and stepping down is the service's
 * (service.ts). This file keeps the state, logs, records events and sends.
 *
 * Not done, on purpose: no ICMP echo before an OFFER (RFC 2131 section 4.4.1 "SHOULD"; Node has
 * no raw ICMP socket without native code) — a DECLINE from the client (its ARP check) marks a
 * conflicting address bad for `declineMs` instead; and no unicast to an unconfigured client at
 * yiaddr (that needs an ARP entry injected by ioctl): replies without ciaddr are broadcast.
 */
import { ApplianceError } from '../errors.js';
import { createSilentLogger, type Logger } from '../log.js';
import {
  createDhcpListener,
  listenerOptionsOf,
  type DhcpListener,
  type DhcpPolicy,
  type DhcpRequest,
  type ListenerOptions,
  type ListenerStats,
  type PolicyContext,
} from './listener.js';
import { createLogBudget } from '../log-budget.js';
import { createPhaseLog } from './phase-log.js';
import { bootConfigOf, createProxyPolicy, type BootAnswerOptions, type ProxyPolicy } from './proxy-policy.js';
import { resolveServedNetwork } from './sockets.js';
import { ipToNumber, parseCidr, type Subnet } from './subnet.js';
import { LeasePool, parseDhcpRange, validateRange, type DhcpRange, type Reservation } from './leases.js';
import { openLeaseJournal, type LeaseJournal, type LeaseSync } from './lease-journal.js';
import { createLeaseRateLimiter } from './lease-rate.js';
import { encodeReply, handleServerRequest, type LeaseNetwork, type ServerAction, type ServerModeConfig } from './lease-decisions.js';

/** Error code: inconsistent server-mode options. */
export const ERR_DHCP_CONFIG = 'ERR_DHCP_CONFIG';

/** Default lease time: one hour (dnsmasq's default). */
export const DEFAULT_LEASE_TIME = 3600;

/** Default new leases per segment per minute (lease-rate.ts). */
export const DEFAULT_NEW_LEASES_PER_MINUTE = 60;

/** How often pool exhaustion and budget refusals are summarised in the log. */
export const REFUSAL_LOG_INTERVAL_MS = 60_000;

/** A network behind a DHCP relay (giaddr inside `subnet`). */
export interface RelayedNetworkOptions {
  subnet: string;
  range: DhcpRange;
  router?: string;
  dns?: string[];
  domain?: string;
}

/**
 * Parse `--dhcp-relay-network CIDR=START-END[@ROUTER],...` (e.g.
 * `10.98.0.0/24=10.98.0.100-10.98.0.150@10.98.0.1`): networks behind DHCP relays, each with its
 * range and the router its clients get. Throws `ERR_DHCP_CONFIG` / `ERR_DHCP_RANGE`.
 */
export function parseRelayedNetworks(text: string): RelayedNetworkOptions[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((p) => p !== '')
    .map((part) => {
      const m = /^([0-9./]+)=([0-9.]+-[0-9.]+)(?:@([0-9.]+))?$/.exec(part);
      if (!m || !parseCidr(m[1]!))
        throw configError(`relayed network ${JSON.stringify(part)} is not CIDR=START-END[@ROUTER], e.g. 10.98.0.0/24=10.98.0.100-10.98.0.150@10.98.0.1`);
      return { subnet: m[1]!, range: parseDhcpRange(m[2]!), ...(m[3] !== undefined ? { router: m[3] } : {}) };
    });
}

/** Options of the server policy; PXE answers on 67 default to 'boot-file' for both (a full server gives the file at once). */
export interface ServerPolicyOptions extends BootAnswerOptions {
  /** Dynamic range on the local subnet. */
  range: DhcpRange;
  /** Option 3. */
  router?: string;
  /** Option 6. */
  dns?: string[];
  /** Option 15. */
  domain?: string;
  /** Lease time in seconds (10 or more), default 3600. */
  leaseTime?: number;
  /** Networks served through relays. */
  relayedNetworks?: RelayedNetworkOptions[];
  /** JSON lease file (e.g. config/leases.json), written atomically. */
  leaseFile: string;
  /**
   * 'fdatasync' (default): an ACK goes out once its journal record is on stable storage
   * (batched: one fdatasync covers every binding recorded meanwhile). 'none': replies do not wait
   * and nothing is synced, like dnsmasq; a power cut may lose the last bindings.
   */
  leaseSync?: LeaseSync;
  /** Seconds of each lease journal append (write and fdatasync), for /metrics. */
  onJournalWrite?: (seconds: number) => void;
  /** Where the lease journal reports a corrupt file or a failed write; default silent. */
  log?: Logger;
  /** Static reservations (machine records with `ip`); called on every decision. */
  reservations?: () => Reservation[];
  /** How long a declined address is not used, default 10 min. */
  declineMs?: number;
  /** How long an offered address is held, default 60 s. */
  offerHoldMs?: number;
  /** New leases one segment may take per minute, default 60; 0 = unlimited. */
  newLeasesPerMinute?: number;
  /** Clock (ms since the epoch); a test seam. */
  now?: () => number;
}

/** Counters, for tests and metrics. */
export interface ServerPolicyStats {
  offers: number;
  acks: number;
  naks: number;
  informs: number;
  releases: number;
  declines: number;
  /** DISCOVERs not answered because no address was free. */
  exhausted: number;
  /** Requests not answered because their segment's new-lease budget was spent. */
  rateLimited: number;
  /** NAKs of claims for another MAC's reserved address. */
  reservationClaims: number;
  proxyAnswered: number;
  persistErrors: number;
  leases: { size: number; bound: number; offered: number; declined: number; reserved: number };
}

/** The lease server policy. `prepare()` (lease file, networks) must resolve before it answers. */
export interface ServerPolicy extends DhcpPolicy {
  /** Validate the options against the served subnet and load the lease file. Throws ApplianceError. */
  prepare(local: Subnet): Promise<void>;
  /** Finish pending lease writes. */
  close(): Promise<void>;
  stats(): ServerPolicyStats;
  /** The lease table (for the API and tests). */
  leases(): ReturnType<LeasePool['snapshot']>;
  /** The proxy policy it answers 4011 with (and the service steps down to). */
  readonly proxy: ProxyPolicy;
}

function configError(message: string, detail?: Record<string, unknown>): ApplianceError {
  return new ApplianceError(ERR_DHCP_CONFIG, message, detail);
}

/** Create the lease server policy. */
export function createServerPolicy(options: ServerPolicyOptions): ServerPolicy {
  const now = options.now ?? Date.now;
  const leaseTime = options.leaseTime ?? DEFAULT_LEASE_TIME;
  // A full server hands the file in its own OFFER (like dnsmasq with dhcp-boot, or smee), so
  // firmware needs no 4011 round; 4011 is still answered for firmware that goes there.
  const bootConfig = bootConfigOf(options, { bios: options.pxeOn67?.bios ?? 'boot-file', uefi: options.pxeOn67?.uefi ?? 'boot-file' });
  const proxy = createProxyPolicy(options);
  const limiter = createLeaseRateLimiter(options.newLeasesPerMinute ?? DEFAULT_NEW_LEASES_PER_MINUTE);
  const counters = { offers: 0, acks: 0, naks: 0, informs: 0, releases: 0, declines: 0, exhausted: 0, rateLimited: 0, reservationClaims: 0, persistErrors: 0 };
  // Hostile traffic must not become a log flood: refusals are summarised once per interval.
  const refusalLogs = {
    exhausted: createLogBudget(1, REFUSAL_LOG_INTERVAL_MS, now),
    rate: createLogBudget(1, REFUSAL_LOG_INTERVAL_MS, now),
    claim: createLogBudget(5, REFUSAL_LOG_INTERVAL_MS, now),
  };
  const refusedSince = { exhausted: 0, rate: 0 };
  // Per-packet lines at debug; the first reply of a kind per machine and minute at info.
  const phases = createPhaseLog();
  let pool: LeasePool | undefined;
  let journal: LeaseJournal | undefined;
  let modeConfig: ServerModeConfig | undefined;

  async function persist(log: Logger, fields: Record<string, unknown>): Promise<void> {
    try {
      await journal?.flush();
    } catch (err) {
      // The reply still goes out (availability), but a restart may lose this binding.
      counters.persistErrors += 1;
      log.error({ ...fields, code: (err as ApplianceError).code, err: (err as Error).message }, 'could not write the lease file');
    }
  }

  /** Pool full or budget spent: one log line per interval with counts, and a timeline event per machine. */
  function refused(action: Extract<ServerAction, { kind: 'ignore' }>, request: DhcpRequest, context: PolicyContext, kind: 'exhausted' | 'rate'): void {
    if (kind === 'exhausted') counters.exhausted += 1;
    else counters.rateLimited += 1;
    refusedSince[kind] += 1;
    options.events?.record({
      type: 'dhcp-refused',
      mac: action.mac,
      detail: {
        reason: kind === 'exhausted' ? 'pool exhausted' : 'new-lease rate',
        ...(request.packet.giaddr !== '0.0.0.0' ? { relay: request.packet.giaddr } : {}),
      },
    });
    const budget = refusalLogs[kind].take();
    if (!budget.log) return;
    const usage = pool!.usage(now());
    const count = refusedSince[kind];
    refusedSince[kind] = 0;
    const fields = { mac: action.mac, xid: action.xid, reason: action.reason, refused: count, intervalS: REFUSAL_LOG_INTERVAL_MS / 1000, ...usage };
    if (kind === 'exhausted') {
      context.log.warn(
        fields,
        `dhcp pool exhausted: ${count} request(s) refused; ${usage.bound} bound, ${usage.offered} offered, ${usage.declined} declined, ${usage.reserved} reserved of ${usage.size}; reserved machines are still served`,
      );
    } else {
      context.log.warn(
        fields,
        `dhcp new-lease budget spent: ${count} request(s) refused (at most ${options.newLeasesPerMinute ?? DEFAULT_NEW_LEASES_PER_MINUTE} new leases per segment per minute; raise --dhcp-new-leases-per-minute if this is a real boot storm)`,
      );
    }
  }

  function handleLease(request: DhcpRequest, context: PolicyContext): void {
    if (!pool || !modeConfig) {
      context.ignore(request, 'lease server not prepared', 'warn');
      return;
    }
    const { log } = context;
    const action = handleServerRequest(request.packet, request.from, pool, modeConfig, now(), limiter);
    const base = { mac: action.mac, xid: action.xid };
    if (action.kind === 'ignore') {
      if (action.refused) {
        refused(action, request, context, action.refused);
        return;
      }
      context.ignore(request, action.reason, action.level);
      return;
    }
    if (action.kind === 'silent') {
      if (action.type === 'release') counters.releases += 1;
      if (action.type === 'decline') counters.declines += 1;
      const level = action.type === 'abandon' ? 'debug' : 'info';
      log[level]({ ...base, ip: action.ip, reason: action.reason }, `dhcp ${action.type}`);
      if (action.type !== 'abandon' && action.reason === undefined) {
        options.events?.record({ type: action.type === 'release' ? 'dhcp-release' : 'dhcp-decline', mac: action.mac, ...(action.ip ? { ip: action.ip } : {}) });
      }
      if (action.persist) void persist(log, base);
      return;
    }
    const bytes = encodeReply(action.packet);
    const go = async (): Promise<void> => {
      // RFC 2131 section 4.3.2 wants the binding on stable storage before the ACK goes out.
      if (action.persist) await persist(log, base);
      if (!(await context.send(request, bytes, action.to))) return;
      if (action.type === 'offer') counters.offers += 1;
      else if (action.type === 'ack') counters.acks += 1;
      else if (action.type === 'nak') counters.naks += 1;
      else counters.informs += 1;
    };
    // The reply (and the journal write it waits for) starts first; its log line and events
    // follow once this turn's replies are out (after-reply.ts).
    void go();
    if (action.claimOf !== undefined) counters.reservationClaims += 1;
    context.after(() => logReply(action, request, log));
  }

  /** The log line and boot events of a reply (queued after the reply). */
  function logReply(action: Extract<ServerAction, { kind: 'reply' }>, request: DhcpRequest, log: Logger): void {
    const relay = request.packet.giaddr !== '0.0.0.0' ? { relay: request.packet.giaddr } : {};
    // Most replies are repeats logged at debug: their fields are built only when that level logs.
    const level = action.claimOf !== undefined ? 'warn' : phases.level(action.mac, `${action.type}:${action.ip ?? ''}`);
    const fields = !log.isLevelEnabled(level)
      ? {}
      : {
          mac: action.mac,
          xid: action.xid,
          ip: action.ip,
          ...(action.hostname !== undefined ? { hostname: action.hostname } : {}),
          ...(action.boot ? { arch: action.boot.firmware, client: action.boot.client, file: action.boot.file } : {}),
          ...(action.reason !== undefined ? { reason: action.reason } : {}),
          ...relay,
          to: `${action.to.address}:${action.to.port}`,
        };
    if (action.claimOf !== undefined) {
      // Someone asked for an address reserved for another machine: a spoofer or a misconfigured
      // host. Warn (budgeted: a flood stays a few lines) and put it on both machines' timelines.
      const budget = refusalLogs.claim.take();
      if (budget.log)
        log.warn(
          { ...fields, reservedFor: action.claimOf, ...(budget.suppressed > 0 ? { suppressed: budget.suppressed } : {}) },
          `dhcp nak: ${action.ip} is reserved for ${action.claimOf}, refused to ${action.mac}`,
        );
      options.events?.record({
        type: 'dhcp-refused',
        mac: action.mac,
        ...(action.ip !== undefined ? { ip: action.ip } : {}),
        detail: { reason: 'reserved for another mac', reservedFor: action.claimOf, ...relay },
      });
      options.events?.record({
        type: 'dhcp-refused',
        mac: action.claimOf,
        ...(action.ip !== undefined ? { ip: action.ip } : {}),
        detail: { reason: 'its reserved address was claimed by another mac', claimedBy: action.mac, ...relay },
      });
    } else if (log.isLevelEnabled(level)) {
      log[level](fields, `dhcp ${action.type}`);
    }
    if (action.type !== 'inform') {
      options.events?.record({
        type: action.type === 'offer' ? 'dhcp-offer' : action.type === 'ack' ? 'dhcp-ack' : 'dhcp-nak',
        mac: action.mac,
        ...(action.ip !== undefined ? { ip: action.ip } : {}),
        detail: {
          ...(action.boot ? { arch: action.boot.firmware, client: action.boot.client, file: action.boot.file } : {}),
          ...(action.reason !== undefined ? { reason: action.reason } : {}),
          ...relay,
          server: 'dhcp',
        },
      });
    }
  }

  /** Router, DNS and domain are checked once here, so no reply can fail to encode later. */
  function checkNetworkOptions(where: string, n: { router?: string; dns?: string[]; domain?: string }): void {
    for (const [name, value] of [['router', n.router], ...(n.dns ?? []).map((d) => ['dns', d])] as Array<[string, string | undefined]>) {
      if (value !== undefined && ipToNumber(value) === undefined)
        throw configError(`${where} ${name} ${JSON.stringify(value)} is not an ipv4 address`, { [name]: value });
    }
    if (n.domain !== undefined && !/^[A-Za-z0-9.-]{1,253}$/.test(n.domain))
      throw configError(`${where} domain ${JSON.stringify(n.domain)} is not a domain name`, { domain: n.domain });
  }

  function buildNetworks(subnet: Subnet): { networks: LeaseNetwork[]; ranges: Array<DhcpRange & { subnet: Subnet }> } {
    validateRange(options.range, subnet);
    checkNetworkOptions('dhcp', options);
    const networks: LeaseNetwork[] = [{ subnet, router: options.router, dns: options.dns, domain: options.domain }];
    const ranges = [{ ...options.range, subnet }];
    for (const relayed of options.relayedNetworks ?? []) {
      const s = parseCidr(relayed.subnet);
      if (!s) throw configError(`relayed network subnet ${JSON.stringify(relayed.subnet)} is not a cidr like 10.98.0.0/24`);
      validateRange(relayed.range, s);
      checkNetworkOptions(`relayed network ${relayed.subnet}`, relayed);
      networks.push({ subnet: s, router: relayed.router, dns: relayed.dns, domain: relayed.domain });
      ranges.push({ ...relayed.range, subnet: s });
    }
    return { networks, ranges };
  }

  return {
    name: 'server',
    proxy,
    async prepare(local) {
      // Short leases are allowed (tests watch renewals at T1 = lease/2); dnsmasq's floor is 120 s.
      if (!Number.isInteger(leaseTime) || leaseTime < 10 || leaseTime > 0xfffffffe) {
        throw configError(`lease time ${leaseTime} s is out of range; use 10 s or more (3600 is usual)`, { leaseTime });
      }
      const { networks, ranges } = buildNetworks(local);
      await journal?.close();
      const opened = await openLeaseJournal({
        file: options.leaseFile,
        ...(options.leaseSync !== undefined ? { sync: options.leaseSync } : {}),
        log: options.log?.child({ subsystem: 'dhcp' }) ?? createSilentLogger(),
        ...(options.onJournalWrite ? { onWrite: options.onJournalWrite } : {}),
        now,
      });
      journal = opened;
      const leasePool = new LeasePool({
        ranges,
        exclude: [options.address],
        reservations: options.reservations,
        declineMs: options.declineMs,
        offerHoldMs: options.offerHoldMs,
        onChange: (change) => opened.record(change),
      });
      leasePool.load(opened.loaded);
      leasePool.pruneDeclined(now());
      pool = leasePool;
      modeConfig = {
        serverAddress: options.address,
        networks,
        leaseTime,
        boot: bootConfig,
        clientPort: options.clientPort,
        relayPort: options.relayPort,
        broadcastAddress: options.broadcastAddress,
      };
    },
    handle(request, context) {
      if (request.role === 'dhcp') handleLease(request, context);
      // Port 4011: exactly the ProxyDHCP's boot server answer (pxe.ts), for firmware that asks there.
      else proxy.handle(request, context);
    },
    async close() {
      await journal?.close();
    },
    stats() {
      return { ...counters, proxyAnswered: proxy.answered(), leases: pool ? pool.usage(now()) : { size: 0, bound: 0, offered: 0, declined: 0, reserved: 0 } };
    },
    leases() {
      return pool ? pool.snapshot() : { leases: [], declined: [] };
    },
  };
}

/** The subnets of the relayed networks (validated by `prepare`). */
export function relayedSubnetsOf(options: Pick<ServerPolicyOptions, 'relayedNetworks'>): Subnet[] {
  return (options.relayedNetworks ?? []).flatMap((r) => parseCidr(r.subnet) ?? []);
}

/** Options of `createDhcpServer`: the listener's and the policy's. */
export interface DhcpServerOptions extends ServerPolicyOptions, Omit<ListenerOptions, 'subnet' | 'log'> {
  /** Interface that owns `address`; checked at start. */
  interface?: string;
  /** Subnet served, CIDR; default the prefix of `address` on its interface. */
  subnet?: string;
  log: Logger;
}

/** Counters of a lease server on its own. */
export type DhcpServerStats = ListenerStats & ServerPolicyStats;

/** A lease server on its own (listener + server policy, no probe), for tests. The constructor binds nothing. */
export interface DhcpServer {
  start(): Promise<{ dhcpPort: number; proxyPort: number }>;
  stop(): Promise<void>;
  stats(): DhcpServerStats;
  leases(): ReturnType<LeasePool['snapshot']>;
}

/** Create a lease server: one listener with the server policy. Probing is the service's (service.ts). */
export function createDhcpServer(options: DhcpServerOptions): DhcpServer {
  const policy = createServerPolicy(options);
  let listener: DhcpListener | undefined;
  let stopped = false;
  return {
    async start() {
      if (listener || stopped) throw new ApplianceError('ERR_DHCP_BIND', 'dhcp server cannot start twice');
      const served = resolveServedNetwork(options.address, options.interface, options.subnet, true);
      if (!served.subnet)
        throw configError(
          `cannot tell the subnet of ${options.address}: it is not an address of this host; pass --address with an address of this host (ip -4 addr) or --dhcp-mode proxy`,
        );
      await policy.prepare(served.subnet);
      listener = createDhcpListener({ ...listenerOptionsOf(options, served.subnet), relayedSubnets: relayedSubnetsOf(options) }, policy);
      const ports = await listener.start();
      return { dhcpPort: ports.dhcpPort, proxyPort: ports.proxyPort };
    },
    async stop() {
      stopped = true;
      await listener?.stop();
      await policy.close();
    },
    stats() {
      return { ...(listener?.stats() ?? { received: 0, malformed: 0, ignored: 0, sendErrors: 0 }), ...policy.stats() };
    },
    leases() {
      return policy.leases();
    },
  };
}
