/**
 * The DHCPv6 sockets: UDP 547 (joined to All_DHCP_Relay_Agents_and_Servers ff02::1:2 on the
 * lab interface) and UDP 4011 (EDK2's proxy boot-server request, RFC-less but what
 * PxeBcDhcp6.c sends), both IPv6. Receive, decode, decide (boot.ts), send to the source
 * address and port, log with the MAC, journal lease changes. A bad datagram is logged and
 * dropped, never thrown: only a failed bind rejects `start()`.
 */
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { ApplianceError } from '../errors.js';
import type { EventLog } from '../events.js';
import type { Logger } from '../log.js';
import { openLeaseJournal, type LeaseJournal, type LeaseSync } from '../dhcp/lease-journal.js';
import { createLogBudget, type LogBudget } from '../log-budget.js';
import type { Lease6Budget, Lease6Cap } from './budget.js';
import { formatIpv6, isLinkLocal, parseIpv6, sameIpv6Prefix } from './address.js';
import { decideProxy6, decideServer6, sourceAddress, type Boot6FileChooser, type Decision6, type Dhcp6Config, type Port6Role } from './boot.js';
import { Lease6Pool, type Dhcp6Range } from './leases.js';
import { decodeMessage, duidLl, duidUuid, encodeMessage, Msg6, MSG6_NAMES, readClientMessage } from './packet.js';

/** All_DHCP_Relay_Agents_and_Servers (RFC 8415 section 7.1). */
export const ALL_DHCP_SERVERS = 'ff02::1:2';

/** DHCPv6 modes: `proxy` beside another DHCPv6 server, `server` leasing addresses. */
export type Dhcp6Mode = 'proxy' | 'server';

/** Options of {@link createDhcp6Server}. */
export interface Dhcp6ServerOptions {
  mode: Dhcp6Mode;
  /** Our IPv6 address on the segment (URLs carry it; a global or ULA address). */
  address: string;
  /** Interface to join ff02::1:2 on; default: the one holding `address`. */
  interface?: string;
  /** UDP port of DHCPv6 (547; 0 in tests). */
  port: number;
  /** UDP port of the boot-server request (4011; 0 in tests; -1 off). */
  proxyPort: number;
  /** Bind address of both sockets (default `::`: multicast needs the wildcard). */
  bindAddress?: string;
  httpPort: () => number;
  log: Logger;
  events: EventLog;
  /** Our DUID; default DUID-LL of the interface's MAC, else DUID-UUID from the address. */
  serverDuid?: Buffer;
  chooseBootFile?: Boot6FileChooser;
  /** Server mode. */
  range?: Dhcp6Range;
  leaseSeconds?: number;
  leaseFile?: string;
  leaseSync?: LeaseSync;
  /** Seconds of each lease journal append, for /metrics. */
  onJournalWrite?: (seconds: number) => void;
  dns?: readonly string[];
  domains?: readonly string[];
  /** Server mode: what one client may take (budget.ts); default no limit. */
  budget?: Lease6Budget;
  /** Client DUIDs never answered (our own probe's, probe.ts). */
  ignoreClientDuids?: readonly Buffer[];
  /** Server mode, serving: a client named another server's DUID (a Request, Renew, Release or Decline to it). */
  onForeignServer?: (serverDuid: string, from: string) => void;
  /** Accept clients from any source (tests on loopback); default: link-local or our /64 only. */
  anySource?: boolean;
  now?: () => number;
}

/** Seconds between budget warnings of one cap. */
const BUDGET_LOG_INTERVAL_MS = 10_000;

/** A started-on-demand DHCPv6 server. */
export interface Dhcp6Server {
  start(): Promise<{ port: number; proxyPort: number }>;
  stop(): Promise<void>;
  readonly serverDuid: Buffer;
  /** Server mode: the pool (tests read it). */
  readonly pool: Lease6Pool | undefined;
  /** Server mode: stop leasing (answer as proxy mode does) or lease again; service.ts steps down with it. */
  setSteppedDown(on: boolean): void;
  /** Budget refusals so far, per cap. */
  refusals(): Partial<Record<Lease6Cap, number>>;
}

/** The interface holding `address` and its MAC, from the host's interface list. */
export function findInterface6(address: string): { name: string; mac: string } | undefined {
  const want = parseIpv6(address);
  if (!want) return undefined;
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv6' && parseIpv6(a.address.replace(/%.*$/, ''))?.equals(want)) return { name, mac: a.mac };
    }
  }
  return undefined;
}

/** The default server DUID: DUID-LL of `mac` when it is a real one, else DUID-UUID of a hash of the address. */
export function defaultServerDuid(address: string, mac?: string): Buffer {
  if (mac && mac !== '00:00:00:00:00:00') return duidLl(mac);
  return duidUuid(createHash('sha256').update(`netboot-appliance ${address}`).digest().subarray(0, 16));
}

