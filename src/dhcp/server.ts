/**
 * ProxyDHCP sockets: receive on 67 and 4011, classify, reply, log, move on.
 *
 * Interface confinement (NETBOOT-FACTS section 3; measured in a two-interface netns, see
 * test/dhcp/netns.test.ts):
 *  - Node's dgram has no SO_BINDTODEVICE and no IP_PKTINFO, and a socket bound to a unicast or
 *    to the subnet broadcast address (10.99.0.255) does not receive 255.255.255.255: only a
 *    0.0.0.0 socket hears DISCOVERs, and it cannot tell which interface they came in on.
 *  - Sending 255.255.255.255 from that 0.0.0.0 socket leaves by the interface of the *default
 *    route* (measured: the reply went out of the unconfigured interface).
 *  - Sending 255.255.255.255 from a socket bound to the configured address leaves by the
 *    interface that owns the address (Linux `ip_route_output_key_hash_rcu`: for limited
 *    broadcast/multicast with a source address and no oif, the oif is the device of saddr).
 * So each port gets two sockets with SO_REUSEADDR: a 0.0.0.0 socket that hears broadcasts, and
 * a socket bound to `address` that hears unicasts to us and sends every reply. Unicast and
 * relayed requests are admitted only from the configured subnet (or a relay); a broadcast
 * DISCOVER from 0.0.0.0 cannot be placed, so it is answered through the configured interface,
 * where a client on another interface never sees it. No native addon, no helper process.
 * For strict per-interface reception, pass pre-opened descriptors (`fds`), e.g. from systemd
 * socket units with `BindToDevice=`; they are used as the only socket of their port.
 */
import dgram from 'node:dgram';
import os from 'node:os';
import { ApplianceError } from '../errors.js';
import type { EventLog } from '../events.js';
import type { Logger } from '../log.js';
import { clientMac, decodePacket, encodePacket, type DhcpPacket } from './packet.js';
import {
  buildProxyReply,
  classify,
  replyDestination,
  type BootConfig,
  type BootFiles,
  type On67Style,
  type PortRole,
} from './pxe.js';
import { admissionRefusal, parseCidr, subnetOf, type Subnet } from './subnet.js';

/** Options of `createProxyDhcpServer`. Ports may be 0 (tests); the bound ports are reported by `start()`. */
export interface ProxyDhcpServerOptions {
  /** Our advertised IPv4 address; must be assigned to an interface of this host. */
  address: string;
  /** Interface that owns `address`; when given, start() checks it does. */
  interface?: string;
  /** Bind address for receiving, default '0.0.0.0' (needed to hear 255.255.255.255). */
  host?: string;
  /** DHCP server port, 67 in production. */
  dhcpPort: number;
  /** PXE boot server port, 4011 in production. */
  proxyPort: number;
  /** HTTP port for boot.ipxe and HTTP boot URLs. */
  httpPort: number;
  /** iPXE binary per firmware (see DEFAULT_BOOT_FILES). */
  bootFiles?: Partial<BootFiles>;
  /** URL for UEFI HTTP boot; default `http://ADDRESS:HTTP_PORT/boot/<file>`. */
  httpBootUrl?: (file: string) => string;
  /** URL for iPXE clients; default `http://ADDRESS:HTTP_PORT/boot.ipxe`. */
  ipxeScriptUrl?: string;
  /** How firmware PXE is answered on 67 (default BIOS 'boot-file', UEFI 'defer'). */
  pxeOn67?: { bios?: On67Style; uefi?: On67Style };
  /** ACK DHCPREQUESTs on 67 as smee does (default false, as dnsmasq/Pixiecore). */
  answerRequestOn67?: boolean;
  /** Subnet served, CIDR; default the prefix of `address` on its interface. */
  subnet?: string;
  /** Answer requests relayed by a DHCP relay (giaddr set), default true. */
  allowRelayed?: boolean;
  /** Client port (68); a seam for loopback tests. */
  clientPort?: number;
  /** Relay agents' port (67); a seam for loopback tests. */
  relayPort?: number;
  /** Limited broadcast address (255.255.255.255); a seam for loopback tests. */
  broadcastAddress?: string;
  /** Pre-opened UDP descriptors (systemd socket activation with BindToDevice=). */
  fds?: { dhcp?: number; proxy?: number };
  log: Logger;
  events?: EventLog;
}

/** Counters, for tests and metrics. */
export interface ProxyDhcpStats {
  received: number;
  malformed: number;
  ignored: number;
  answered: number;
  sendErrors: number;
}

/** A ProxyDHCP server. The constructor binds nothing. */
export interface ProxyDhcpServer {
  /** Bind both ports; resolves with the bound ports, rejects (and closes what it opened) on any bind error. */
  start(): Promise<{ dhcpPort: number; proxyPort: number }>;
  /** Close all sockets; safe to call twice or before start. */
  stop(): Promise<void>;
  /** Current counters. */
  stats(): ProxyDhcpStats;
}

