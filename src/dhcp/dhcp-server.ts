/**
 * The authoritative DHCP server mode (`--dhcp-mode server`): leases from a range on the
 * interface's subnet (and subnets behind relays), boot data in the same OFFER/ACK, and the PXE
 * boot server port 4011 answered as the ProxyDHCP does, for firmware that goes there anyway.
 *
 * Layers: server-mode.ts decides (pure), leases.ts allocates (pure), lease-file.ts persists,
 * sockets.ts owns the socket layout (two sockets per port so replies leave by the configured
 * interface). Before binding, `start()` probes the segment for another DHCP server and refuses
 * to run beside one unless `force` (probe.ts).
 *
 * Not done, on purpose: no ICMP echo before an OFFER (RFC 2131 section 4.4.1 "SHOULD"; Node has
 * no raw ICMP socket without native code) — a DECLINE from the client (its ARP check) marks a
 * conflicting address bad for `declineMs` instead; and no unicast to an unconfigured client at
 * yiaddr (that needs an ARP entry injected by ioctl): replies without ciaddr are broadcast.
 */
import type dgram from 'node:dgram';
import { ApplianceError } from '../errors.js';
import { clientMac, decodePacket, encodePacket, type DhcpPacket } from './packet.js';
import { buildProxyReply, classify, replyDestination, type BootConfig, type PortRole } from './pxe.js';
import { bindError, openListenerSockets, resolveServedNetwork, type DhcpSockets, type SendFunction } from './sockets.js';
import { admissionRefusal, ipToNumber, parseCidr, type Subnet } from './subnet.js';
import { LeasePool, validateRange, type DhcpRange, type Reservation } from './leases.js';
import { createLeaseFileWriter, loadLeaseFile, type LeaseFileWriter } from './lease-file.js';
import { handleServerRequest, type LeaseNetwork, type ServerModeConfig } from './server-mode.js';
import { DEFAULT_PROBE_TIMEOUT_MS, probeForDhcpServer, type ProbeResult } from './probe.js';
import type { DhcpListenerOptions } from './server.js';

/** Error code: another DHCP server answers on the segment and `force` is off. */
export const ERR_DHCP_OTHER_SERVER = 'ERR_DHCP_OTHER_SERVER';
/** Error code: inconsistent server-mode options. */
export const ERR_DHCP_CONFIG = 'ERR_DHCP_CONFIG';

/** Default lease time: one hour (dnsmasq's default). */
export const DEFAULT_LEASE_TIME = 3600;

/** A network behind a DHCP relay (giaddr inside `subnet`). */
export interface RelayedNetworkOptions {
  subnet: string;
  range: DhcpRange;
  router?: string;
  dns?: string[];
  domain?: string;
}

/** Options of `createDhcpServer`; PXE answers on 67 default to 'boot-file' for both (a full server gives the file at once). */
export interface DhcpServerOptions extends DhcpListenerOptions {
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
  /** Static reservations (machine records with `ip`); called on every decision. */
  reservations?: () => Reservation[];
  /** How long a declined address is not used, default 10 min. */
  declineMs?: number;
  /** How long an offered address is held, default 60 s. */
  offerHoldMs?: number;
  /** Start even when another DHCP server answers the probe. */
  force?: boolean;
  /** Probe timeout, default 5000 ms (DEFAULT_PROBE_TIMEOUT_MS). */
  probeTimeoutMs?: number;
  /** Replaces the probe (tests, or when the caller probed already). */
  probe?: () => Promise<ProbeResult>;
  /** Clock (ms since the epoch); a test seam. */
  now?: () => number;
}

/** Counters, for tests and metrics. */
export interface DhcpServerStats {
  received: number;
  malformed: number;
  ignored: number;
  offers: number;
  acks: number;
  naks: number;
  informs: number;
  releases: number;
  declines: number;
  exhausted: number;
  proxyAnswered: number;
  sendErrors: number;
  persistErrors: number;
  leases: { size: number; bound: number; offered: number; declined: number; reserved: number };
}

