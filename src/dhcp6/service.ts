/**
 * The DHCPv6 service: `--dhcp6-mode proxy`, `server` or `auto` with the rules the IPv4 service
 * keeps (../dhcp/service.ts), so the appliance is never the reason a network breaks:
 *
 *  1. every mode probes the link at start (probe.ts) when the port is 547 (a test port answers
 *     no real client and must not send on a real link);
 *  2. every mode refuses to start beside another PXE responder (an answer with a boot-file URL
 *     or vendor class PXEClient), and server mode beside any other DHCPv6 server, naming its
 *     address and DUID, unless `force` (then a warning);
 *  3. auto: `server` only when nobody answered and the interface carries no default route, else
 *     `proxy`, with one log line saying why (probe.ts decideAuto6);
 *  4. while leasing, the probe runs again every `probeIntervalMs`, and at once (at most every
 *     10 s) when a client names another server's DUID in a Request, Renew, Release or Decline;
 *     when another server answers, leasing stops (PXE clients still get their boot-file URL, as
 *     in proxy mode), router advertisements stop (`onServing(false)`), an error is logged and a
 *     `dhcp-mode` event recorded, until two probes in a row find nobody.
 * Proxy mode runs beside another DHCPv6 server that leases addresses: only a PXE responder stops it.
 */
import { ApplianceError } from '../errors.js';
import { defaultRouteInterfaces } from '../dhcp/default-route.js';
import { createDhcp6Server, defaultServerDuid, findInterface6, type Dhcp6Server, type Dhcp6ServerOptions } from './server.js';
import {
  DEFAULT_PROBE6_TIMEOUT_MS,
  decideAuto6,
  defaultRoute6Interfaces,
  describeServers6,
  ERR_DHCP6_PROBE,
  probeClientDuid,
  probeForDhcp6Server,
  type Probe6Result,
} from './probe.js';

/** Error code: another DHCPv6 server answers on the link and `force` is off. */
export const ERR_DHCP6_OTHER_SERVER = 'ERR_DHCP6_OTHER_SERVER';
/** Error code: another DHCPv6 PXE responder (boot-file URL, vendor class PXEClient) answers and `force` is off. */
export const ERR_DHCP6_OTHER_RESPONDER = 'ERR_DHCP6_OTHER_RESPONDER';

/** The configured modes of the service. */
export type Dhcp6ServiceMode = 'proxy' | 'server' | 'auto';

/** Options: the server's, plus the probe's. */
export interface Dhcp6ServiceOptions extends Omit<Dhcp6ServerOptions, 'mode' | 'onForeignServer' | 'ignoreClientDuids'> {
  mode: Dhcp6ServiceMode;
  /** Lease beside another DHCPv6 server (a warning instead of a refusal or a step-down). */
  force?: boolean;
  probeTimeoutMs?: number;
  /** Between probes while leasing; 0 turns the re-probe off (default 60 s). */
  probeIntervalMs?: number;
  /** Probe at start; default when the port is 547 or `probe` is given. */
  probeAtStart?: boolean;
  /** Replaces the probe (tests). */
  probe?: (options: { timeoutMs: number }) => Promise<Probe6Result>;
  /** Replaces the default-route lookup (tests). */
  defaultRouteInterfaces?: () => string[];
  /** Leasing starts (true) or stops (false): router advertisements follow it. */
  onServing?: (serving: boolean) => Promise<void> | void;
}

/** What the service is doing. */
export interface Dhcp6ServiceState {
  configured: Dhcp6ServiceMode;
  mode: 'proxy' | 'server' | 'not started';
  reason: string;
  steppedDown: boolean;
  lastProbe?: { at: string; servers: string[] };
}

/** The DHCPv6 service. The constructor binds nothing. */
export interface Dhcp6Service {
  start(): Promise<{ mode: 'proxy' | 'server'; port: number; proxyPort: number }>;
  stop(): Promise<void>;
  state(): Dhcp6ServiceState;
  /** One re-probe now (tests; the timer and foreign DUIDs run it otherwise). */
  probeNow(): Promise<void>;
  server(): Dhcp6Server | undefined;
}

