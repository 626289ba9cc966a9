/**
 * ProxyDHCP server: receive on 67 and 4011, classify (pxe.ts), reply, log, move on.
 * Socket layout and the interface-confinement technique are in sockets.ts; the admission rule
 * (answer only the configured subnet or a relay) is in subnet.ts.
 */
import type dgram from 'node:dgram';
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
import { bindError, openListenerSockets, resolveServedNetwork, type DhcpSockets, type SendFunction } from './sockets.js';
import { admissionRefusal, type Subnet } from './subnet.js';

/**
 * What every DHCP listener of the appliance takes (ProxyDHCP here, the full server in
 * dhcp-server.ts). Ports may be 0 (tests); the bound ports are reported by `start()`.
 */
export interface DhcpListenerOptions {
  /** Our advertised IPv4 address (option 54, siaddr, boot URLs); must be on an interface of this host. */
  address: string;
  /** Interface that owns `address`; when given, start() checks it does. */
  interface?: string;
  /** Bind address for receiving, default '0.0.0.0' (needed to hear 255.255.255.255); a test seam. */
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
  /** How firmware PXE is answered on 67 (defaults differ: see each server). */
  pxeOn67?: { bios?: On67Style; uefi?: On67Style };
  /** Subnet served, CIDR; default the prefix of `address` on its interface. */
  subnet?: string;
  /** Client port (68); a seam for loopback tests. */
  clientPort?: number;
  /** Relay agents' port (67); a seam for loopback tests. */
  relayPort?: number;
  /** Limited broadcast address (255.255.255.255); a seam for loopback tests. */
  broadcastAddress?: string;
  /** Pre-opened UDP descriptors bound to the interface (scripts/bind-device, systemd BindToDevice=). */
  fds?: { dhcp?: number; proxy?: number };
  log: Logger;
  events?: EventLog;
}

/** Options of `createProxyDhcpServer`: default PXE answers on 67 are BIOS 'boot-file', UEFI 'defer'. */
export interface ProxyDhcpServerOptions extends DhcpListenerOptions {
  /** ACK DHCPREQUESTs on 67 as smee does (default false, as dnsmasq/Pixiecore). */
  answerRequestOn67?: boolean;
  /** Answer requests relayed by a DHCP relay (giaddr set), default true. */
  allowRelayed?: boolean;
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

/** Create a ProxyDHCP server (socket layout: sockets.ts). Binds nothing until `start()`. */
export function createProxyDhcpServer(options: ProxyDhcpServerOptions): ProxyDhcpServer {
  const log = options.log.child({ subsystem: 'dhcp' });
  const allowRelayed = options.allowRelayed ?? true;
  const bootConfig: BootConfig = {
    serverAddress: options.address,
    httpPort: options.httpPort,
    ...(options.bootFiles !== undefined ? { bootFiles: options.bootFiles } : {}),
    ...(options.httpBootUrl !== undefined ? { httpBootUrl: options.httpBootUrl } : {}),
    ...(options.ipxeScriptUrl !== undefined ? { ipxeScriptUrl: options.ipxeScriptUrl } : {}),
    ...(options.pxeOn67 !== undefined ? { pxeOn67: options.pxeOn67 } : {}),
  };
  const destinationOptions = {
    ...(options.clientPort !== undefined ? { clientPort: options.clientPort } : {}),
    ...(options.relayPort !== undefined ? { relayPort: options.relayPort } : {}),
    ...(options.broadcastAddress !== undefined ? { broadcastAddress: options.broadcastAddress } : {}),
  };
  const counters: ProxyDhcpStats = { received: 0, malformed: 0, ignored: 0, answered: 0, sendErrors: 0 };
  let sockets: DhcpSockets | undefined;
  let subnet: Subnet | undefined;
  let state: 'new' | 'starting' | 'running' | 'stopped' = 'new';

  function handle(role: PortRole, port: number, msg: Buffer, rinfo: dgram.RemoteInfo, send: SendFunction): void {
    counters.received += 1;
    const from = `${rinfo.address}:${rinfo.port}`;
    let packet: DhcpPacket;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      counters.malformed += 1;
      // Noise (debug) unless it claims to be PXE: then it is broken PXE traffic (warn).
      const claimsPxe = msg.includes('PXEClient') || msg.includes('HTTPClient');
      const code = err instanceof ApplianceError ? err.code : 'ERR_DHCP_DECODE';
      log[claimsPxe ? 'warn' : 'debug']({ from, port, length: msg.length, code, reason: (err as Error).message }, 'dropped malformed datagram');
      return;
    }
    const mac = clientMac(packet);
    const refusal = subnet ? admissionRefusal(packet, rinfo.address, subnet, allowRelayed) : undefined;
    if (refusal) {
      counters.ignored += 1;
      log.debug({ from, port, mac, xid: packet.xid, reason: refusal }, 'ignored request from another network');
      return;
    }
    const decision = classify(packet, {
      port: role,
      serverAddress: options.address,
      ...(options.answerRequestOn67 !== undefined ? { answerRequestOn67: options.answerRequestOn67 } : {}),
    });
    if (decision.kind === 'ignore') {
      counters.ignored += 1;
      log[decision.pxe ? 'warn' : 'debug']({ from, port, mac, xid: packet.xid, reason: decision.reason }, 'ignored request');
      return;
    }
    const reply = buildProxyReply(packet, decision, bootConfig);
    const bytes = encodePacket(reply.packet);
    const to = replyDestination(packet, role, rinfo, destinationOptions);
    const fields = {
      mac,
      xid: packet.xid,
      arch: decision.firmware,
      archCode: decision.archCode,
      client: decision.client,
      file: reply.file,
      port,
      to: `${to.address}:${to.port}`,
    };
    log.info(fields, reply.deferred ? `proxydhcp ${reply.type} without boot file: client continues on the pxe port` : `proxydhcp ${reply.type}`);
    options.events?.record({
      type: reply.type === 'offer' ? 'dhcp-offer' : 'dhcp-ack',
      mac,
      ...(packet.ciaddr !== '0.0.0.0' ? { ip: packet.ciaddr } : {}),
      detail: { arch: decision.firmware, file: reply.file, port },
    });
    send(bytes, to.address, to.port).then(
      () => {
        counters.answered += 1;
      },
      (err: unknown) => {
        counters.sendErrors += 1;
        log.warn({ mac, xid: packet.xid, to: fields.to, code: (err as NodeJS.ErrnoException).code }, 'proxydhcp send failed');
      },
    );
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
      if (state !== 'new') throw bindError(`dhcp server cannot start: it is ${state}`);
      state = 'starting';
      try {
        const fds = options.fds;
        const network = resolveServedNetwork(options.address, options.interface, options.subnet, fds === undefined);
        subnet = network.subnet;
        // stop() may run while we await the binds: then the sockets are given back.
        const opened = await openListenerSockets(options, handle, onError, () => (state as string) === 'starting');
        sockets = opened.sockets;
        state = 'running';
        const { dhcpPort, proxyPort } = opened;
        log.info({ address: options.address, interface: network.interface, subnet: subnet?.cidr, dhcpPort, proxyPort, strict: fds !== undefined }, 'proxydhcp listening');
        return { dhcpPort, proxyPort };
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
  };
}
