import { dirname, join } from 'node:path';
import type { Config } from './config.js';
import { ApplianceError, ConfigError } from './errors.js';
import { createEventLog, type EventLog } from './events.js';
import type { Logger } from './log.js';
import { validateRange, type DhcpRange, type Reservation } from './dhcp/leases.js';
import { createDhcpService } from './dhcp/service.js';
import { parseRelayedNetworks } from './dhcp/server-policy.js';
import { findLocalAddress } from './dhcp/sockets.js';
import { broadcastOf, ipToNumber, numberToIp, subnetOf } from './dhcp/subnet.js';
import { DEFAULT_BOOT_FILES } from './boot-catalogue.js';
import { Registry, type Histogram } from 'prom-client';
import { instrumentEventLog, leaseJournalWriteHistogram } from './http/metrics.js';
import { createHttpServer, type HttpServer } from './http/server.js';
import { createHttpApp } from './http/app.js';
import dgram from 'node:dgram';
import { availableParallelism } from 'node:os';
import { findInterface6 } from './dhcp6/server.js';
import { createDhcp6Service } from './dhcp6/service.js';
import { createLease6Budget } from './dhcp6/budget.js';
import { defaultDhcp6Range } from './dhcp6/leases.js';
import { serverAdvertisement, startRouterAdvertiser, type RouterAdvertiser } from './dhcp6/ra.js';
import { API_TOKEN_FILE, loadOrCreateApiToken } from './http/token.js';
import { openFileStore, type FileStore, type ReloadOutcome } from './store/file-store.js';
import { diffTemplates, findBrokenTemplates, snapshotTemplates, type TemplateChanges, type TemplateSnapshot } from './template-files.js';
import { FactsSchema } from './store/schema.js';
import { openStateStore, stateDirFor, type StateStore } from './store/state-store.js';
import { createFactsIndex, type FactsIndex } from './store/facts-index.js';
import { openTimeline } from './store/timeline.js';
import type { LegacyMachineState } from './store/file-store.js';
import { findBootFiles } from './tftp/boot-files.js';
import { DEFAULT_FALLBACK_DIRS } from './tftp/files.js';
import { createTftpServer, type TftpServer } from './tftp/server.js';
import { transferThreadCount } from './tftp/transfer-threads.js';
import { sendfileUnavailableReason } from './http/sendfile.js';
import { createGrubFiles } from './boot/grub-files.js';
import { createBootSessions } from './http/boot-sessions.js';
import { grantCallback } from './http/callback-grant.js';
import { settleServedOneShot } from './http/one-shot.js';
import { createDiscovery } from './store/discovery.js';
import { withBootDiagnosis } from './boot/diagnosis.js';
import { withGrubWatch } from './boot/grub-watch.js';
import { chooseLoader, dhcpUuidText } from './boot/loader.js';
import type { BootFileChooser } from './dhcp/pxe.js';
import { createRenderer } from './http/render.js';
import type { Db } from './store/schema.js';
import { definedFields } from './defined.js';

/** The ports actually bound (0 for a service that is off). */
export interface AppliancePorts {
  http: number;
  tftp: number;
  dhcp: number;
  proxy: number;
  /** DHCPv6 (0 when --dhcp6-mode off) and its IPv6 boot-server port. */
  dhcp6?: number;
  proxy6?: number;
}

/** The whole appliance: store, HTTP, TFTP and DHCP wired together. */
export interface Appliance {
  /** Bind everything, or close what was opened and reject with the first error. */
  start(): Promise<AppliancePorts>;
  /** Close every socket and watcher; safe to call twice. */
  stop(): Promise<void>;
  /** SIGHUP: re-read the database and look at the templates now; resolves with what changed. */
  reload(): Promise<ReloadReport>;
  readonly events: EventLog;
}

/** What a reload found: the database outcome and the template files added, changed, removed or broken. */
export interface ReloadReport {
  db: ReloadOutcome;
  templates: TemplateChanges & { broken: string[] };
}

/** Seams for tests: a shared event log, other fallback directories for iPXE binaries. */
export interface ApplianceDeps {
  log: Logger;
  events?: EventLog;
  fallbackDirs?: readonly string[];
}

