import { existsSync, readFileSync } from 'node:fs';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { detectAddress, detectAddress6, interfaceAddresses } from './config-address.js';
import { coerceSetting, isDirectory, type SettingShape } from './config-values.js';
import { ConfigError } from './errors.js';
import { LOG_FORMATS, LOG_LEVELS } from './log.js';
import { LEASE_SYNC_MODES, type LeaseSync } from './dhcp/lease-journal.js';
import { BOOT_BINDINGS, type BootBinding } from './http/boot-sessions.js';

/**
 * The appliance's home: the package root, where the default directories live. Found by walking up
 * from this module, which sits in `src/` under tsx and in `dist/src/` when compiled.
 */
export const APPLIANCE_HOME = findHome(dirname(fileURLToPath(import.meta.url)));

function findHome(start: string): string {
  let dir = start;
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return resolve(start, '..');
}

/**
 * DHCP modes: `auto` probes the segment and picks `proxy` when another DHCP server answers, else
 * `server`; `proxy` answers PXE clients beside another DHCP server; `server` hands out addresses
 * itself; `off` runs no DHCP.
 */
export const DHCP_MODES = ['auto', 'proxy', 'server', 'off'] as const;
export type DhcpMode = (typeof DHCP_MODES)[number];

/** The validated, frozen settings every part of the appliance reads. */
export interface Config {
  /** IPv4 address advertised to clients in DHCP replies and URLs. */
  readonly address: string;
  /** Interface the lab is attached to (its address is the default `address`). */
  readonly interface: string | undefined;
  readonly httpPort: number;
  readonly tftpPort: number;
  /** Address HTTP listens on; default `address` (0.0.0.0 only when asked). */
  readonly httpAddress: string | undefined;
  /** Address TFTP listens on; default `address`. */
  readonly tftpAddress: string | undefined;
  readonly httpMaxConnections: number;
  readonly httpMaxConnectionsPerClient: number;
  readonly tftpMaxTransfers: number;
  readonly tftpMaxTransfersPerClient: number;
  readonly tftpThreads: number;
  readonly dhcpPort: number;
  readonly proxyPort: number;
  readonly dhcpMode: DhcpMode;
  readonly tftpRoot: string;
  readonly assets: string;
  readonly templates: string;
  readonly db: string;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  readonly logFormat: (typeof LOG_FORMATS)[number];
  /** Append logs to this file instead of stdout; SIGHUP reopens it (logrotate). */
  readonly logFile: string | undefined;
  readonly apiToken: string | undefined;
  /** A token that may only read the API. */
  readonly apiReadToken: string | undefined;
  /** Register unknown machines that boot (in the state store): on or off. */
  readonly discovery: 'on' | 'off';
  /** Which requests speak for a machine (http/boot-sessions.ts): dhcp or none. */
  readonly bootBinding: BootBinding;
  /** Lifetime of a boot's facts token, seconds. */
  readonly factsTokenSeconds: number;
  /** Lifetime of a provisioning's callback token, seconds from the boot that started it. */
  readonly callbackTokenSeconds: number;
  readonly tftpBlksizeMax: number;
  /** Server mode: addresses leased (`START-END`); default the upper half of the subnet. */
  readonly dhcpRange: { start: string; end: string } | undefined;
  readonly router: string | undefined;
  readonly dns: readonly string[] | undefined;
  readonly domain: string | undefined;
  readonly leaseTime: number;
  readonly leaseFile: string;
  /** Server mode: 'fdatasync' (ACK after the lease is on disk) or 'none'. */
  readonly leaseSync: LeaseSync;
  /** Server mode: start even when another DHCP server answers on the segment. */
  readonly force: boolean;
  /** Seconds between probes for another DHCP server while serving addresses (0 = never). */
  readonly dhcpProbeInterval: number;
  /** New leases one segment may take per minute (0 = unlimited). */
  readonly dhcpNewLeasesPerMinute: number;
  /** Server mode: networks behind DHCP relays, `CIDR=START-END[@ROUTER],...`. */
  readonly dhcpRelayNetworks: string | undefined;
  /** Opt out of strict interface confinement (scripts/bind-device) when `--interface` is given. */
  readonly noStrictInterface: boolean;
  /** Inherited sockets bound to the interface (scripts/bind-device): strict interface mode. */
  readonly dhcpFd: number | undefined;
  readonly proxyFd: number | undefined;
  /** UEFI machines boot signed code (shim -> signed grub) unless their record, group or profile says otherwise. */
  readonly secureBoot: boolean;
  /** DHCPv6 (src/dhcp6/): off, proxy beside another DHCPv6 server, or server (leases + RAs). */
  readonly dhcp6Mode: Dhcp6Mode;
  /** IPv6 address on the lab segment: DHCPv6 URLs carry it; HTTP and TFTP listen on it too. */
  readonly address6: string | undefined;
  /** DHCPv6 server mode: addresses leased; default ::1000-::1fff of address6's /64. */
  readonly dhcp6Range: { start: string; end: string } | undefined;
  /** DHCPv6 server mode: DNS servers (option 23). */
  readonly dns6: readonly string[] | undefined;
  readonly dhcp6Port: number;
  /** DHCPv6 server mode: the journal of IPv6 leases. */
  readonly lease6File: string;
  /** DHCPv6 server mode: most leases kept (src/dhcp6/budget.ts). */
  readonly dhcp6MaxLeases: number;
  /** DHCPv6 server mode: most DUIDs holding addresses from one host, and new ones per minute. */
  readonly dhcp6MaxPerHost: number;
  /** Router Advertisements (M+O flags, the lab prefix): auto = in DHCPv6 server mode. */
  readonly routerAdvertisements: 'auto' | 'on' | 'off';
  /** Where each setting came from, for the start-up log. */
  readonly sources: Readonly<Record<string, 'default' | 'file' | 'env' | 'flag' | 'detected'>>;
}