interface PortSockets {
  role: PortRole;
  /** Sockets that receive (one or two). */
  receivers: dgram.Socket[];
  /** Socket replies leave from (bound to `address`, or the only socket). */
  sender: dgram.Socket;
  port: number;
}

const WILDCARD = '0.0.0.0';

/** Find the interface and prefix that own `address`. */
function findAddress(address: string): { name: string; prefix: number } | undefined {
  for (const [name, list] of Object.entries(os.networkInterfaces())) {
    for (const entry of list ?? []) {
      if (entry.family === 'IPv4' && entry.address === address) {
        const prefix = entry.cidr ? Number(entry.cidr.split('/')[1]) : 32;
        return { name, prefix };
      }
    }
  }
  return undefined;
}

function bindError(message: string, detail?: Record<string, unknown>, cause?: unknown): ApplianceError {
  return new ApplianceError('ERR_DHCP_BIND', message, detail, cause === undefined ? undefined : { cause });
}

function bindSocket(port: number, host: string | undefined, fd: number | undefined): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    const onError = (err: Error): void => {
      socket.close();
      reject(err);
    };
    socket.once('error', onError);
    const onListening = (): void => {
      socket.off('error', onError);
      socket.setBroadcast(true);
      resolve(socket);
    };
    try {
      if (fd !== undefined) socket.bind({ fd }, onListening);
      else socket.bind({ port, ...(host !== undefined ? { address: host } : {}) }, onListening);
    } catch (err) {
      onError(err as Error);
    }
  });
}

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