/** A bind error with the fix in its message (ports below 1024 need privileges). */
function bindError(service: string, port: number, err: unknown, host?: string, addressFlag?: string): ApplianceError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? (err as { cause?: NodeJS.ErrnoException })?.cause?.code;
  if (code === 'EADDRNOTAVAIL' && host !== undefined && addressFlag !== undefined) {
    // The advertised address is not on this host (NAT, a typo): say how to listen elsewhere.
    return new ApplianceError(
      'ERR_BIND',
      `cannot listen for ${service} on ${host}:${port}: the address is not on this host; pass --${addressFlag} with a local address (0.0.0.0 for every interface) or fix --address`,
      { service, port, host },
      { cause: err },
    );
  }
  // Servers that already explain their bind failure (with the fix) are passed through as they are.
  if (err instanceof ApplianceError) return err;
  const hint =
    code === 'EACCES'
      ? '; run as root or grant node cap_net_bind_service (see README), or pass another port'
      : code === 'EADDRINUSE'
        ? '; another program (dnsmasq? tftpd?) holds it: stop it or pass another port'
        : '';
  return new ApplianceError('ERR_BIND', `cannot bind ${service} port ${port}: ${(err as Error).message}${hint}`, { service, port }, { cause: err });
}

/** Runtime data an older db.json carried, into the state store (once, at start). */
async function migrateLegacyState(state: StateStore, records: LegacyMachineState[]): Promise<void> {
  for (const r of records) {
    state.sighted({ mac: r.mac, ip: r.lastSeenIp, uuid: r.uuid }, !r.discovered);
    const facts = FactsSchema.safeParse(r.facts);
    if (r.facts !== undefined && facts.success) await state.putFacts(r.mac, facts.data, r.lastSeenIp, !r.discovered).catch(() => undefined);
  }
  await state.flush();
}

/**
 * The range leased when `--dhcp-range` is not given: the upper half of the address's subnet
 * (10.99.0.128-10.99.0.254 on a /24), leaving the lower half for static addresses.
 */
export function defaultDhcpRange(address: string, prefix = findLocalAddress(address)?.prefix): DhcpRange {
  const subnet = prefix !== undefined ? subnetOf(address, prefix) : undefined;
  if (!subnet || subnet.prefix > 29) {
    throw new ConfigError(
      `cannot choose a dhcp range for ${address}${prefix !== undefined ? '/' + prefix : ' (not on this host)'}; pass --dhcp-range START-END`,
      { setting: 'dhcpRange' },
    );
  }
  const size = 2 ** (32 - subnet.prefix);
  const last = ipToNumber(broadcastOf(subnet))! - 1;
  return { start: numberToIp(subnet.network + size / 2), end: numberToIp(last) };
}

/** The default range in server mode (errors there), and in auto mode when one can be chosen. */
function defaultDhcpRangeOrUndefined(address: string, mode: string): DhcpRange | undefined {
  if (mode === 'server') return defaultDhcpRange(address);
  try {
    return defaultDhcpRange(address);
  } catch {
    return undefined;
  }
}

/**
 * Server mode needs the advertised address on this host (its subnet decides the range): say so
 * before anything is bound, as a setting error (ConfigError, exit 2).
 */
export function checkServerModeSettings(config: Pick<Config, 'dhcpMode' | 'address' | 'dhcpRange'>): void {
  if (config.dhcpMode !== 'server') return;
  const local = findLocalAddress(config.address);
  if (!local) {
    throw new ConfigError(
      `--dhcp-mode server: --address ${config.address} is not an address of this host, so the subnet to lease from is unknown; pass an address of this host (ip -4 addr) or --dhcp-mode proxy`,
      { setting: 'address' },
    );
  }
  const range = config.dhcpRange ?? defaultDhcpRange(config.address, local.prefix);
  const subnet = subnetOf(config.address, local.prefix);
  try {
    validateRange(range, subnet);
  } catch {
    throw new ConfigError(
      `--dhcp-range ${range.start}-${range.end} is not inside ${subnet?.cidr ?? config.address}, the subnet of --address ${config.address}; pass a range on that network`,
      { setting: 'dhcpRange' },
    );
  }
}

