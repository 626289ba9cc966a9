/**
 * The DHCP service: the one place that starts DHCP `off`, `proxy`, `server` or `auto`, and owns
 * the probe. The appliance (src/appliance.ts) and the standalone runner (src/dhcp/run.ts) both
 * start DHCP through here.
 *
 * Start, in order:
 *  1. refuse to share ports 67/4011 with another process's sockets (port-holders.ts);
 *  2. probe the segment with a PXE DISCOVER (probe.ts), when the DHCP port is 67 (a listener on
 *     a test port answers no real client, and must not send on the real network);
 *  3. refuse to be a second PXE responder on the segment (another appliance, dnsmasq in proxy
 *     mode), and in server mode to be a second DHCP server; `force` turns both into warnings;
 *  4. `auto`: `server` only when the probe ran, nobody answered and the interface does not carry
 *     the default route (probe.ts `decideAutoMode`), else `proxy`, with one log line saying why;
 *  5. open the one listener (listener.ts) with the chosen policy.
 * While serving addresses the probe keeps running every `probeIntervalMs`: when another DHCP
 * server answers, the service logs an error, records a `dhcp-mode` event and swaps the listener
 * to the proxy policy (PXE still answered, no addresses) until two probes in a row find nobody.
 */
import { ApplianceError } from '../errors.js';
import type { EventLog } from '../events.js';
import type { Logger } from '../log.js';
import { defaultRouteInterfaces } from './default-route.js';
import { createDhcpListener, listenerOptionsOf, type DhcpListener, type DhcpPolicy, type ListenerOptions } from './listener.js';
import { findPortHolders, type PortHolder } from './port-holders.js';
import { DEFAULT_PROBE_TIMEOUT_MS, decideAutoMode, describeAnswers, probeForDhcpServer, type ProbeAnswer, type ProbeResult } from './probe.js';
import { createProxyPolicy, type ProxyPolicyOptions } from './proxy-policy.js';
import { createServerPolicy, ERR_DHCP_CONFIG, relayedSubnetsOf, type ServerPolicy, type ServerPolicyOptions } from './server-policy.js';
import { resolveServedNetwork } from './sockets.js';

/** Error code: another DHCP server answers on the segment and `force` is off. */
export const ERR_DHCP_OTHER_SERVER = 'ERR_DHCP_OTHER_SERVER';
/** Error code: another PXE responder (ProxyDHCP, PXE-serving DHCP server) answers on the segment. */
export const ERR_DHCP_OTHER_RESPONDER = 'ERR_DHCP_OTHER_RESPONDER';
/** Error code: another process holds a socket on our DHCP ports. */
export const ERR_DHCP_PORT_SHARED = 'ERR_DHCP_PORT_SHARED';

/** Default seconds between probes while serving addresses. */
export const DEFAULT_PROBE_INTERVAL_S = 60;

/** The DHCP modes. */
export type DhcpServiceMode = 'off' | 'proxy' | 'server' | 'auto';

/** Options of the DHCP service: the listener's, both policies', and the probe's. */
export interface DhcpServiceOptions
  extends ProxyPolicyOptions, Omit<ListenerOptions, 'subnet' | 'log'>, Partial<Omit<ServerPolicyOptions, keyof ProxyPolicyOptions>> {
  mode: DhcpServiceMode;
  /** Interface that owns `address`; checked at start. */
  interface?: string;
  /** Subnet served, CIDR; default the prefix of `address` on its interface. */
  subnet?: string;
  /** Start beside another DHCP server, PXE responder or port holder (warnings instead of refusals). */
  force?: boolean;
  /** Probe listen time, default 5000 ms. */
  probeTimeoutMs?: number;
  /** Time between probes while serving addresses, default 60 s; 0 turns the re-probe off. */
  probeIntervalMs?: number;
  /** Probe at start; default: when `dhcpPort` is 67. */
  probeAtStart?: boolean;
  /** Look for other processes on our ports; default: when `dhcpPort` is 67. */
  checkPorts?: boolean;
  /** Replaces the probe (tests). */
  probe?: (options: { timeoutMs: number; onXid: (xid: number) => void }) => Promise<ProbeResult>;
  /** Replaces the default-route lookup (tests). */
  defaultRouteInterfaces?: () => string[];
  /** Replaces the port-holder lookup (tests). */
  portHolders?: () => Promise<PortHolder[]>;
  log: Logger;
  events?: EventLog;
}