/** DHCPv6 modes (src/dhcp6/). Off by default: DHCPv6 answers are opt-in. */
export const DHCP6_MODES = ['off', 'proxy', 'server', 'auto'] as const;
export type Dhcp6Mode = (typeof DHCP6_MODES)[number];

/** One setting: its flag, environment variable, config-file key, type, default and help. */
export interface OptionSpec extends SettingShape {
  key: keyof Omit<Config, 'sources'>;
  /** Default value; paths are relative to the appliance home. undefined = none / detected. */
  default?: string | number;
  help: string;
  /** Do not print the value in logs (secrets). */
  secret?: boolean;
}

/** Every setting, in the order `--help` lists them. Flags, env names and file keys derive from it. */
export const OPTIONS: readonly OptionSpec[] = [
  {
    key: 'address',
    flag: 'address',
    kind: 'ipv4',
    help: 'IPv4 address advertised to clients (default: the address of --interface, or the only non-loopback IPv4 address)',
  },
  { key: 'interface', flag: 'interface', kind: 'string', help: 'network interface the lab is attached to, e.g. br0' },
  { key: 'httpPort', flag: 'http-port', kind: 'port', default: 8080, help: 'HTTP port for iPXE scripts, assets, cloud-config and the API (0 = ephemeral)' },
  { key: 'tftpPort', flag: 'tftp-port', kind: 'port', default: 69, help: 'TFTP port (0 = ephemeral; 69 needs root or cap_net_bind_service)' },
  { key: 'httpAddress', flag: 'http-address', kind: 'ipv4', help: 'address HTTP listens on (default: --address; 0.0.0.0 = every interface)' },
  { key: 'tftpAddress', flag: 'tftp-address', kind: 'ipv4', help: 'address TFTP listens on (default: --address; 0.0.0.0 = every interface)' },
  {
    key: 'httpMaxConnections',
    flag: 'http-max-connections',
    kind: 'int',
    min: 1,
    max: 100_000,
    default: 1024,
    help: 'open HTTP connections in total; beyond it the oldest idle one is closed, or the new one refused',
  },
  {
    key: 'httpMaxConnectionsPerClient',
    flag: 'http-max-connections-per-client',
    kind: 'int',
    min: 1,
    max: 100_000,
    default: 64,
    help: 'open HTTP connections per client address',
  },
  {
    key: 'tftpMaxTransfers',
    flag: 'tftp-max-transfers',
    kind: 'int',
    min: 1,
    max: 100_000,
    default: 1000,
    help: 'concurrent TFTP transfers; beyond it the oldest unacknowledged one is reaped, or the request refused',
  },
  {
    key: 'tftpMaxTransfersPerClient',
    flag: 'tftp-max-transfers-per-client',
    kind: 'int',
    min: 1,
    max: 100_000,
    default: 32,
    help: 'concurrent TFTP transfers per client address',
  },
  {
    key: 'tftpThreads',
    flag: 'tftp-threads',
    kind: 'int',
    min: 0,
    max: 64,
    default: 0,
    help: 'threads that send TFTP transfers of cached boot files, the main one included (0: one per core, at most 4; 1: the main thread only)',
  },
  { key: 'dhcpPort', flag: 'dhcp-port', kind: 'port', default: 67, help: 'DHCP port (67 needs root or cap_net_bind_service)' },
  { key: 'proxyPort', flag: 'proxy-port', kind: 'port', default: 4011, help: 'PXE boot-server (ProxyDHCP) port' },
  {
    key: 'dhcpMode',
    flag: 'dhcp-mode',
    kind: 'enum',
    values: DHCP_MODES,
    default: 'auto',
    help: 'auto: probe for a DHCP server, then proxy beside it or serve addresses; proxy: only answer PXE clients; server: hand out addresses too; off: no DHCP',
  },
  { key: 'dhcpRange', flag: 'dhcp-range', kind: 'range', help: 'server mode: addresses to lease, START-END (default: the upper half of the subnet)' },
  { key: 'router', flag: 'router', kind: 'ipv4', help: 'server mode: default gateway given to clients (option 3; default none)' },
  { key: 'dns', flag: 'dns', kind: 'ipv4list', help: 'server mode: DNS servers given to clients, comma-separated (option 6)' },
  { key: 'domain', flag: 'domain', kind: 'string', help: 'server mode: domain name given to clients (option 15)' },
  { key: 'leaseTime', flag: 'lease-time', kind: 'int', min: 60, max: 31_536_000, default: 3600, help: 'server mode: lease time in seconds' },
  {
    key: 'leaseFile',
    flag: 'lease-file',
    kind: 'path',
    default: 'config/leases.json',
    help: 'server mode: file the leases persist in (an append-only journal, compacted now and then)',
  },
  {
    key: 'leaseSync',
    flag: 'lease-sync',
    kind: 'enum',
    values: LEASE_SYNC_MODES,
    default: 'fdatasync',
    help: 'server mode: fdatasync = an ACK goes out once its lease is on stable storage (batched); none = do not wait or sync, like dnsmasq (a power cut may lose the last leases)',
  },
  {
    key: 'force',
    flag: 'force',
    kind: 'bool',
    default: 'false',
    help: 'start even when another DHCP or DHCPv6 server or PXE responder answers, or another process holds the DHCP ports (two responders on one segment break labs)',
  },
  {
    key: 'dhcpProbeInterval',
    flag: 'dhcp-probe-interval',
    kind: 'int',
    min: 0,
    max: 86_400,
    default: 60,
    help: 'server mode (DHCP and DHCPv6): seconds between probes for another DHCP server; when one answers, stop handing out addresses until it is gone (0 = never)',
  },
  {
    key: 'dhcpNewLeasesPerMinute',
    flag: 'dhcp-new-leases-per-minute',
    kind: 'int',
    min: 0,
    max: 100_000,
    default: 60,
    help: 'server mode (DHCP and DHCPv6): new leases one segment (local, or behind one relay) may take per minute (0 = unlimited)',
  },
  {
    key: 'dhcpRelayNetworks',
    flag: 'dhcp-relay-network',
    kind: 'string',
    help: 'server mode: networks behind DHCP relays (giaddr), CIDR=START-END[@ROUTER], comma-separated, e.g. 10.98.0.0/24=10.98.0.100-10.98.0.150@10.98.0.1',
  },
  {
    key: 'noStrictInterface',
    flag: 'no-strict-interface',
    kind: 'bool',
    default: 'false',
    help: 'with --interface, do not confine DHCP to that interface (by default the DHCP sockets are bound to it through scripts/bind-device)',
  },
  { key: 'tftpRoot', flag: 'tftp-root', kind: 'dir', default: 'tftpboot', help: 'directory served by TFTP (iPXE binaries; falls back to /usr/lib/ipxe)' },
  { key: 'assets', flag: 'assets', kind: 'dir', default: 'assets', help: 'directory served under /assets (kernels, initrds, images)' },
  { key: 'templates', flag: 'templates', kind: 'dir', default: 'templates', help: 'directory of nunjucks templates (iPXE scripts, cloud-configs)' },
  { key: 'db', flag: 'db', kind: 'path', default: 'config/db.json', help: 'JSON file holding profiles, machines and groups (created if missing)' },
  { key: 'logLevel', flag: 'log-level', kind: 'enum', values: LOG_LEVELS, default: 'info', help: 'log level' },
  {
    key: 'logFormat',
    flag: 'log-format',
    kind: 'enum',
    values: LOG_FORMATS,
    default: 'auto',
    help: 'auto: one human line per event on a terminal, JSON otherwise; human; json',
  },
  { key: 'logFile', flag: 'log-file', kind: 'path', help: 'append logs to this file instead of stdout (JSON unless --log-format human); SIGHUP reopens it' },
  { key: 'apiToken', flag: 'api-token', kind: 'string', secret: true, help: 'bearer token for the API (default: generated once and stored beside --db)' },
  { key: 'apiReadToken', flag: 'api-read-token', kind: 'string', secret: true, help: 'a second bearer token that may only read the API (GET)' },
  {
    key: 'discovery',
    flag: 'discovery',
    kind: 'enum',
    values: ['on', 'off'],
    default: 'on',
    help: 'on: register unknown machines that boot, in the state store beside --db; off: only declared machines are tracked (also PUT /api/discovery)',
  },
  {
    key: 'bootBinding',
    flag: 'boot-binding',
    kind: 'enum',
    values: BOOT_BINDINGS,
    default: 'dhcp',
    help: 'dhcp: only a request from the address DHCP saw for a MAC consumes its one-shot boot and gets facts verified (they alone drive fact selectors); none: any request naming the MAC does (for an appliance that sees no DHCP; anyone on the segment can then act as any machine)',
  },
  {
    key: 'factsTokenSeconds',
    flag: 'facts-token-seconds',
    kind: 'int',
    min: 60,
    max: 86_400,
    default: 1800,
    help: 'lifetime of the facts token each boot script and cloud-config carries ({{ facts_token }}, FACTS_TOKEN)',
  },
  {
    key: 'callbackTokenSeconds',
    flag: 'callback-token-seconds',
    kind: 'int',
    min: 600,
    max: 2_592_000,
    default: 86_400,
    help: 'how long after the boot that started a provisioning its callback ({{ callback_url }}) is accepted; only documents sent to the address DHCP saw for the machine carry it',
  },
  {
    key: 'dhcpFd',
    flag: 'dhcp-fd',
    kind: 'int',
    min: 3,
    max: 65535,
    help: 'a UDP socket already bound to the DHCP port (scripts/bind-device, or systemd BindToDevice=): only that interface is heard',
  },
  { key: 'proxyFd', flag: 'proxy-fd', kind: 'int', min: 3, max: 65535, help: 'the same for the PXE boot-server port (4011)' },
  {
    key: 'secureBoot',
    flag: 'secure-boot',
    kind: 'bool',
    default: 'false',
    help: 'UEFI machines get shim + signed grub (run: node bin/appliance fetch secureboot) unless a machine, group or profile sets secureBoot: false',
  },
  {
    key: 'dhcp6Mode',
    flag: 'dhcp6-mode',
    kind: 'enum',
    values: DHCP6_MODES,
    default: 'off',
    help: 'DHCPv6: off; proxy = answer PXE Solicits beside another DHCPv6 server with a boot-file URL (option 59) only; server = lease addresses too and send router advertisements (refused beside another DHCPv6 server unless --force; steps down when one appears); auto = probe, then proxy beside a server or on an uplink, else server',
  },
  {
    key: 'address6',
    flag: 'address6',
    kind: 'ipv6',
    help: 'IPv6 address on the lab segment, for DHCPv6 URLs (tftp://[ADDR]/..., http://[ADDR]:PORT/...); HTTP and TFTP listen on it too (default with --dhcp6-mode: the only global IPv6 address of --interface)',
  },
  {
    key: 'dhcp6Range',
    flag: 'dhcp6-range',
    kind: 'range6',
    help: "DHCPv6 server mode: addresses to lease, START-END (default ::1000-::1fff of --address6's /64)",
  },
  { key: 'dns6', flag: 'dns6', kind: 'ipv6list', help: 'DHCPv6 server mode: DNS servers given to clients, comma-separated (option 23)' },
  {
    key: 'dhcp6Port',
    flag: 'dhcp6-port',
    kind: 'port',
    default: 547,
    help: 'DHCPv6 server port (547; the boot-server request uses --proxy-port over IPv6 too)',
  },
  {
    key: 'lease6File',
    flag: 'lease6-file',
    kind: 'path',
    default: 'config/leases6.json',
    help: 'DHCPv6 server mode: file the IPv6 leases persist in (same journal format as --lease-file)',
  },
  {
    key: 'dhcp6MaxLeases',
    flag: 'dhcp6-max-leases',
    kind: 'int',
    min: 1,
    max: 1_000_000,
    default: 4096,
    help: 'DHCPv6 server mode: most leases kept at once (like dnsmasq --dhcp-lease-max); new clients beyond it get NoAddrsAvail and a warning',
  },
  {
    key: 'dhcp6MaxPerHost',
    flag: 'dhcp6-max-per-host',
    kind: 'int',
    min: 1,
    max: 1024,
    default: 8,
    help: 'DHCPv6 server mode: most DUIDs (clients) holding addresses taken from one host (source link-local address, i.e. one MAC), and most new ones from it per minute',
  },
  {
    key: 'routerAdvertisements',
    flag: 'router-advertisements',
    kind: 'enum',
    values: ['auto', 'on', 'off'],
    default: 'auto',
    help: 'send IPv6 router advertisements (M and O flags, the /64 of --address6, router lifetime 0) on --interface; auto = in DHCPv6 server mode (needs root: scripts/send-ra)',
  },
  {
    key: 'tftpBlksizeMax',
    flag: 'tftp-blksize-max',
    kind: 'int',
    min: 512,
    max: 65464,
    default: 1468,
    help: 'largest TFTP blksize granted (some firmware fails above the MTU)',
  },
];