/** Create a ProxyDHCP server (see module comment for the socket layout). Binds nothing until `start()`. */
export function createProxyDhcpServer(options: ProxyDhcpServerOptions): ProxyDhcpServer {
  const log = options.log.child({ subsystem: 'dhcp' });
  const host = options.host ?? WILDCARD;
  const allowRelayed = options.allowRelayed ?? true;
  const bootConfig: BootConfig = {
    serverAddress: options.address,
    httpPort: options.httpPort,
    ...(options.bootFiles !== undefined ? { bootFiles: options.bootFiles } : {}),
    ...(options.httpBootUrl !== undefined ? { httpBootUrl: options.httpBootUrl } : {}),
    ...(options.ipxeScriptUrl !== undefined ? { ipxeScriptUrl: options.ipxeScriptUrl } : {}),
    ...(options.pxeOn67 !== undefined ? { pxeOn67: options.pxeOn67 } : {}),
  };
  const counters: ProxyDhcpStats = { received: 0, malformed: 0, ignored: 0, answered: 0, sendErrors: 0 };
  let ports: PortSockets[] = [];
  let subnet: Subnet | undefined;
  let state: 'new' | 'starting' | 'running' | 'stopped' = 'new';

  function handle(group: PortSockets, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    counters.received += 1;
    const from = `${rinfo.address}:${rinfo.port}`;
    let packet: DhcpPacket;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      counters.malformed += 1;
      // Noise (debug) unless it claims to be PXE, then it is broken PXE traffic (warn).
      const claimsPxe = msg.includes('PXEClient') || msg.includes('HTTPClient');
      const code = err instanceof ApplianceError ? err.code : 'ERR_DHCP_DECODE';
      log[claimsPxe ? 'warn' : 'debug']({ from, port: group.port, length: msg.length, code, reason: (err as Error).message }, 'dropped malformed datagram');
      return;
    }
    const mac = clientMac(packet);
    const refusal = subnet ? admissionRefusal(packet, rinfo.address, subnet, allowRelayed) : undefined;
    if (refusal) {
      counters.ignored += 1;
      log.debug({ from, port: group.port, mac, xid: packet.xid, reason: refusal }, 'ignored request from another network');
      return;
    }
    const decision = classify(packet, {
      port: group.role,
      serverAddress: options.address,
      ...(options.answerRequestOn67 !== undefined ? { answerRequestOn67: options.answerRequestOn67 } : {}),
    });
    if (decision.kind === 'ignore') {
      counters.ignored += 1;
      log[decision.pxe ? 'warn' : 'debug']({ from, port: group.port, mac, xid: packet.xid, reason: decision.reason }, 'ignored request');
      return;
    }
    const reply = buildProxyReply(packet, decision, bootConfig);
    const bytes = encodePacket(reply.packet);
    const to = replyDestination(packet, group.role, rinfo, {
      ...(options.clientPort !== undefined ? { clientPort: options.clientPort } : {}),
      ...(options.relayPort !== undefined ? { relayPort: options.relayPort } : {}),
      ...(options.broadcastAddress !== undefined ? { broadcastAddress: options.broadcastAddress } : {}),
    });
    const fields = {
      mac,
      xid: packet.xid,
      arch: decision.firmware,
      archCode: decision.archCode,
      client: decision.client,
      file: reply.file,
      port: group.port,
      to: `${to.address}:${to.port}`,
    };
    log.info(fields, reply.deferred ? `proxydhcp ${reply.type} without boot file: client continues on the pxe port` : `proxydhcp ${reply.type}`);
    options.events?.record({
      type: reply.type === 'offer' ? 'dhcp-offer' : 'dhcp-ack',
      mac,
      ...(packet.ciaddr !== '0.0.0.0' ? { ip: packet.ciaddr } : {}),
      detail: { arch: decision.firmware, file: reply.file, port: group.port },
    });
    group.sender.send(bytes, to.port, to.address, (err) => {
      if (err) {
        counters.sendErrors += 1;
        log.warn({ mac, xid: packet.xid, to: fields.to, code: (err as NodeJS.ErrnoException).code }, 'proxydhcp send failed');
      } else {
        counters.answered += 1;
      }
    });
  }

  function attach(group: PortSockets): void {
    for (const socket of group.receivers) {
      socket.on('message', (msg, rinfo) => {
        try {
          handle(group, msg, rinfo);
        } catch (err) {
          // Defence in depth: no datagram may take the process down.
          counters.malformed += 1;
          log.error({ err, from: `${rinfo.address}:${rinfo.port}`, port: group.port }, 'dhcp handler failed');
        }
      });
      // After listening, socket errors (e.g. ICMP-induced) are logged, never thrown.
      socket.on('error', (err) => log.warn({ code: (err as NodeJS.ErrnoException).code, port: group.port }, 'dhcp socket error'));
    }
  }

  async function openPort(role: PortRole, port: number, fd: number | undefined): Promise<PortSockets> {
    const opened: dgram.Socket[] = [];
    try {
      if (fd !== undefined) {
        const socket = await bindSocket(0, undefined, fd);
        opened.push(socket);
        return { role, receivers: [socket], sender: socket, port: socket.address().port };
      }
      const first = await bindSocket(port, host, undefined);
      opened.push(first);
      const actual = first.address().port;
      if (host !== WILDCARD || options.address === host) {
        return { role, receivers: [first], sender: first, port: actual };
      }
      // Second socket on the same port, bound to our address: replies leave by its interface.
      const sender = await bindSocket(actual, options.address, undefined);
      opened.push(sender);
      return { role, receivers: [first, sender], sender, port: actual };
    } catch (err) {
      await Promise.all(opened.map(closeSocket));
      const code = (err as NodeJS.ErrnoException).code;
      const hint = code === 'EACCES' ? '; ports below 1024 need root or cap_net_bind_service' : code === 'EADDRINUSE' ? '; another dhcp server is bound there' : '';
      throw bindError(`cannot bind dhcp ${role === 'dhcp' ? 'server' : 'proxy (pxe boot server)'} port ${port} on ${host}: ${code ?? (err as Error).message}${hint}`, { port, host, code }, err);
    }
  }

  return {
    async start() {
      if (state !== 'new') throw bindError(`dhcp server cannot start: it is ${state}`);
      state = 'starting';
      try {
        const found = findAddress(options.address);
        if (!found && options.fds === undefined) {
          throw bindError(`address ${options.address} is not assigned to any interface of this host; pass this host's address on the boot network`, { address: options.address });
        }
        if (found && options.interface !== undefined && found.name !== options.interface) {
          throw bindError(`address ${options.address} is on interface ${found.name}, not ${options.interface}`, { address: options.address, interface: options.interface });
        }
        if (options.subnet !== undefined) {
          subnet = parseCidr(options.subnet);
          if (!subnet) throw bindError(`subnet ${JSON.stringify(options.subnet)} is not a cidr like 10.99.0.0/24`);
        } else if (found) {
          subnet = subnetOf(options.address, found.prefix);
        }
        const dhcp = await openPort('dhcp', options.dhcpPort, options.fds?.dhcp);
        ports.push(dhcp);
        // stop() may run while we await a bind: then give back what we opened.
        if ((state as string) !== 'starting') throw bindError('dhcp server was stopped while starting');
        const proxy = await openPort('proxy', options.proxyPort, options.fds?.proxy);
        ports.push(proxy);
        if ((state as string) !== 'starting') throw bindError('dhcp server was stopped while starting');
        for (const group of ports) attach(group);
        state = 'running';
        log.info({ address: options.address, interface: found?.name, subnet: subnet?.cidr, dhcpPort: dhcp.port, proxyPort: proxy.port }, 'proxydhcp listening');
        return { dhcpPort: dhcp.port, proxyPort: proxy.port };
      } catch (err) {
        await Promise.all(ports.flatMap((g) => g.receivers.map(closeSocket)));
        ports = [];
        state = 'stopped';
        throw err;
      }
    },
    async stop() {
      if (state === 'stopped' || state === 'new' || state === 'starting') {
        // A start() in progress sees this and closes its own sockets.
        state = 'stopped';
        return;
      }
      state = 'stopped';
      const all = ports.flatMap((g) => g.receivers);
      ports = [];
      await Promise.all(all.map(closeSocket));
    },
    stats() {
      return { ...counters };
    },
  };
}