/** Least time between probes a client's foreign server DUID may trigger. */
const TRIGGER_GAP_MS = 10_000;

/** Create the DHCPv6 service. */
export function createDhcp6Service(options: Dhcp6ServiceOptions): Dhcp6Service {
  const log = options.log.child({ subsystem: 'dhcp6' });
  const found = findInterface6(options.address);
  const ifname = options.interface ?? found?.name;
  const serverDuid = options.serverDuid ?? defaultServerDuid(options.address, found?.mac);
  const probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE6_TIMEOUT_MS;
  const probeIntervalMs = options.probeIntervalMs ?? 60_000;
  const state: Dhcp6ServiceState = { configured: options.mode, mode: 'not started', reason: 'not started', steppedDown: false };
  let server: Dhcp6Server | undefined;
  let timer: NodeJS.Timeout | undefined;
  let probing: Promise<void> | undefined;
  let stopped = false;
  let quiet = 0;
  let lastTrigger = -Infinity;

  const probe = (timeoutMs: number): Promise<Probe6Result> => {
    if (options.probe) return options.probe({ timeoutMs });
    if (ifname === undefined)
      throw new ApplianceError(ERR_DHCP6_PROBE, `cannot tell which interface holds ${options.address}, so the link cannot be probed; pass --interface`, {
        address: options.address,
      });
    return probeForDhcp6Server({ interface: ifname, address: options.address, ownServerDuid: serverDuid, timeoutMs, log: options.log });
  };

  async function stepDown(result: Probe6Result): Promise<void> {
    state.steppedDown = true;
    state.reason = `stepped down: dhcpv6 server ${describeServers6(result.servers)} answers on this link; answering pxe clients only until it is gone`;
    server!.setSteppedDown(true);
    log.error(
      { servers: result.servers, mode: 'proxy' },
      `another dhcpv6 server now answers on ${ifname ?? 'this link'}: ${describeServers6(result.servers)}; stopped leasing addresses and sending router advertisements, answering pxe clients as a proxy until it is gone`,
    );
    options.events.record({
      type: 'dhcp-mode',
      mac: '',
      detail: { family: 'ipv6', mode: 'proxy', steppedDown: true, servers: result.servers.map((s) => s.from) },
    });
    await options.onServing?.(false);
  }

  async function resume(): Promise<void> {
    state.steppedDown = false;
    state.reason = 'resumed: no other dhcpv6 server answered two probes in a row';
    server!.setSteppedDown(false);
    log.warn({ mode: 'server' }, 'no other dhcpv6 server answered two probes in a row: leasing addresses again');
    options.events.record({ type: 'dhcp-mode', mac: '', detail: { family: 'ipv6', mode: 'server', steppedDown: false } });
    await options.onServing?.(true);
  }

  async function reprobe(): Promise<void> {
    if (!server || stopped) return;
    let result: Probe6Result;
    try {
      result = await probe(probeTimeoutMs);
    } catch (err) {
      log.warn({ code: (err as ApplianceError).code, err: (err as Error).message }, 'dhcpv6 re-probe failed; keeping the current mode');
      return;
    }
    if (stopped || !server) return;
    state.lastProbe = { at: new Date().toISOString(), servers: result.servers.map((s) => s.from) };
    if (result.found) {
      quiet = 0;
      if (state.steppedDown) return;
      if (options.force === true) {
        log.warn(
          { servers: result.servers },
          `another dhcpv6 server answers on ${ifname ?? 'this link'}: ${describeServers6(result.servers)}; leasing anyway (--force)`,
        );
        return;
      }
      await stepDown(result);
      return;
    }
    if (!state.steppedDown) return;
    quiet += 1;
    if (quiet < 2) return;
    quiet = 0;
    await resume();
  }

  /** Run a re-probe unless one runs; reschedule the periodic one after it. */
  function probeSoon(): void {
    if (probing || stopped) return;
    if (timer) clearTimeout(timer);
    probing = reprobe().finally(() => {
      probing = undefined;
      schedule();
    });
  }

  function schedule(): void {
    if (probeIntervalMs <= 0 || stopped) return;
    timer = setTimeout(probeSoon, probeIntervalMs);
    timer.unref();
  }

  function onForeignServer(duid: string, from: string): void {
    const now = Date.now();
    if (probing || now - lastTrigger < TRIGGER_GAP_MS) return;
    lastTrigger = now;
    log.warn({ serverDuid: duid, from }, `a client at ${from} talks to another dhcpv6 server (DUID ${duid}): probing the link now`);
    probeSoon();
  }

  return {
    async start() {
      if (server) throw new ApplianceError('ERR_BIND', 'dhcpv6 service already started');
      const wantsProbe = options.probeAtStart ?? (options.port === 547 || options.probe !== undefined);
      const probed = wantsProbe ? await probe(probeTimeoutMs) : undefined;
      let mode: 'proxy' | 'server' = options.mode === 'proxy' ? 'proxy' : 'server';
      state.reason = 'configured with --dhcp6-mode';
      // In every mode: two PXE responders on one link race with different boot answers.
      const responders = probed?.servers.filter((s) => s.pxe) ?? [];
      if (responders.length > 0) {
        const names = describeServers6(responders);
        if (options.force === true)
          log.warn({ servers: responders }, `another dhcpv6 pxe responder answers on ${ifname ?? options.address}: ${names}; starting anyway (--force)`);
        else
          throw new ApplianceError(
            ERR_DHCP6_OTHER_RESPONDER,
            `another dhcpv6 pxe responder answers on ${ifname ?? options.address}: ${names}; two would race with different boot answers: stop it, or pass --force`,
            { servers: responders },
          );
      }
      if (options.mode === 'server' && probed?.found) {
        const names = describeServers6(probed.servers);
        if (options.force === true)
          log.warn({ servers: probed.servers }, `another dhcpv6 server answers on ${ifname ?? options.address}: ${names}; starting anyway (--force)`);
        else
          throw new ApplianceError(
            ERR_DHCP6_OTHER_SERVER,
            `another dhcpv6 server answers on ${ifname ?? options.address}: ${names}; run --dhcp6-mode proxy beside it, stop it, or pass --force`,
            { servers: probed.servers },
          );
      }
      if (options.mode === 'auto') {
        const routes = [...(options.defaultRouteInterfaces ?? (() => [...defaultRouteInterfaces(), ...defaultRoute6Interfaces()]))()];
        const decision = decideAuto6({ probe: probed, interface: ifname, carriesDefaultRoute: ifname !== undefined && routes.includes(ifname) });
        log.info(
          { mode: decision.mode, servers: probed?.servers ?? [], interface: ifname, defaultRoute: routes },
          `dhcpv6 mode auto chose ${decision.mode}: ${decision.reason}`,
        );
        mode = decision.mode;
        state.reason = `auto: ${decision.reason}`;
      }
      if (stopped) throw new ApplianceError('ERR_BIND', 'dhcpv6 service was stopped while starting');
      // The service's own options (probe, force, ...) ride along unread.
      server = createDhcp6Server({
        ...options,
        mode,
        serverDuid,
        ...(ifname !== undefined ? { interface: ifname } : {}),
        ignoreClientDuids: [probeClientDuid(options.address)],
        onForeignServer,
      });
      const ports = await server.start();
      state.mode = mode;
      if (mode === 'server') {
        await options.onServing?.(true);
        if (probed !== undefined) schedule();
      }
      return { mode, ...ports };
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await probing?.catch(() => undefined);
      await server?.stop();
    },
    state() {
      return { ...state };
    },
    probeNow() {
      return reprobe();
    },
    server() {
      return server;
    },
  };
}
