/**
 * The one DHCP listener: sockets (sockets.ts), decode, admission (subnet.ts), counters,
 * rate-limited logging, send errors and lifecycle. What to answer is a policy's business
 * (proxy-policy.ts: ProxyDHCP; server-policy.ts: the lease server), the way smee fans one
 * receive loop out to handlers. A policy can be swapped while running: the DHCP service
 * (service.ts) steps a server down to the proxy policy when another DHCP server appears.
 */
import type dgram from 'node:dgram';
import { ApplianceError } from '../errors.js';
import { createAfterReply, type AfterReply } from './after-reply.js';
import type { Logger } from '../log.js';
import { createLogBudget } from '../log-budget.js';
import type { TypedOptions } from './options.js';
import { clientMac, decodeDatagram, type DhcpPacket } from './packet.js';
import type { PortRole } from './pxe.js';
import { bindError, openListenerSockets, type DhcpSockets, type HeardOn, type SendFunction, type SocketBuffers } from './sockets.js';
import { admissionRefusal, type Subnet } from './subnet.js';

/** Where the listener binds; ports may be 0 (tests) and the bound ones are reported by `start()`. */
export interface ListenerOptions {
  /** Our advertised IPv4 address; the sending sockets bind to it so replies leave by its interface. */
  address: string;
  /** Bind address for receiving, default '0.0.0.0' (needed to hear 255.255.255.255); a test seam. */
  host?: string;
  /** DHCP server port, 67 in production. */
  dhcpPort: number;
  /** PXE boot server port, 4011 in production. */
  proxyPort: number;
  /** Pre-opened UDP descriptors bound to the interface (scripts/bind-device, systemd BindToDevice=). */
  fds?: { dhcp?: number; proxy?: number };
  /** The subnet served: unicast and ciaddr from elsewhere are refused (subnet.ts). Undefined admits all. */
  subnet?: Subnet;
  /** Admit requests relayed by a DHCP relay (giaddr set), default true. */
  allowRelayed?: boolean;
  /** Networks behind relays (server mode): their clients' unicasts to 67 are admitted too. */
  relayedSubnets?: readonly Subnet[];
  /** Malformed-datagram lines logged per minute before the rest are only counted, default 10. */
  malformedLogPerMinute?: number;
  log: Logger;
}

/** The listener's own fields of a wider options object (policies' and service options extend ListenerOptions). */
export function listenerOptionsOf(options: Omit<ListenerOptions, 'subnet'>, subnet: Subnet | undefined): ListenerOptions {
  return {
    address: options.address,
    dhcpPort: options.dhcpPort,
    proxyPort: options.proxyPort,
    log: options.log,
    ...(options.host !== undefined ? { host: options.host } : {}),
    ...(options.fds !== undefined ? { fds: options.fds } : {}),
    ...(subnet !== undefined ? { subnet } : {}),
    ...(options.allowRelayed !== undefined ? { allowRelayed: options.allowRelayed } : {}),
    ...(options.relayedSubnets !== undefined ? { relayedSubnets: options.relayedSubnets } : {}),
    ...(options.malformedLogPerMinute !== undefined ? { malformedLogPerMinute: options.malformedLogPerMinute } : {}),
  };
}

/** One decoded, admitted request. */
export interface DhcpRequest {
  role: PortRole;
  /** Local port it arrived on. */
  port: number;
  packet: DhcpPacket;
  from: dgram.RemoteInfo;
  mac: string;
  /** The packet's typed options, read once when it was decoded. */
  typed?: TypedOptions;
}

/** What the listener offers a policy for each request. */
export interface PolicyContext {
  /** The listener's logger (subsystem dhcp). */
  log: Logger;
  /** Count and log a request not answered (debug for noise, warn for broken PXE traffic). */
  ignore(request: DhcpRequest, reason: string, level?: 'debug' | 'warn'): void;
  /** Send from the role's socket; resolves false (counted and logged) when the send failed. */
  send(request: DhcpRequest, bytes: Buffer, to: { address: string; port: number }): Promise<boolean>;
  /** Queue bookkeeping (log line, boot events) to run after this turn's replies are sent (after-reply.ts). */
  after: AfterReply;
}

/** Decides what to answer. `handle` must not throw (a throw is caught, counted and logged). */
export interface DhcpPolicy {
  /** 'proxy' or 'server', for logs. */
  readonly name: string;
  handle(request: DhcpRequest, context: PolicyContext): void;
}

/** Counters of the listener itself; policies keep their own. */
export interface ListenerStats {
  received: number;
  malformed: number;
  ignored: number;
  sendErrors: number;
}

/** The DHCP listener. The constructor binds nothing. */
export interface DhcpListener {
  /** Bind both ports; resolves with the bound ports and buffer sizes, rejects (and closes what it opened) on any bind error. */
  start(): Promise<{ dhcpPort: number; proxyPort: number; buffers: SocketBuffers }>;
  /** Close all sockets; safe to call twice or before start. */
  stop(): Promise<void>;
  stats(): ListenerStats;
  /** The policy answering now. */
  policy(): DhcpPolicy;
  /** Answer with another policy from the next datagram on. */
  setPolicy(policy: DhcpPolicy): void;
}