/** What the service is doing. */
export interface DhcpServiceState {
  /** Mode configured. */
  configured: DhcpServiceMode;
  /** What runs: `off`, `proxy` or `server`. */
  mode: 'off' | 'proxy' | 'server';
  /** Why it runs as it does (the auto decision, the configured mode, or why it stepped down). */
  reason: string;
  /** Serving addresses is suspended because another DHCP server answers (server mode only). */
  steppedDown: boolean;
  /** Servers the last probe saw. */
  lastProbe?: { at: string; servers: string[] };
}

/** The DHCP service. The constructor binds nothing. */
export interface DhcpService {
  /** Check, probe, choose, bind; rejects (having closed what it opened) on any failure. */
  start(): Promise<{ mode: 'off' | 'proxy' | 'server'; dhcpPort: number; proxyPort: number }>;
  stop(): Promise<void>;
  state(): DhcpServiceState;
  /** Run one re-probe now (tests; the timer runs it every interval). */
  probeNow(): Promise<void>;
  /** The server policy when serving addresses (leases, stats). */
  server(): ServerPolicy | undefined;
  listener(): DhcpListener | undefined;
}

function names(list: ProbeAnswer[]): string {
  return list.map((s) => s.serverId).join(', ');
}

/** Create the DHCP service. */
export function createDhcpService(options: DhcpServiceOptions): DhcpService {
  const log = options.log.child({ subsystem: 'dhcp' });
  const probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const probeIntervalMs = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_S * 1000;
  const realPorts = options.dhcpPort === 67;
  const ownXids = new Set<number>();
  const state: DhcpServiceState = { configured: options.mode, mode: 'off', reason: 'not started', steppedDown: false };
  let listener: DhcpListener | undefined;
  let serverPolicy: ServerPolicy | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let quietProbes = 0;
  let probing: Promise<void> | undefined;

  const probe = (timeoutMs: number): Promise<ProbeResult> => {
    const onXid = (xid: number): void => {
      ownXids.add(xid);
      // Late answers to our own probe are ours too for a while; then forget the xid.
      setTimeout(() => ownXids.delete(xid), timeoutMs + 10_000).unref();
    };
    if (options.probe) return options.probe({ timeoutMs, onXid });
    return probeForDhcpServer({
      address: options.address,
      ...(options.interface !== undefined ? { interface: options.interface } : {}),
      timeoutMs,
      onXid,
      log: options.log,
    });
  };

  /** Our own probe's DISCOVERs reach our own listener: never answer them. */
  function guarded(policy: DhcpPolicy): DhcpPolicy {
    return {
      name: policy.name,
      handle(request, context) {
        if (ownXids.has(request.packet.xid)) return;
        policy.handle(request, context);
      },
    };
  }

  function refuse(code: string, message: string, detail: Record<string, unknown>): void {
    if (options.force === true) {
      log.warn(detail, `${message.replace(/; .*$/, '')}; starting anyway (--force)`);
      return;
    }
    throw new ApplianceError(code, message, detail);
  }

  async function checkPorts(where: string | undefined): Promise<void> {
    if (!(options.checkPorts ?? realPorts)) return;
    const ports = [options.dhcpPort, options.proxyPort].filter((p) => p !== 0);
    let holders: PortHolder[];
    if (options.portHolders) holders = await options.portHolders();
    else {
      const found = await findPortHolders(ports, options.address, where);
      if (!found.checked)
        log.warn({ ports }, 'cannot list udp sockets (ss from iproute2 is missing): not checking whether another process shares the dhcp ports');
      holders = found.holders;
    }
    if (holders.length === 0) return;
    const list = holders.map((h) => `${h.owner} on ${h.address}${h.device ? '%' + h.device : ''}:${h.port}`).join(', ');
    refuse(
      ERR_DHCP_PORT_SHARED,
      `another process already listens on the dhcp ports: ${list}; two responders on one segment race with different answers: stop it, or pass --force`,
      { holders },
    );
  }

  async function startupProbe(mode: DhcpServiceMode, where: string | undefined): Promise<ProbeResult | undefined> {
    if (!(options.probeAtStart ?? (realPorts || options.probe !== undefined))) return undefined;
    const result = await probe(probeTimeoutMs);
    const { addressServers, pxeResponders } = describeAnswers(result);
    const iface = where ?? options.address;
    if (pxeResponders.length > 0) {
      refuse(
        ERR_DHCP_OTHER_RESPONDER,
        `another pxe responder (${names(pxeResponders)}) already answers pxe clients on ${iface}; two would race with different boot answers: stop it, or pass --force`,
        { servers: pxeResponders },
      );
    }
    if (mode === 'server' && result.found) {
      const others = addressServers.length > 0 ? addressServers : result.servers;
      if (options.force === true) log.warn({ servers: names(others) }, 'another dhcp server answers on this segment; starting anyway (--force)');
      else
        throw new ApplianceError(
          ERR_DHCP_OTHER_SERVER,
          `another dhcp server (${names(others)}) answers on ${iface}; run --dhcp-mode proxy beside it, stop it, or pass --force`,
          { servers: others },
        );
    }
    return result;
  }

  function serverOptions(): ServerPolicyOptions {
    if (options.range === undefined || options.leaseFile === undefined)
      throw new ApplianceError(ERR_DHCP_CONFIG, 'server mode needs a dhcp range and a lease file');
    return { ...options, range: options.range, leaseFile: options.leaseFile };
  }

  /** One re-probe while serving addresses: step down when another server answers, resume after two quiet probes. */
  async function reprobe(): Promise<void> {
    if (!listener || !serverPolicy || stopped) return;
    let result: ProbeResult;
    try {
      result = await probe(Math.min(probeTimeoutMs, Math.max(500, Math.floor(probeIntervalMs * 0.8))));
    } catch (err) {
      log.warn({ code: (err as ApplianceError).code, err: (err as Error).message }, 'dhcp re-probe failed; keeping the current mode');
      return;
    }
    if (stopped || !listener || !serverPolicy) return;
    state.lastProbe = { at: new Date().toISOString(), servers: result.servers.map((s) => s.serverId) };
    const others = result.servers;
    if (others.length > 0) {
      quietProbes = 0;
      if (state.steppedDown) return;
      if (options.force === true) {
        log.warn({ servers: names(others) }, 'another dhcp server answers on this segment; serving addresses anyway (--force)');
        return;
      }
      state.steppedDown = true;
      state.reason = `stepped down: dhcp server ${names(others)} answers on this segment; answering pxe clients only until it is gone`;
      listener.setPolicy(guarded(serverPolicy.proxy));
      log.error(
        { servers: others.map((s) => s.serverId), mode: 'proxy' },
        `another dhcp server (${names(others)}) now answers on this segment: stopped handing out addresses, answering pxe clients as a proxy until it is gone`,
      );
      options.events?.record({ type: 'dhcp-mode', mac: '', detail: { mode: 'proxy', steppedDown: true, servers: others.map((s) => s.serverId) } });
      return;
    }
    if (!state.steppedDown) return;
    quietProbes += 1;
    if (quietProbes < 2) return;
    quietProbes = 0;
    state.steppedDown = false;
    state.reason = 'resumed: no other dhcp server answered two probes in a row';
    listener.setPolicy(guarded(serverPolicy));
    log.warn({ mode: 'server' }, 'no other dhcp server answered two probes in a row: handing out addresses again');
    options.events?.record({ type: 'dhcp-mode', mac: '', detail: { mode: 'server', steppedDown: false } });
  }

  function schedule(): void {
    if (probeIntervalMs <= 0 || stopped) return;
    timer = setTimeout(() => {
      probing = reprobe().finally(() => {
        probing = undefined;
        schedule();
      });
    }, probeIntervalMs);
    timer.unref();
  }

  return {
    async start() {
      if (options.mode === 'off') {
        log.info('dhcp off: boot information must come from another DHCP server');
        state.reason = 'configured: boot information must come from another DHCP server';
        return { mode: 'off', dhcpPort: 0, proxyPort: 0 };
      }
      if (listener) throw new ApplianceError('ERR_DHCP_BIND', 'dhcp service already started');
      const wantServer = options.mode === 'server';
      const served = resolveServedNetwork(options.address, options.interface, options.subnet, wantServer || options.fds === undefined);
      await checkPorts(served.interface);
      const probed = await startupProbe(options.mode, served.interface);
      let mode: 'proxy' | 'server' = wantServer ? 'server' : 'proxy';
      state.reason = 'configured with --dhcp-mode';
      if (options.mode === 'auto') {
        const routes = (options.defaultRouteInterfaces ?? defaultRouteInterfaces)();
        const decision = decideAutoMode({
          probe: probed,
          interface: served.interface,
          carriesDefaultRoute: served.interface !== undefined && routes.includes(served.interface),
        });
        log.info(
          { mode: decision.mode, servers: probed?.servers.map((x) => x.serverId) ?? [], interface: served.interface, defaultRoute: routes },
          `dhcp mode auto chose ${decision.mode}: ${decision.reason}`,
        );
        mode = decision.mode;
        state.reason = `auto: ${decision.reason}`;
      }
      if (stopped) throw new ApplianceError('ERR_DHCP_BIND', 'dhcp service was stopped while starting');
      let policy: DhcpPolicy;
      if (mode === 'server') {
        if (!served.subnet)
          throw new ApplianceError(
            ERR_DHCP_CONFIG,
            `cannot tell the subnet of ${options.address}: it is not an address of this host; pass --address with an address of this host (ip -4 addr) or --dhcp-mode proxy`,
          );
        serverPolicy = createServerPolicy(serverOptions());
        await serverPolicy.prepare(served.subnet);
        policy = serverPolicy;
      } else {
        policy = createProxyPolicy(options);
      }
      listener = createDhcpListener(
        { ...listenerOptionsOf(options, served.subnet), ...(mode === 'server' ? { relayedSubnets: relayedSubnetsOf(options) } : {}) },
        guarded(policy),
      );
      const ports = await listener.start();
      state.mode = mode;
      const common = {
        address: options.address,
        interface: served.interface,
        subnet: served.subnet?.cidr,
        dhcpPort: ports.dhcpPort,
        proxyPort: ports.proxyPort,
        strict: options.fds !== undefined,
        recvBuffer: ports.buffers.recv,
        sendBuffer: ports.buffers.send,
      };
      if (mode === 'server') {
        const usage = serverPolicy!.stats().leases;
        log.info(
          {
            mode: 'server',
            ...common,
            range: `${options.range!.start}-${options.range!.end}`,
            leaseTime: options.leaseTime,
            leases: usage.bound,
            probeIntervalS: probeIntervalMs / 1000,
          },
          'dhcp server listening',
        );
        if (probed !== undefined || options.probe !== undefined) schedule();
      } else {
        log.info({ mode: 'proxy', ...common }, 'proxydhcp listening');
      }
      return { mode, dhcpPort: ports.dhcpPort, proxyPort: ports.proxyPort };
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await probing?.catch(() => undefined);
      await listener?.stop();
      await serverPolicy?.close();
    },
    state() {
      return { ...state };
    },
    probeNow() {
      return reprobe();
    },
    server() {
      return serverPolicy;
    },
    listener() {
      return listener;
    },
  };
}