/**
 * Wire the servers from a validated config. The constructor binds nothing; start() opens the
 * store, then HTTP (whose real port the DHCP replies and scripts carry), TFTP and DHCP.
 */
export function createAppliance(config: Config, deps: ApplianceDeps): Appliance {
  const log = deps.log;
  const baseEvents = deps.events ?? createEventLog();
  const fallbackDirs = deps.fallbackDirs ?? DEFAULT_FALLBACK_DIRS;
  const stops: Array<() => Promise<void>> = [];
  let started = false;
  let openStore: FileStore | undefined;
  let templates: TemplateSnapshot = new Map();
  // What the web console's status page shows; filled in as start() proceeds.
  let consoleStatus: { ports?: AppliancePorts; dhcp?: { mode: string; reason: string }; warnings: string[] } = { warnings: [] };

  async function stopAll(): Promise<void> {
    const pending = stops.splice(0).reverse();
    for (const stop of pending) {
      try {
        await stop();
      } catch (err) {
        log.warn({ err }, 'error while closing');
      }
    }
  }

  /** The lease journals' append times in this start's /metrics. */
  let journalWrites: Histogram<'family'> | undefined;
  const journalWrite =
    (family: 'ipv4' | 'ipv6'): ((seconds: number) => void) =>
    (seconds) =>
      journalWrites?.labels({ family }).observe(seconds);

  async function startAll(): Promise<AppliancePorts> {
    // Per start: one registry for /metrics, and every server records through a log instrumented
    // with it, so DHCP and TFTP events are counted next to HTTP's.
    const registry = new Registry();
    journalWrites = leaseJournalWriteHistogram(registry);
    // Runtime state and the boot timeline live beside db.json, never in it.
    const stateDir = stateDirFor(config.db);
    // What DHCP's boot-file choice reads of verified facts, following every facts write.
    const factsIndex = createFactsIndex({ log });
    const state = await openStateStore({ dir: stateDir, log, discovery: config.discovery === 'on', onFacts: (mac, facts) => factsIndex.note(mac, facts) });
    stops.push(() => state.close());
    const timeline = await openTimeline({ dir: stateDir, log, events: baseEvents });
    stops.push(() => timeline.close());
    // Diagnoses (unsigned iPXE refused by Secure Boot; grub that asked another server) are added
    // to the timeline as events arrive.
    const diagnosisLog = log.child({ subsystem: 'diagnosis' });
    const events = withGrubWatch(withBootDiagnosis(instrumentEventLog(timeline, registry), diagnosisLog), diagnosisLog);
    consoleStatus = { warnings: [] };
    const noSendfile = sendfileUnavailableReason();
    log.info(
      {
        address: config.address,
        interface: config.interface,
        dhcpMode: config.dhcpMode,
        tftpRoot: config.tftpRoot,
        assets: config.assets,
        templates: config.templates,
        db: config.db,
        sources: config.sources,
        httpSendfile: noSendfile === undefined,
      },
      'starting netboot appliance',
    );
    if (noSendfile)
      log.warn({ reason: noSendfile }, 'http assets are sent by copying them through the process, not by sendfile (about twice the CPU per byte)');
    logBootFiles();
    checkServerModeSettings(config);
    if (config.dhcpMode !== 'server' && config.secureBoot) {
      // Debian 12's grub reads its server from the DHCP server's ACK, not from our proxy offer (boot/grub-watch.ts).
      log.warn(
        { address: config.address, dhcpMode: config.dhcpMode },
        `secure boot beside another dhcp server: debian 12's grub asks that server's next-server for /grub/grub.cfg, so set next-server ${config.address} there (isc dhcpd next-server; dnsmasq dhcp-option=option:server-ip-address,${config.address}), use --dhcp-mode server, or serve debian 13's grub, which reads the proxydhcp offer (fetch secureboot --release trixie)`,
      );
    }
    if (config.dhcpMode === 'off' && config.bootBinding === 'dhcp') {
      // Nothing can tie an address to a MAC: facts stay unverified, one-shots wait for facts.
      log.warn(
        { dhcpMode: 'off', bootBinding: 'dhcp' },
        'dhcp is off, so no address is known to belong to a machine: facts reports stay unverified (they match no fact selector) and one-shot boots are not consumed by /ipxe; pass --boot-binding none to trust requests by MAC',
      );
    }

    const store: FileStore = await openFileStore({
      path: config.db,
      log,
      templatesDir: config.templates,
      migrate: (records) => migrateLegacyState(state, records),
    });
    openStore = store;
    templates = snapshotTemplates(config.templates);
    stops.push(async () => {
      openStore = undefined;
      await store.close();
    });
    const apiToken = config.apiToken ?? (await loadOrCreateApiToken(dirname(config.db), log));

    // Each server adds its own `subsystem` to the logger it is given: pass the root logger.
    // HTTP and TFTP listen on the advertised address unless told otherwise: a lab appliance on a
    // multi-homed host must not serve boot files and the API on every network it touches.
    const httpHost = config.httpAddress ?? config.address;
    const httpLimits = { maxConnections: config.httpMaxConnections, maxPerClient: config.httpMaxConnectionsPerClient };
    // One app for both address families: requests over IPv6 get [address6] in their URLs.
    // Shared by HTTP and grub's TFTP scripts: one view of which address is whose machine, and
    // the same verified facts for selection on both paths.
    const sessions = createBootSessions({ binding: config.bootBinding, ttlSeconds: config.factsTokenSeconds, history: (mac) => events.list({ mac }) });
    const discovery = createDiscovery({ store, state, log });
    const app = createHttpApp({
      store,
      events,
      log,
      sessions,
      discovery,
      address: config.address,
      // Called per request, after start() has bound the real port.
      httpPort: () => http.port(),
      templatesDir: config.templates,
      assetsDir: config.assets,
      apiToken,
      apiReadToken: config.apiReadToken,
      bootBinding: config.bootBinding,
      factsTokenSeconds: config.factsTokenSeconds,
      callbackTokenSeconds: config.callbackTokenSeconds,
      state,
      timelineStatus: () => timeline.status(),
      factsIndexStatus: () => factsIndex.status(),
      registry,
      bootDirs: [config.tftpRoot, ...fallbackDirs],
      console: {
        ...(config.apiToken === undefined ? { tokenFile: join(dirname(config.db), API_TOKEN_FILE) } : {}),
        status: () => ({ ...consoleStatus, interface: config.interface ?? null, tftpRoot: config.tftpRoot, assets: config.assets, db: config.db }),
      },
      ...(config.address6 !== undefined ? { address6: config.address6 } : {}),
    });
    const http: HttpServer = createHttpServer({ host: httpHost, port: config.httpPort, limits: httpLimits, log, app });
    const httpPort = await http.start().then(
      (r) => r.port,
      (err: unknown) => {
        throw bindError('http', config.httpPort, err, httpHost, 'http-address');
      },
    );
    stops.push(() => http.stop());

    const tftpHost = config.tftpAddress ?? config.address;
    const tftpOptions = {
      root: config.tftpRoot,
      host: tftpHost,
      port: config.tftpPort,
      maxTransfers: config.tftpMaxTransfers,
      maxPerClient: config.tftpMaxTransfersPerClient,
      threads: transferThreadCount(config.tftpThreads, availableParallelism()),
      fallbackDirs,
      blksizeMax: config.tftpBlksizeMax,
      log,
      events,
      // grub's entry and per-machine scripts, and the assets it loads over TFTP (src/boot/).
      virtualFiles: createGrubFiles({
        store,
        renderer: createRenderer(config.templates),
        assetsDir: config.assets,
        server: () => ({ address: config.address, port: http.port() }),
        secureBootDefault: config.secureBoot,
        log,
        events,
        facts: (mac) => discovery.selectionFacts(mac),
        grantCallback: (machine, mac, ip) => grantCallback({ sessions, lifetimeSeconds: config.callbackTokenSeconds }, machine, mac, ip),
        settleOneShot: (mac, ip) =>
          settleServedOneShot(
            {
              deps: { store },
              sessions,
              log,
              record: (type, mac, ip, detail) => events.record({ mac, type, ...(ip ? { ip } : {}), ...(detail ? { detail } : {}) }),
            },
            mac,
            ip,
            'grub',
          ),
      }),
    };
    const tftp: TftpServer = createTftpServer(tftpOptions);
    const tftpPort = await tftp.start().then(
      (r) => r.port,
      (err: unknown) => {
        throw bindError('tftp', config.tftpPort, err, tftpHost, 'tftp-address');
      },
    );
    stops.push(() => tftp.stop());

    if (config.address6 !== undefined && config.dhcp6Mode !== 'off') {
      // IPv6 clients (DHCPv6 boot-file URLs) fetch from [address6]: HTTP on the same port, TFTP
      // on the same port over udp6, with the same app, files and limits.
      const http6 = createHttpServer({ host: config.address6, port: httpPort, limits: httpLimits, log, app });
      await http6.start().catch((err: unknown) => {
        throw bindError('http (ipv6)', httpPort, err, config.address6, 'address6');
      });
      stops.push(() => http6.stop());
      const tftp6 = createTftpServer({
        ...tftpOptions,
        host: config.address6,
        port: tftpPort,
        socketFactory: () => dgram.createSocket({ type: 'udp6', ipv6Only: true }),
      });
      await tftp6.start().catch((err: unknown) => {
        throw bindError('tftp (ipv6)', tftpPort, err, config.address6, 'address6');
      });
      stops.push(() => tftp6.stop());
    }

    const { dhcpPort, proxyPort } = await startDhcp(store, httpPort, events, { index: factsIndex, state });
    const v6 = await startDhcp6(httpPort, events);
    const ports = { http: httpPort, tftp: tftpPort, dhcp: dhcpPort, proxy: proxyPort, ...v6 };
    consoleStatus.ports = ports;
    log.info({ ports, address: config.address, bootScript: `http://${config.address}:${httpPort}/boot.ipxe` }, 'netboot appliance ready');
    return ports;
  }

  /**
   * DHCPv6 (src/dhcp6/service.ts) when --dhcp6-mode is proxy, server or auto, and while leasing (or with
   * --router-advertisements on) router advertisements on --interface through scripts/send-ra.
   */
  async function startDhcp6(httpPort: number, events: EventLog): Promise<{ dhcp6?: number; proxy6?: number }> {
    if (config.dhcp6Mode === 'off') return {};
    if (config.address6 === undefined)
      throw new ConfigError('--dhcp6-mode needs --address6 (or an --interface with one IPv6 address)', { setting: 'address6' });
    const address6 = config.address6;
    const leasing = config.dhcp6Mode !== 'proxy';
    const ifname = config.interface ?? findInterface6(address6)?.name;
    // Router advertisements follow leasing (auto): they start when the service leases and stop
    // when it steps down beside another DHCPv6 server (src/dhcp6/service.ts).
    let advertiser: RouterAdvertiser | undefined;
    const advertise = async (on: boolean): Promise<void> => {
      if (!on) {
        const a = advertiser;
        advertiser = undefined;
        await a?.stop();
        return;
      }
      if (advertiser) return;
      if (ifname === undefined) throw new ConfigError('router advertisements need --interface (the segment to advertise on)', { setting: 'interface' });
      const mac = findInterface6(address6)?.mac;
      advertiser = await startRouterAdvertiser({
        interface: ifname,
        ra: serverAdvertisement(address6, mac !== undefined && mac !== '00:00:00:00:00:00' ? { sourceMac: mac } : {}),
        log,
      });
    };
    const onServing = (serving: boolean): Promise<void> => (config.routerAdvertisements === 'auto' ? advertise(serving) : Promise.resolve());
    const dhcp6 = createDhcp6Service({
      mode: config.dhcp6Mode,
      address: address6,
      ...(ifname !== undefined ? { interface: ifname } : {}),
      port: config.dhcp6Port,
      proxyPort: config.proxyPort,
      httpPort: () => httpPort,
      log,
      events,
      force: config.force,
      probeIntervalMs: config.dhcpProbeInterval * 1000,
      onServing,
      ...(leasing
        ? {
            range: config.dhcp6Range ?? defaultDhcp6Range(address6),
            leaseSeconds: config.leaseTime,
            leaseFile: config.lease6File,
            leaseSync: config.leaseSync,
            onJournalWrite: journalWrite('ipv6'),
            budget: createLease6Budget({
              maxLeases: config.dhcp6MaxLeases,
              maxClientsPerHost: config.dhcp6MaxPerHost,
              newLeasesPerMinute: config.dhcpNewLeasesPerMinute,
            }),
            ...(config.dns6 !== undefined ? { dns: config.dns6 } : {}),
            ...(config.domain !== undefined ? { domains: [config.domain] } : {}),
          }
        : {}),
    });
    stops.push(async () => {
      await dhcp6.stop();
      await advertise(false);
    });
    const started = await dhcp6.start().catch((err: unknown) => {
      throw bindError('dhcpv6', config.dhcp6Port, err);
    });
    if (config.routerAdvertisements === 'on') await advertise(true);
    return { dhcp6: started.port, proxy6: started.proxyPort };
  }

  /** Start the DHCP side through the one DHCP service (modes, probe, step-down: dhcp/service.ts). */
  async function startDhcp(
    store: FileStore,
    httpPort: number,
    events: EventLog,
    facts: { index: FactsIndex; state: StateStore },
  ): Promise<{ dhcpPort: number; proxyPort: number }> {
    const leasing = config.dhcpMode === 'server' || config.dhcpMode === 'auto';
    const db = await watchDb(store, facts);
    const dlog = log.child({ subsystem: 'dhcp' });
    const chooseBootFile: BootFileChooser = (boot) => {
      if (boot.client === 'ipxe') return { kind: 'file', file: undefined };
      const uuid = boot.request.clientUuid ? dhcpUuidText(boot.request.clientUuid.raw) : undefined;
      // The verified facts fact-selected groups read (one Map lookup): the same group, and so
      // the same bootloader and secureBoot, as the boot script will choose.
      const choice = chooseLoader(
        db.current(),
        { mac: boot.mac, uuid, firmware: boot.firmware, client: boot.client, facts: facts.index.get(boot.mac) },
        config.secureBoot,
      );
      if (choice.kind === 'refuse') return { kind: 'refuse', reason: choice.reason };
      if (choice.file !== undefined)
        dlog.debug(
          { mac: boot.mac, arch: boot.firmware, loader: choice.loader, secureBoot: choice.secureBoot, file: choice.file, source: choice.source },
          'boot loader chosen',
        );
      return { kind: 'file', file: choice.file };
    };
    const service = createDhcpService({
      mode: config.dhcpMode,
      chooseBootFile,
      address: config.address,
      ...definedFields({ interface: config.interface }),
      dhcpPort: config.dhcpPort,
      proxyPort: config.proxyPort,
      httpPort,
      log,
      events,
      ...(config.dhcpFd !== undefined || config.proxyFd !== undefined ? { fds: definedFields({ dhcp: config.dhcpFd, proxy: config.proxyFd }) } : {}),
      ...(leasing
        ? {
            // auto picks server only on a segment without a server and a default route; the
            // range is worked out only if it may be needed (none found: the service says so).
            ...definedFields({ range: config.dhcpRange ?? defaultDhcpRangeOrUndefined(config.address, config.dhcpMode) }),
            ...definedFields({ router: config.router, dns: config.dns && [...config.dns], domain: config.domain }),
            leaseTime: config.leaseTime,
            leaseFile: config.leaseFile,
            leaseSync: config.leaseSync,
            onJournalWrite: journalWrite('ipv4'),
            reservations: () => db.reservations(),
            newLeasesPerMinute: config.dhcpNewLeasesPerMinute,
            ...(config.dhcpRelayNetworks !== undefined ? { relayedNetworks: parseRelayedNetworks(config.dhcpRelayNetworks) } : {}),
          }
        : {}),
      force: config.force,
      probeIntervalMs: config.dhcpProbeInterval * 1000,
    });
    stops.push(() => service.stop());
    const started = await service.start().catch((err: unknown) => {
      throw bindError('dhcp', config.dhcpPort, err);
    });
    // The console shows what DHCP does now (a server that stepped down shows proxy, and why).
    Object.defineProperty(consoleStatus, 'dhcp', {
      enumerable: true,
      configurable: true,
      get: () => {
        const state = service.state();
        return { mode: state.steppedDown ? 'proxy' : state.mode, reason: state.reason };
      },
    });
    return { dhcpPort: started.dhcpPort, proxyPort: started.proxyPort };
  }

  /**
   * DHCP decisions are synchronous, so they read a copy of the database kept current from the
   * store (refreshed each second and at start): static reservations come from machine records
   * with an `ip`; boot loader choices (grub, Secure Boot) from machines, groups and profiles,
   * and the verified facts fact selectors read (facts-index.ts), brought up to date with the
   * groups before the new copy is used.
   */
  async function watchDb(store: FileStore, facts: { index: FactsIndex; state: StateStore }): Promise<{ current(): Db; reservations(): Reservation[] }> {
    let current: Db = await store.snapshot();
    let reservations: Reservation[] = [];
    // The copy is made only when the database moved: a deep copy of thousands of machines each
    // second would stall the DHCP answers queued behind it.
    let copied: number | undefined;
    const refresh = async () => {
      const revision = store.revision?.();
      if (revision !== undefined && revision === copied) return;
      const next = await store.snapshot();
      await facts.index.sync(next, facts.state);
      current = next;
      reservations = current.machines.flatMap((m) => (m.ip ? [{ mac: m.mac, ip: m.ip, ...(m.hostname ? { hostname: m.hostname } : {}) }] : []));
      copied = revision;
    };
    await refresh();
    const timer = setInterval(() => void refresh().catch((err: unknown) => log.warn({ err }, 'reading the database for dhcp failed')), 1000);
    timer.unref();
    stops.push(async () => clearInterval(timer));
    return { current: () => current, reservations: () => reservations };
  }

  /**
   * Log, per firmware, the boot file DHCP hands out and where TFTP finds it. BIOS and UEFI x64
   * are what labs boot: missing ones are warnings. IA32/ARM64 builds are not in Debian's package.
   */
  function logBootFiles(): void {
    for (const f of findBootFiles(config.tftpRoot, fallbackDirs, DEFAULT_BOOT_FILES)) {
      if (f.source !== 'missing') {
        log.info({ firmware: f.firmware, file: f.name, path: f.path, source: f.source }, 'boot file');
      } else if (f.firmware === 'bios' || f.firmware === 'efi-x64') {
        const warning = `boot file ${f.name} for ${f.firmware} not found: such machines cannot boot; install Debian's ipxe package or run: node bin/appliance fetch ipxe`;
        log.warn({ firmware: f.firmware, file: f.name, searched: [config.tftpRoot, ...fallbackDirs] }, warning);
        consoleStatus.warnings.push(warning);
      } else {
        // Noise for most labs: Debian ships no such build and fetch ipxe cannot download one.
        log.debug(
          { firmware: f.firmware, file: f.name },
          `boot file ${f.name} for ${f.firmware} not present; put an iPXE ${f.firmware} build there to boot such machines`,
        );
      }
    }
  }

  return {
    events: baseEvents,
    async start() {
      if (started) throw new ApplianceError('ERR_STARTED', 'appliance already started');
      started = true;
      try {
        return await startAll();
      } catch (err) {
        await stopAll();
        started = false;
        throw err;
      }
    },
    async stop() {
      await stopAll();
      started = false;
    },
    async reload() {
      if (!openStore) throw new ApplianceError('ERR_NOT_STARTED', 'appliance is not running');
      const db = await openStore.reload();
      const now = snapshotTemplates(config.templates);
      const changes = diffTemplates(templates, now);
      templates = now;
      const broken = findBrokenTemplates(config.templates, [...changes.added, ...changes.changed]);
      for (const b of broken)
        log.warn(
          { subsystem: 'http', template: b.template, err: b.error },
          `template ${b.template} does not compile; machines using it get a retry script until it is fixed`,
        );
      return { db, templates: { ...changes, broken: broken.map((b) => b.template) } };
    },
  };
}