/** Messages that name the server they are for: one naming a DUID not ours means another server is here. */
const FOR_A_SERVER = new Set<number>([Msg6.REQUEST, Msg6.RENEW, Msg6.RELEASE, Msg6.DECLINE]);

/** What raises each cap. */
const CAP_HINT: Record<Lease6Cap, string> = {
  'ia-per-client': 'at most 4 IA_NA per client',
  'clients-per-host': 'raise --dhcp6-max-per-host if one machine really boots this many DUIDs',
  'host-rate': 'raise --dhcp6-max-per-host if one machine really boots this many DUIDs',
  'segment-rate': 'raise --dhcp-new-leases-per-minute if this is a real boot storm',
  leases: 'raise --dhcp6-max-leases',
};

/** Create (but do not bind) the DHCPv6 server. */
export function createDhcp6Server(options: Dhcp6ServerOptions): Dhcp6Server {
  const log = options.log.child({ subsystem: 'dhcp6' });
  const now = options.now ?? Date.now;
  const address = parseIpv6(options.address);
  if (!address) throw new ApplianceError('ERR_CONFIG', `--address6 ${options.address} is not an ipv6 address`);
  const found = findInterface6(options.address);
  const ifname = options.interface ?? found?.name;
  const serverDuid = options.serverDuid ?? defaultServerDuid(options.address, found?.mac);
  const pool =
    options.mode === 'server'
      ? new Lease6Pool({ range: options.range!, leaseSeconds: options.leaseSeconds ?? 3600, onChange: (c) => journal?.record(c) })
      : undefined;
  let journal: LeaseJournal | undefined;
  let steppedDown = false;
  const refusals: Partial<Record<Lease6Cap, number>> = {};
  const budgetLogs = new Map<Lease6Cap, LogBudget>();
  const sockets: dgram.Socket[] = [];
  const config = (): Dhcp6Config => ({
    serverDuid,
    address: formatIpv6(address),
    httpPort: options.httpPort(),
    ...(options.chooseBootFile ? { chooseBootFile: options.chooseBootFile } : {}),
    ...(options.dns ? { dns: options.dns } : {}),
    ...(options.domains ? { domains: options.domains } : {}),
    ...(options.leaseSeconds !== undefined ? { leaseSeconds: options.leaseSeconds } : {}),
  });

  // Node cannot learn a datagram's interface (no IPV6_PKTINFO): a client must come from a
  // link-local address or from our own /64, or it is not on our segment.
  const fromOurLink = (source: string): boolean => {
    if (options.anySource) return true;
    const b = parseIpv6(source.replace(/%.*$/, ''));
    if (!b) return false;
    if (isLinkLocal(b)) return ifname === undefined || !source.includes('%') || source.endsWith(`%${ifname}`);
    return sameIpv6Prefix(b, address, 64);
  };

  const handle = (socket: dgram.Socket, role: Port6Role, msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    if (!fromOurLink(rinfo.address)) {
      log.debug({ from: rinfo.address, port: rinfo.port }, 'dhcpv6 datagram from off our link dropped');
      return;
    }
    let decision: Decision6;
    try {
      const req = readClientMessage(decodeMessage(msg));
      const source = sourceAddress(rinfo.address);
      if (req.clientId && options.ignoreClientDuids?.some((d) => d.equals(req.clientId!.raw))) return;
      const serving = options.mode === 'server' && !steppedDown;
      if (serving && req.serverId && !req.serverId.equals(serverDuid) && FOR_A_SERVER.has(req.type))
        options.onForeignServer?.(req.serverId.toString('hex'), source);
      decision = serving ? decideServer6(req, source, role, config(), pool!, now(), options.budget) : decideProxy6(req, source, role, config());
      if (decision.kind === 'ignore') {
        log.debug({ mac: decision.who?.mac, type: MSG6_NAMES[req.type], from: rinfo.address, reason: decision.reason }, 'dhcpv6 message ignored');
        return;
      }
    } catch (err) {
      // Malformed or hostile: never crash, never answer.
      log.debug({ from: rinfo.address, port: rinfo.port, err: (err as Error).message }, 'undecodable dhcpv6 datagram dropped');
      return;
    }
    const d = decision;
    if (d.refused) budgetRefused(d, rinfo);
    const out = encodeMessage(d.reply);
    // A Reply that binds, extends, releases or declines goes out once the change is journalled
    // (--lease-sync fdatasync: on stable storage), as the IPv4 server's ACK does; a failed
    // write sends nothing (the client retries) rather than promise a lease that may be lost.
    const durable = journal && d.summary.startsWith('reply') ? journal.flush() : Promise.resolve();
    void durable.then(
      () => {
        socket.send(out, rinfo.port, rinfo.address, (err) => {
          if (err) log.warn({ mac: d.who.mac, to: rinfo.address, err: err.message }, 'sending a dhcpv6 reply failed');
        });
        record(d, rinfo, role);
      },
      (err: unknown) => log.error({ mac: d.who.mac, err: (err as Error).message }, 'dhcpv6 lease journal write failed; reply not sent'),
    );
  };

  /** A cap was hit: count, one warning per cap and interval (a flood stays a few lines), a timeline event. */
  const budgetRefused = (d: Extract<Decision6, { kind: 'reply' }>, rinfo: dgram.RemoteInfo): void => {
    for (const r of d.refused ?? []) {
      refusals[r.cap] = (refusals[r.cap] ?? 0) + 1;
      let b = budgetLogs.get(r.cap);
      if (!b) budgetLogs.set(r.cap, (b = createLogBudget(1, BUDGET_LOG_INTERVAL_MS, now)));
      const take = b.take();
      if (take.log)
        log.warn(
          { mac: d.who.mac, from: rinfo.address, cap: r.cap, refused: refusals[r.cap], ...(take.suppressed > 0 ? { suppressed: take.suppressed } : {}) },
          `dhcpv6 lease budget: ${r.message}; address refused (${CAP_HINT[r.cap]})`,
        );
    }
    options.events.record({
      mac: d.who.macSource === 'unknown' ? '' : d.who.mac,
      type: 'dhcp-refused',
      detail: { reason: d.refused![0]!.message, cap: d.refused![0]!.cap, server: 'dhcp6' },
    });
  };

  const record = (d: Extract<Decision6, { kind: 'reply' }>, rinfo: dgram.RemoteInfo, role: Port6Role): void => {
    const ip = d.addresses[0] ?? sourceAddress(rinfo.address);
    log.info(
      {
        mac: d.who.mac,
        macSource: d.who.macSource,
        client: d.who.client,
        arch: d.who.arch,
        to: rinfo.address,
        port: role,
        bootUrl: d.bootUrl,
        addresses: d.addresses,
      },
      `dhcpv6 ${d.summary}`,
    );
    options.events.record({
      mac: d.who.macSource === 'unknown' ? '' : d.who.mac,
      type: d.reply.type === 2 ? 'dhcp6-advertise' : 'dhcp6-reply',
      ip,
      detail: {
        message: d.summary,
        client: d.who.client,
        ...(d.who.arch !== undefined ? { arch: d.who.arch } : {}),
        ...(d.bootUrl ? { bootUrl: d.bootUrl } : {}),
        ...(d.addresses.length > 0 ? { addresses: d.addresses } : {}),
        mode: options.mode,
      },
    });
  };

  const open = (port: number, role: Port6Role): Promise<number> =>
    new Promise((resolve, reject) => {
      const s = dgram.createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
      const onError = (err: Error) => reject(err);
      s.once('error', onError);
      s.on('message', (msg, rinfo) => handle(s, role, msg, rinfo));
      s.bind(port, options.bindAddress ?? '::', () => {
        s.off('error', onError);
        s.on('error', (err) => log.warn({ err: err.message, role }, 'dhcpv6 socket error'));
        if (role === 'dhcp' && ifname !== undefined && (options.bindAddress ?? '::') === '::') {
          try {
            s.addMembership(ALL_DHCP_SERVERS, `::%${ifname}`);
          } catch (err) {
            s.close();
            reject(new ApplianceError('ERR_BIND', `cannot join ${ALL_DHCP_SERVERS} on ${ifname}: ${(err as Error).message}`));
            return;
          }
        }
        sockets.push(s);
        resolve(s.address().port);
      });
    });

  return {
    serverDuid,
    pool,
    setSteppedDown(on) {
      steppedDown = on;
    },
    refusals() {
      return { ...refusals };
    },
    async start() {
      try {
        if (pool && options.leaseFile) {
          journal = await openLeaseJournal({
            file: options.leaseFile,
            log,
            ...(options.leaseSync ? { sync: options.leaseSync } : {}),
            ...(options.onJournalWrite ? { onWrite: options.onJournalWrite } : {}),
          });
          pool.load(journal.loaded);
        }
        const port = await open(options.port, 'dhcp');
        const proxyPort = options.proxyPort >= 0 ? await open(options.proxyPort, 'proxy') : 0;
        log.info(
          { mode: options.mode, address: formatIpv6(address), interface: ifname, port, proxyPort, duid: serverDuid.toString('hex'), range: options.range },
          'dhcpv6 listening',
        );
        return { port, proxyPort };
      } catch (err) {
        await this.stop();
        throw err;
      }
    },
    async stop() {
      for (const s of sockets.splice(0)) await new Promise<void>((r) => s.close(() => r()));
      const j = journal;
      journal = undefined;
      await j?.close();
    },
  };
}