/** `APPLIANCE_HTTP_PORT` for `http-port`. */
export function envName(spec: OptionSpec): string {
  return 'APPLIANCE_' + spec.flag.toUpperCase().replace(/-/g, '_');
}

/** Inputs of loadConfig, injectable for tests. */
export interface ConfigInputs {
  /** Option flags already split from argv: flag name (without --) -> string value. */
  flags?: Record<string, string | undefined>;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  home?: string;
  /** Config file path; default `<home>/config/appliance.json` (optional unless given). */
  configFile?: string | undefined;
  interfaces?: NodeJS.Dict<NetworkInterfaceInfo[]>;
  /** Commands that advertise nothing (fetch) do not need an address: 0.0.0.0 when none is found. */
  addressOptional?: boolean;
  /**
   * The settings the command uses (default: all). Only these are read, coerced and checked; a
   * known setting outside the list is ignored wherever it comes from, so `fetch` does not fail on
   * a db directory it never opens. Unknown names are refused everywhere.
   */
  keys?: readonly SettingKey[];
  /** Check that the database directory exists when `db` is used (default true; clients only read the token file there). */
  requireDbDir?: boolean;
}

/** The name of one setting (a key of config/appliance.json). */
export type SettingKey = OptionSpec['key'];

type Source = 'default' | 'file' | 'env' | 'flag' | 'detected';

