/**
 * The ProxyDHCP policy: answer PXE clients with boot data only (no address), beside another
 * DHCP server, on 67 (DISCOVER -> OFFER) and 4011 (REQUEST -> ACK). Decisions are pxe.ts
 * (pure); sockets, decoding and admission are the listener's (listener.ts).
 */
import type { EventLog } from '../events.js';
import type { Logger } from '../log.js';
import { createDhcpListener, listenerOptionsOf, type DhcpPolicy, type ListenerOptions } from './listener.js';
import { encodePacket } from './packet.js';
import { snoopRequest } from './request-snoop.js';
import { createPhaseLog } from './phase-log.js';
import {
  bootRefusal,
  buildProxyReply,
  classify,
  replyDestination,
  type BootConfig,
  type BootFileChoice,
  type BootFileChooser,
  type ClassifyContext,
  type BootFiles,
  type DestinationOptions,
  type On67Style,
} from './pxe.js';
import { bindError, resolveServedNetwork } from './sockets.js';

/** What both policies need to answer a boot: our address, the HTTP port, boot files, reply seams. */
export interface BootAnswerOptions {
  /** Our advertised IPv4 address (option 54, siaddr, boot URLs). */
  address: string;
  /** HTTP port for boot.ipxe and HTTP boot URLs. */
  httpPort: number;
  /** iPXE binary per firmware (default: the boot-file catalogue's). */
  bootFiles?: Partial<BootFiles>;
  /** URL for UEFI HTTP boot; default `http://ADDRESS:HTTP_PORT/boot/<file>`. */
  httpBootUrl?: (file: string) => string;
  /** URL for iPXE clients; default `http://ADDRESS:HTTP_PORT/boot.ipxe`. */
  ipxeScriptUrl?: string;
  /** How firmware PXE is answered on 67 (defaults differ: see each policy). */
  pxeOn67?: { bios?: On67Style; uefi?: On67Style };
  /** Per-client boot file (grub, shim for Secure Boot; src/boot/loader.ts). */
  chooseBootFile?: BootFileChooser;
  /** Client port (68); a seam for loopback tests. */
  clientPort?: number;
  /** Relay agents' port (67); a seam for loopback tests. */
  relayPort?: number;
  /** Limited broadcast address (255.255.255.255); a seam for loopback tests. */
  broadcastAddress?: string;
  events?: EventLog;
}

/** Options of the proxy policy: default PXE answers on 67 are BIOS 'boot-file', UEFI 'defer'. */
export interface ProxyPolicyOptions extends BootAnswerOptions {
  /** ACK DHCPREQUESTs on 67 as smee does (default false, as dnsmasq/Pixiecore). */
  answerRequestOn67?: boolean;
}

/** The proxy policy with its counter. */
export interface ProxyPolicy extends DhcpPolicy {
  /** Replies sent. */
  answered(): number;
}

/** The boot config of the decisions from policy options. */
export function bootConfigOf(options: BootAnswerOptions, pxeOn67 = options.pxeOn67): BootConfig {
  return {
    serverAddress: options.address,
    httpPort: options.httpPort,
    ...(options.bootFiles !== undefined ? { bootFiles: options.bootFiles } : {}),
    ...(options.httpBootUrl !== undefined ? { httpBootUrl: options.httpBootUrl } : {}),
    ...(options.ipxeScriptUrl !== undefined ? { ipxeScriptUrl: options.ipxeScriptUrl } : {}),
    ...(pxeOn67 !== undefined ? { pxeOn67 } : {}),
    ...(options.chooseBootFile !== undefined ? { chooseBootFile: options.chooseBootFile } : {}),
  };
}

/** The reply-destination seams of policy options. */
export function destinationOptionsOf(options: BootAnswerOptions): DestinationOptions {
  return {
    ...(options.clientPort !== undefined ? { clientPort: options.clientPort } : {}),
    ...(options.relayPort !== undefined ? { relayPort: options.relayPort } : {}),
    ...(options.broadcastAddress !== undefined ? { broadcastAddress: options.broadcastAddress } : {}),
  };
}