/** Create the DHCP listener with its first policy. Binds nothing until `start()`. */
export function createDhcpListener(options: ListenerOptions, initial: DhcpPolicy): DhcpListener {
  const log = options.log.child({ subsystem: 'dhcp' });
  const allowRelayed = options.allowRelayed ?? true;
  const malformedBudget = createLogBudget(options.malformedLogPerMinute ?? 10, 60_000);
  const counters: ListenerStats = { received: 0, malformed: 0, ignored: 0, sendErrors: 0 };
  let current = initial;
  let sockets: DhcpSockets | undefined;
  let state: 'new' | 'starting' | 'running' | 'stopped' = 'new';
  // One queue for every socket: a turn's replies all leave before its log lines and events.
  const after = createAfterReply((err) => log.error({ err }, 'dhcp bookkeeping after a reply failed'));

  // One context per sending function (a socket's), made once: not two closures per datagram.
  const contexts = new Map<SendFunction, PolicyContext>();
  function contextFor(send: SendFunction): PolicyContext {
    let context = contexts.get(send);
    if (context === undefined) {
      context = makeContext(send);
      contexts.set(send, context);
    }
    return context;
  }

  function makeContext(send: SendFunction): PolicyContext {
    return {
      log,
      after,
      ignore(request, reason, level = 'debug') {
        counters.ignored += 1;
        log[level](
          { mac: request.mac, xid: request.packet.xid, port: request.port, from: `${request.from.address}:${request.from.port}`, reason },
          'ignored request',
        );
      },
      send(request, bytes, to) {
        return send(bytes, to.address, to.port).then(
          () => true,
          (err: unknown) => {
            counters.sendErrors += 1;
            log.warn(
              { mac: request.mac, xid: request.packet.xid, to: `${to.address}:${to.port}`, code: (err as NodeJS.ErrnoException).code },
              'dhcp send failed',
            );
            return false;
          },
        );
      },
    };
  }

  function logMalformed(msg: Buffer, rinfo: dgram.RemoteInfo, port: number, err: unknown): void {
    // Noise (debug) unless it claims to be PXE: then it is broken PXE traffic (warn). Either way
    // at most a few lines a minute: a fuzzer must not fill the disk.
    const budget = malformedBudget.take();
    if (!budget.log) return;
    const claimsPxe = msg.includes('PXEClient') || msg.includes('HTTPClient');
    const code = err instanceof ApplianceError ? err.code : 'ERR_DHCP_DECODE';
    const fields = {
      from: `${rinfo.address}:${rinfo.port}`,
      port,
      length: msg.length,
      code,
      reason: (err as Error).message,
      ...(budget.suppressed > 0 ? { suppressed: budget.suppressed, malformedTotal: counters.malformed } : {}),
    };
    log[claimsPxe ? 'warn' : 'debug'](
      fields,
      budget.suppressed > 0
        ? `dropped malformed datagram (${budget.suppressed} more dropped without a log line in the last minute)`
        : 'dropped malformed datagram',
    );
  }

  function handle(role: PortRole, port: number, msg: Buffer, rinfo: dgram.RemoteInfo, send: SendFunction, heardOn: HeardOn): void {
    counters.received += 1;
    let packet: DhcpPacket;
    let typed: TypedOptions;
    try {
      // dgram gives every datagram its own buffer: the decoded packet may keep views into it.
      ({ packet, typed } = decodeDatagram(msg));
    } catch (err) {
      counters.malformed += 1;
      logMalformed(msg, rinfo, port, err);
      return;
    }
    const request: DhcpRequest = { role, port, packet, from: rinfo, mac: clientMac(packet), typed };
    const context = contextFor(send);
    // EDK2 behind a relay sends its 4011 request straight to siaddr from its far-subnet address
    // (measured with dnsmasq --dhcp-relay, docs/NETBOOT-FACTS.md section 7): a configured client
    // (ciaddr = source) sending to our address (heard on the address-bound socket, or on a
    // descriptor bound to our interface) is talking to us on purpose, whatever its network. The
    // same request to another address of this host stays refused.
    const directToBootServer =
      role === 'proxy' &&
      allowRelayed &&
      packet.giaddr === '0.0.0.0' &&
      packet.ciaddr !== '0.0.0.0' &&
      rinfo.address === packet.ciaddr &&
      heardOn !== 'wildcard';
    const refusal =
      options.subnet && !directToBootServer ? admissionRefusal(packet, rinfo.address, options.subnet, allowRelayed, options.relayedSubnets ?? []) : undefined;
    if (refusal) {
      context.ignore(request, refusal);
      return;
    }
    current.handle(request, context);
  }

  function onError(err: unknown, _role: PortRole, port: number): void {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined) {
      // e.g. ICMP-induced errors on a socket after listening
      log.warn({ code, port }, 'dhcp socket error');
    } else {
      counters.malformed += 1;
      log.error({ err, port }, 'dhcp handler failed');
    }
  }

  return {
    async start() {
      if (state !== 'new') throw bindError(`dhcp listener cannot start: it is ${state}`);
      state = 'starting';
      try {
        // stop() may run while we await the binds: then the sockets are given back.
        const opened = await openListenerSockets(options, handle, onError, () => (state as string) === 'starting');
        sockets = opened.sockets;
        state = 'running';
        return { dhcpPort: opened.dhcpPort, proxyPort: opened.proxyPort, buffers: opened.sockets.buffers };
      } catch (err) {
        state = 'stopped';
        throw err;
      }
    },
    async stop() {
      // A start() in progress sees 'stopped' and closes its own sockets.
      state = 'stopped';
      const open = sockets;
      sockets = undefined;
      await open?.close();
    },
    stats() {
      return { ...counters };
    },
    policy() {
      return current;
    },
    setPolicy(policy) {
      current = policy;
    },
  };
}