/**
 * Read settings from defaults, `config/appliance.json`, `APPLIANCE_*` variables and flags (flags
 * win over env, env over file, file over defaults), validate them once and freeze the result.
 * Throws ConfigError naming the setting and where it came from; binds nothing.
 */
export function loadConfig<K extends SettingKey>(inputs: ConfigInputs & { keys: readonly K[] }): Pick<Config, K | 'sources'>;
export function loadConfig(inputs?: ConfigInputs): Config;
export function loadConfig(inputs: ConfigInputs = {}): Config {
  const env = inputs.env ?? process.env;
  const cwd = inputs.cwd ?? process.cwd();
  const home = inputs.home ?? APPLIANCE_HOME;
  const flags = inputs.flags ?? {};
  const specsByFlag = new Map(OPTIONS.map((s) => [s.flag, s]));
  const specsByKey = new Map(OPTIONS.map((s) => [s.key as string, s]));
  const specsByEnv = new Map(OPTIONS.map((s) => [envName(s), s]));
  const used = new Set<string>(inputs.keys ?? OPTIONS.map((s) => s.key));

  const raw = new Map<string, { value: unknown; source: Source; where: string; base: string }>();
  for (const spec of OPTIONS) {
    if (spec.default !== undefined) raw.set(spec.key, { value: spec.default, source: 'default', where: 'default', base: home });
  }

  const explicitFile = inputs.configFile ?? env.APPLIANCE_CONFIG;
  const configFile = explicitFile !== undefined ? resolve(cwd, explicitFile) : join(home, 'config', 'appliance.json');
  if (existsSync(configFile)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(configFile, 'utf8'));
    } catch (err) {
      throw new ConfigError(`${configFile} is not valid JSON: ${(err as Error).message}`, { file: configFile });
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ConfigError(`${configFile} must hold a JSON object of settings`, { file: configFile });
    }
    for (const [key, value] of Object.entries(parsed)) {
      // Editors read "$schema" (schema/appliance-config.schema.json); the appliance does not.
      if (key === '$schema') continue;
      const spec = specsByKey.get(key);
      if (!spec) {
        const known = OPTIONS.map((s) => s.key).join(', ');
        throw new ConfigError(`${configFile}: unknown setting "${key}"; known settings: ${known}`, { setting: key, file: configFile });
      }
      if (!used.has(key)) continue;
      // Relative paths in the file are relative to the appliance home, wherever it is started from.
      raw.set(key, { value, source: 'file', where: `${configFile}: ${key}`, base: home });
    }
  } else if (explicitFile !== undefined) {
    throw new ConfigError(`config file ${configFile} does not exist; create it or pass another`, { setting: 'config' });
  }

  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('APPLIANCE_') || name === 'APPLIANCE_CONFIG' || value === undefined) continue;
    const spec = specsByEnv.get(name);
    if (!spec) {
      throw new ConfigError(`unknown environment variable ${name}; known: ${[...specsByEnv.keys()].join(', ')}, APPLIANCE_CONFIG`, { setting: name });
    }
    if (used.has(spec.key)) raw.set(spec.key, { value, source: 'env', where: name, base: cwd });
  }

  for (const [flag, value] of Object.entries(flags)) {
    if (value === undefined) continue;
    const spec = specsByFlag.get(flag);
    if (!spec || !used.has(spec.key)) throw new ConfigError(`unknown option --${flag}; see --help`, { setting: flag });
    raw.set(spec.key, { value, source: 'flag', where: `--${flag}`, base: cwd });
  }

  const out: Record<string, unknown> = {};
  const sources: Record<string, Source> = {};
  for (const spec of OPTIONS) {
    const entry = raw.get(spec.key);
    if (!entry || !used.has(spec.key)) continue;
    out[spec.key] = coerceSetting(spec, entry.value, entry.where, entry.base);
    sources[spec.key] = entry.source;
  }

  if (!used.has('address')) {
    // Not used by this command: nothing to detect.
  } else if (out.address === undefined) {
    try {
      out.address = detectAddress(out.interface as string | undefined, inputs.interfaces ?? networkInterfaces());
      sources.address = 'detected';
    } catch (err) {
      if (!inputs.addressOptional) throw err;
      out.address = '0.0.0.0';
      sources.address = 'default';
    }
  } else if (out.interface !== undefined) {
    // An explicit address with an interface: the interface must exist (typos bind nothing useful).
    interfaceAddresses(out.interface as string, inputs.interfaces ?? networkInterfaces());
  }

  if (used.has('address6') && out.address6 === undefined && out.dhcp6Mode !== undefined && out.dhcp6Mode !== 'off') {
    out.address6 = detectAddress6(out.interface as string | undefined, inputs.interfaces ?? networkInterfaces());
    sources.address6 = 'detected';
  }

  const dbDir = used.has('db') && inputs.requireDbDir !== false ? dirname(out.db as string) : undefined;
  if (dbDir !== undefined && !isDirectory(dbDir)) {
    throw new ConfigError(`${where(raw, 'db')}: directory ${dbDir} for the database does not exist; create it or pass another --db`, { setting: 'db' });
  }

  // Settings without a default are present (as undefined) when used, so `Config` holds every key.
  for (const key of used) if (!(key in out)) out[key] = undefined;
  return Object.freeze({ ...(out as unknown as Omit<Config, 'sources'>), sources: Object.freeze(sources) });
}

function where(raw: Map<string, { where: string }>, key: string): string {
  return raw.get(key)?.where ?? key;
}