/** Create the ProxyDHCP policy. */
export function createProxyPolicy(options: ProxyPolicyOptions): ProxyPolicy {
  // The boot file is chosen once per request: bootRefusal and buildProxyReply both ask for it
  // (the choice reads the machine records), so the choice for the last request is kept.
  const chooseBootFile = options.chooseBootFile;
  let lastRequest: object | undefined;
  let lastChoice: BootFileChoice | undefined;
  const bootConfig: BootConfig = {
    ...bootConfigOf(options),
    ...(chooseBootFile !== undefined
      ? {
          chooseBootFile: (boot: Parameters<BootFileChooser>[0]): BootFileChoice => {
            if (boot.request !== lastRequest || lastChoice === undefined) {
              lastChoice = chooseBootFile(boot);
              lastRequest = boot.request;
            }
            return lastChoice;
          },
        }
      : {}),
  };
  const destinations = destinationOptionsOf(options);
  // The classify context per port, made once.
  const classifyContext = (port: 'dhcp' | 'proxy'): ClassifyContext => ({
    port,
    serverAddress: options.address,
    ...(options.answerRequestOn67 !== undefined ? { answerRequestOn67: options.answerRequestOn67 } : {}),
  });
  const contexts = { dhcp: classifyContext('dhcp'), proxy: classifyContext('proxy') };
  // Per-packet lines at debug; the first answer of a kind per machine and minute at info.
  const phases = createPhaseLog();
  let answered = 0;
  return {
    name: 'proxy',
    answered: () => answered,
    handle(request, context) {
      const { packet, role, port } = request;
      lastRequest = undefined;
      const decision = classify(packet, contexts[role], request.typed);
      if (decision.kind === 'ignore') {
        // A PXE client taking its address from the other server: which address is whose.
        const taken = role === 'dhcp' ? snoopRequest(packet, options.address) : undefined;
        if (taken) options.events?.record({ type: 'dhcp-request', mac: taken.mac, ip: taken.ip, detail: { server: taken.server } });
        context.ignore(request, decision.reason, decision.pxe ? 'warn' : 'debug');
        return;
      }
      const refused = bootRefusal(decision, bootConfig);
      if (refused !== undefined) {
        // Not answered (e.g. Secure Boot over HTTP boot): the firmware moves on to PXE.
        context.ignore(request, refused, 'warn');
        options.events?.record({
          type: 'boot-diagnosis',
          mac: request.mac,
          detail: { problem: 'not-answered', arch: decision.firmware, client: decision.client, reason: refused },
        });
        return;
      }
      const reply = buildProxyReply(packet, decision, bootConfig);
      const to = replyDestination(packet, role, request.from, destinations);
      // The reply leaves first; its log line and events follow once this turn's replies are out.
      void context.send(request, encodePacket(reply.packet), to).then((ok) => {
        if (ok) answered += 1;
      });
      context.after(() => {
        const relay = packet.giaddr !== '0.0.0.0' ? packet.giaddr : undefined;
        // Most replies are repeats logged at debug: the line is built only when that level logs.
        const level = phases.level(request.mac, `${reply.type}:${port}:${reply.file ?? ''}`);
        if (context.log.isLevelEnabled(level)) {
          const fields = {
            mac: request.mac,
            xid: packet.xid,
            arch: decision.firmware,
            archCode: decision.archCode,
            client: decision.client,
            file: reply.file,
            port,
            to: `${to.address}:${to.port}`,
            ...(relay !== undefined ? { relay } : {}),
          };
          context.log[level](
            fields,
            reply.deferred ? `proxydhcp ${reply.type} without boot file: client continues on the pxe port` : `proxydhcp ${reply.type}`,
          );
        }
        options.events?.record({
          type: reply.type === 'offer' ? 'dhcp-offer' : 'dhcp-ack',
          mac: request.mac,
          ...(packet.ciaddr !== '0.0.0.0' ? { ip: packet.ciaddr } : {}),
          detail: { arch: decision.firmware, client: decision.client, file: reply.file, port, ...(relay !== undefined ? { relay } : {}) },
        });
      });
    },
  };
}

/** Options of `createProxyDhcpServer`: the listener's and the policy's. */
export interface ProxyDhcpServerOptions extends ProxyPolicyOptions, Omit<ListenerOptions, 'subnet' | 'log'> {
  /** Interface that owns `address`; when given, start() checks it does. */
  interface?: string;
  /** Subnet served, CIDR; default the prefix of `address` on its interface. */
  subnet?: string;
  log: Logger;
}

/** Counters, for tests and metrics. */
export interface ProxyDhcpStats {
  received: number;
  malformed: number;
  ignored: number;
  answered: number;
  sendErrors: number;
}

/** A ProxyDHCP on its own (listener + proxy policy), for tests and src/dhcp/run.ts. The constructor binds nothing. */
export interface ProxyDhcpServer {
  start(): Promise<{ dhcpPort: number; proxyPort: number }>;
  stop(): Promise<void>;
  stats(): ProxyDhcpStats;
}

/** Create a ProxyDHCP: one listener with the proxy policy. */
export function createProxyDhcpServer(options: ProxyDhcpServerOptions): ProxyDhcpServer {
  const policy = createProxyPolicy(options);
  let listener: ReturnType<typeof createDhcpListener> | undefined;
  let stopped = false;
  return {
    async start() {
      if (stopped) throw bindError('proxydhcp cannot start: it is stopped');
      if (listener) throw bindError('proxydhcp cannot start: it is running');
      const network = resolveServedNetwork(options.address, options.interface, options.subnet, options.fds === undefined);
      listener = createDhcpListener(listenerOptionsOf(options, network.subnet), policy);
      const ports = await listener.start();
      options.log.child({ subsystem: 'dhcp' }).info(
        {
          address: options.address,
          interface: network.interface,
          subnet: network.subnet?.cidr,
          dhcpPort: ports.dhcpPort,
          proxyPort: ports.proxyPort,
          strict: options.fds !== undefined,
          recvBuffer: ports.buffers.recv,
        },
        'proxydhcp listening',
      );
      return { dhcpPort: ports.dhcpPort, proxyPort: ports.proxyPort };
    },
    async stop() {
      stopped = true;
      await listener?.stop();
    },
    stats() {
      const l = listener?.stats() ?? { received: 0, malformed: 0, ignored: 0, sendErrors: 0 };
      return { ...l, answered: policy.answered() };
    },
  };
}