/** A running (or not yet started) DHCP server. The constructor binds nothing. */
export interface DhcpServer {
  /** Probe, load leases, bind 67 and 4011; resolves with the bound ports; rejects (having closed what it opened) on any failure. */
  start(): Promise<{ dhcpPort: number; proxyPort: number }>;
  /** Close the sockets and finish pending lease writes; safe to call twice or before start. */
  stop(): Promise<void>;
  stats(): DhcpServerStats;
  /** The lease table (for the API and tests). */
  leases(): ReturnType<LeasePool['snapshot']>;
}

function configError(message: string, detail?: Record<string, unknown>): ApplianceError {
  return new ApplianceError(ERR_DHCP_CONFIG, message, detail);
}

/** Create the DHCP server (server mode). Binds nothing until `start()`. */
export function createDhcpServer(options: DhcpServerOptions): DhcpServer {
  const log = options.log.child({ subsystem: 'dhcp' });
  const now = options.now ?? Date.now;
  const leaseTime = options.leaseTime ?? DEFAULT_LEASE_TIME;
  const bootConfig: BootConfig = {
    serverAddress: options.address,
    httpPort: options.httpPort,
    bootFiles: options.bootFiles,
    httpBootUrl: options.httpBootUrl,
    ipxeScriptUrl: options.ipxeScriptUrl,
    // A full server hands the file in its own OFFER (like dnsmasq with dhcp-boot, or smee), so
    // firmware needs no 4011 round; 4011 is still answered for firmware that goes there.
    pxeOn67: { bios: options.pxeOn67?.bios ?? 'boot-file', uefi: options.pxeOn67?.uefi ?? 'boot-file' },
  };
  const counters = { received: 0, malformed: 0, ignored: 0, offers: 0, acks: 0, naks: 0, informs: 0, releases: 0, declines: 0, exhausted: 0, proxyAnswered: 0, sendErrors: 0, persistErrors: 0 };
  let pool: LeasePool | undefined;
  let writer: LeaseFileWriter | undefined;
  let modeConfig: ServerModeConfig | undefined;
  let localSubnet: Subnet | undefined;
  let sockets: DhcpSockets | undefined;
  let state: 'new' | 'starting' | 'running' | 'stopped' = 'new';

  function send(bytes: Buffer, to: { address: string; port: number }, sendFn: SendFunction, fields: Record<string, unknown>): Promise<boolean> {
    return sendFn(bytes, to.address, to.port).then(
      () => true,
      (err: unknown) => {
        counters.sendErrors += 1;
        log.warn({ ...fields, to: `${to.address}:${to.port}`, code: (err as NodeJS.ErrnoException).code }, 'dhcp send failed');
        return false;
      },
    );
  }

  async function persist(fields: Record<string, unknown>): Promise<void> {
    try {
      await writer?.save();
    } catch (err) {
      // The reply still goes out (availability), but a restart may lose this binding.
      counters.persistErrors += 1;
      log.error({ ...fields, code: (err as ApplianceError).code, err: (err as Error).message }, 'could not write the lease file');
    }
  }

  function handleDhcp(packet: DhcpPacket, rinfo: dgram.RemoteInfo, sendFn: SendFunction): void {
    if (!pool || !modeConfig) return;
    const action = handleServerRequest(packet, rinfo, pool, modeConfig, now());
    const base = { mac: action.mac, xid: action.xid };
    if (action.kind === 'ignore') {
      counters.ignored += 1;
      if (action.exhausted === true) counters.exhausted += 1;
      const msg = action.exhausted === true ? 'dhcp pool exhausted: no offer' : action.level === 'warn' ? 'dhcp request not answered' : 'ignored dhcp request';
      log[action.level]({ ...base, from: `${rinfo.address}:${rinfo.port}`, reason: action.reason }, msg);
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
      if (action.persist) void persist(base);
      return;
    }
    const fields = {
      ...base,
      ip: action.ip,
      ...(action.hostname !== undefined ? { hostname: action.hostname } : {}),
      ...(action.boot ? { arch: action.boot.firmware, client: action.boot.client, file: action.boot.file } : {}),
      ...(action.reason !== undefined ? { reason: action.reason } : {}),
      to: `${action.to.address}:${action.to.port}`,
    };
    const bytes = encodePacket(action.packet);
    const go = async (): Promise<void> => {
      // RFC 2131 section 4.3.2 wants the binding on stable storage before the ACK goes out.
      if (action.persist) await persist(base);
      if (!(await send(bytes, action.to, sendFn, base))) return;
      if (action.type === 'offer') counters.offers += 1;
      else if (action.type === 'ack') counters.acks += 1;
      else if (action.type === 'nak') counters.naks += 1;
      else counters.informs += 1;
    };
    log.info(fields, `dhcp ${action.type}`);
    if (action.type !== 'inform') {
      options.events?.record({
        type: action.type === 'offer' ? 'dhcp-offer' : action.type === 'ack' ? 'dhcp-ack' : 'dhcp-nak',
        mac: action.mac,
        ...(action.ip !== undefined ? { ip: action.ip } : {}),
        detail: { ...(action.boot ? { arch: action.boot.firmware, file: action.boot.file } : {}), ...(action.reason !== undefined ? { reason: action.reason } : {}), server: 'dhcp' },
      });
    }
    void go();
  }

  function handleProxy(packet: DhcpPacket, rinfo: dgram.RemoteInfo, port: number, sendFn: SendFunction): void {
    // Port 4011: exactly the ProxyDHCP's boot server answer (pxe.ts), for firmware that asks there.
    const mac = clientMac(packet);
    const decision = classify(packet, { port: 'proxy', serverAddress: options.address });
    if (decision.kind === 'ignore') {
      counters.ignored += 1;
      log[decision.pxe ? 'warn' : 'debug']({ mac, xid: packet.xid, port, reason: decision.reason }, 'ignored request');
      return;
    }
    const reply = buildProxyReply(packet, decision, bootConfig);
    const to = replyDestination(packet, 'proxy', rinfo, {
      ...(options.clientPort !== undefined ? { clientPort: options.clientPort } : {}),
      ...(options.relayPort !== undefined ? { relayPort: options.relayPort } : {}),
      ...(options.broadcastAddress !== undefined ? { broadcastAddress: options.broadcastAddress } : {}),
    });
    log.info({ mac, xid: packet.xid, arch: decision.firmware, client: decision.client, file: reply.file, port, to: `${to.address}:${to.port}` }, `proxydhcp ${reply.type}`);
    options.events?.record({ type: 'dhcp-ack', mac, ...(packet.ciaddr !== '0.0.0.0' ? { ip: packet.ciaddr } : {}), detail: { arch: decision.firmware, file: reply.file, port } });
    void send(encodePacket(reply.packet), to, sendFn, { mac, xid: packet.xid }).then((ok) => {
      if (ok) counters.proxyAnswered += 1;
    });
  }

  function handle(role: PortRole, port: number, msg: Buffer, rinfo: dgram.RemoteInfo, sendFn: SendFunction): void {
    counters.received += 1;
    let packet: DhcpPacket;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      counters.malformed += 1;
      const code = err instanceof ApplianceError ? err.code : 'ERR_DHCP_DECODE';
      log.debug({ from: `${rinfo.address}:${rinfo.port}`, port, length: msg.length, code, reason: (err as Error).message }, 'dropped malformed datagram');
      return;
    }
    if (role === 'dhcp') {
      handleDhcp(packet, rinfo, sendFn);
      return;
    }
    const refusal = localSubnet ? admissionRefusal(packet, rinfo.address, localSubnet, true) : undefined;
    if (refusal) {
      counters.ignored += 1;
      log.debug({ mac: clientMac(packet), xid: packet.xid, port, reason: refusal }, 'ignored request from another network');
      return;
    }
    handleProxy(packet, rinfo, port, sendFn);
  }

  function onError(err: unknown, _role: PortRole, port: number): void {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined) log.warn({ code, port }, 'dhcp socket error');
    else {
      counters.malformed += 1;
      log.error({ err, port }, 'dhcp handler failed');
    }
  }

  /** Router, DNS and domain are checked once here, so no reply can fail to encode later. */
  function checkNetworkOptions(where: string, n: { router?: string; dns?: string[]; domain?: string }): void {
    for (const [name, value] of [['router', n.router], ...(n.dns ?? []).map((d) => ['dns', d])] as Array<[string, string | undefined]>) {
      if (value !== undefined && ipToNumber(value) === undefined) throw configError(`${where} ${name} ${JSON.stringify(value)} is not an ipv4 address`, { [name]: value });
    }
    if (n.domain !== undefined && !/^[A-Za-z0-9.-]{1,253}$/.test(n.domain)) throw configError(`${where} domain ${JSON.stringify(n.domain)} is not a domain name`, { domain: n.domain });
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
    async start() {
      if (state !== 'new') throw bindError(`dhcp server cannot start: it is ${state}`);
      state = 'starting';
      try {
        // Short leases are allowed (tests watch renewals at T1 = lease/2); dnsmasq's floor is 120 s.
        if (!Number.isInteger(leaseTime) || leaseTime < 10 || leaseTime > 0xfffffffe) {
          throw configError(`lease time ${leaseTime} s is out of range; use 10 s or more (3600 is usual)`, { leaseTime });
        }
        const served = resolveServedNetwork(options.address, options.interface, options.subnet, true);
        if (!served.subnet) throw configError(`cannot tell the subnet of ${options.address}; pass --subnet`);
        localSubnet = served.subnet;
        const { networks, ranges } = buildNetworks(served.subnet);

        const leasePool = new LeasePool({ ranges, exclude: [options.address], reservations: options.reservations, declineMs: options.declineMs, offerHoldMs: options.offerHoldMs });
        // The lease file first: a broken one fails start() at once, before a 5 s probe.
        leasePool.load(await loadLeaseFile(options.leaseFile));
        leasePool.pruneDeclined(now());
        // Two servers on one segment hand out conflicting leases: refuse unless forced.
        const probe = options.probe ?? (() => probeForDhcpServer({ address: options.address, interface: options.interface, timeoutMs: options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS, log: options.log }));
        const found = await probe();
        if (found.found) {
          const ids = found.servers.map((s) => s.serverId).join(', ');
          if (options.force !== true) {
            throw new ApplianceError(ERR_DHCP_OTHER_SERVER, `another dhcp server (${ids}) answers on ${served.interface ?? options.address}; run --dhcp-mode proxy beside it, stop it, or pass --force`, { servers: found.servers });
          }
          log.warn({ servers: ids }, 'another dhcp server answers on this segment; starting anyway (--force)');
        }

        pool = leasePool;
        writer = createLeaseFileWriter(options.leaseFile, () => leasePool.snapshot());
        modeConfig = {
          serverAddress: options.address,
          networks,
          leaseTime,
          boot: bootConfig,
          clientPort: options.clientPort,
          relayPort: options.relayPort,
          broadcastAddress: options.broadcastAddress,
        };
        const opened = await openListenerSockets(options, handle, onError, () => (state as string) === 'starting');
        sockets = opened.sockets;
        state = 'running';
        const { dhcpPort, proxyPort } = opened;
        const usage = leasePool.usage(now());
        log.info(
          { mode: 'server', address: options.address, interface: served.interface, subnet: served.subnet.cidr, range: `${options.range.start}-${options.range.end}`, leaseTime, leases: usage.bound, dhcpPort, proxyPort },
          'dhcp server listening',
        );
        return { dhcpPort, proxyPort };
      } catch (err) {
        state = 'stopped';
        throw err;
      }
    },
    async stop() {
      state = 'stopped';
      const open = sockets;
      sockets = undefined;
      await open?.close();
      await writer?.idle();
    },
    stats() {
      return { ...counters, leases: pool ? pool.usage(now()) : { size: 0, bound: 0, offered: 0, declined: 0, reserved: 0 } };
    },
    leases() {
      return pool ? pool.snapshot() : { leases: [], declined: [] };
    },
  };
}
