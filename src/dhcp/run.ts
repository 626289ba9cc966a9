/**
 * Run DHCP on its own, through the same service the appliance uses (service.ts), e.g. inside a
 * network namespace of the VM lab or a namespace test:
 *
 *   ip netns exec lab node --import tsx src/dhcp/run.ts --address 10.77.0.1 --http-port 8080
 *   ip netns exec lab node --import tsx src/dhcp/run.ts --mode server \
 *     --address 10.77.0.1 --range 10.77.0.100-10.77.0.200 --lease-file /tmp/leases.json
 *
 * `--mode proxy` (default), `server` or `auto` as `--dhcp-mode` of the appliance; `--mode probe`
 * only probes and logs the result (msg "dhcp probe result"). Defaults to the real ports 67 and
 * 4011 (root or cap_net_bind_service). Logs are pino JSON lines on stdout: "proxydhcp listening"
 * or "dhcp server listening" carry the bound ports. SIGTERM or SIGINT stops it.
 *
 * Strict interface mode: `--dhcp-fd 3 --proxy-fd 4` take UDP sockets opened by the parent with
 * SO_BINDTODEVICE (scripts/bind-device, or a systemd .socket unit with `BindToDevice=`). Such
 * sockets hear only that interface's broadcasts.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { isFirmware, type BootFiles, FIRMWARES } from '../boot-catalogue.js';
import { createEventLog } from '../events.js';
import { createLogger, LOG_LEVELS, type Logger } from '../log.js';
import { parseDhcpRange, type Reservation } from './leases.js';
import { DEFAULT_PROBE_TIMEOUT_MS, probeForDhcpServer } from './probe.js';
import type { On67Style } from './pxe.js';
import { createDhcpService, DEFAULT_PROBE_INTERVAL_S, type DhcpServiceOptions } from './service.js';
import { parseRelayedNetworks } from './server-policy.js';

/** Parsed run.ts flags. */
export interface RunFlags {
  mode: 'proxy' | 'server' | 'auto' | 'probe';
  options: Omit<DhcpServiceOptions, 'log' | 'mode'>;
  logLevel: (typeof LOG_LEVELS)[number];
}

/** Parse run.ts flags; throws an Error with the message to print on bad flags. */
export function parseRunFlags(argv: string[]): RunFlags {
  const { values } = parseArgs({
    args: argv,
    options: {
      mode: { type: 'string', default: 'proxy' },
      address: { type: 'string' },
      interface: { type: 'string' },
      host: { type: 'string' },
      subnet: { type: 'string' },
      range: { type: 'string' },
      router: { type: 'string' },
      dns: { type: 'string', multiple: true },
      domain: { type: 'string' },
      'lease-time': { type: 'string' },
      'lease-file': { type: 'string' },
      reservation: { type: 'string', multiple: true },
      'dhcp-port': { type: 'string', default: '67' },
      'proxy-port': { type: 'string', default: '4011' },
      'http-port': { type: 'string', default: '8080' },
      'boot-file': { type: 'string', multiple: true },
      'ipxe-script-url': { type: 'string' },
      'bios-on-67': { type: 'string' },
      'uefi-on-67': { type: 'string' },
      'answer-request-on-67': { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      'probe-timeout': { type: 'string', default: String(DEFAULT_PROBE_TIMEOUT_MS) },
      'probe-interval': { type: 'string', default: String(DEFAULT_PROBE_INTERVAL_S) },
      'new-leases-per-minute': { type: 'string' },
      'relay-network': { type: 'string', multiple: true },
      'log-level': { type: 'string', default: 'info' },
      'dhcp-fd': { type: 'string' },
      'proxy-fd': { type: 'string' },
    },
    strict: true,
  });
  const mode = values.mode;
  if (mode !== 'proxy' && mode !== 'server' && mode !== 'auto' && mode !== 'probe') throw new Error(`--mode ${mode}: use proxy, server, auto or probe`);
  if (values.address === undefined) throw new Error("--address is required (this host's ipv4 address on the boot network)");
  const int = (name: string, v: string, max: number, min = 0): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} ${v} is not a number from ${min} to ${max}`);
    return n;
  };
  const style = (name: string, v: string | undefined): On67Style | undefined => {
    if (v === undefined) return undefined;
    if (v !== 'boot-file' && v !== 'defer') throw new Error(`--${name} ${v}: use boot-file or defer`);
    return v;
  };
  const bootFiles: Partial<BootFiles> = {};
  for (const entry of values['boot-file'] ?? []) {
    const [arch, file] = entry.split('=', 2);
    if (!arch || !file || !isFirmware(arch)) throw new Error(`--boot-file ${entry}: use ARCH=FILE with ARCH one of ${FIRMWARES.join(', ')}`);
    bootFiles[arch] = file;
  }
  const reservations: Reservation[] = (values.reservation ?? []).map((r) => {
    const [mac, ip, hostname] = r.split('=');
    if (!mac || !ip) throw new Error(`--reservation ${r}: use MAC=IP or MAC=IP=HOSTNAME`);
    return { mac, ip, ...(hostname ? { hostname } : {}) };
  });
  const logLevel = values['log-level'];
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new Error(`--log-level ${logLevel}: use one of ${LOG_LEVELS.join(', ')}`);
  const leasing = mode === 'server' || mode === 'auto';
  if (leasing && values.range === undefined) throw new Error('--range START-END is required for server and auto mode');
  if (leasing && values['lease-file'] === undefined) throw new Error('--lease-file is required for server and auto mode');
  const fd = (name: string, v: string | undefined): number | undefined => (v === undefined ? undefined : int(name, v, 65535, 3));
  const dhcpFd = fd('dhcp-fd', values['dhcp-fd']);
  const proxyFd = fd('proxy-fd', values['proxy-fd']);
  const bios = style('bios-on-67', values['bios-on-67']);
  const uefi = style('uefi-on-67', values['uefi-on-67']);
  return {
    mode,
    logLevel: logLevel as (typeof LOG_LEVELS)[number],
    options: {
      address: values.address,
      ...(values.interface !== undefined ? { interface: values.interface } : {}),
      ...(values.host !== undefined ? { host: values.host } : {}),
      ...(values.subnet !== undefined ? { subnet: values.subnet } : {}),
      ...(values.range !== undefined ? { range: parseDhcpRange(values.range) } : {}),
      ...(values.router !== undefined ? { router: values.router } : {}),
      ...(values.dns !== undefined ? { dns: values.dns } : {}),
      ...(values.domain !== undefined ? { domain: values.domain } : {}),
      ...(values['lease-time'] !== undefined ? { leaseTime: int('lease-time', values['lease-time'], 0xfffffffe) } : {}),
      ...(values['lease-file'] !== undefined ? { leaseFile: values['lease-file'] } : {}),
      ...(values['ipxe-script-url'] !== undefined ? { ipxeScriptUrl: values['ipxe-script-url'] } : {}),
      ...(values['new-leases-per-minute'] !== undefined ? { newLeasesPerMinute: int('new-leases-per-minute', values['new-leases-per-minute'], 100_000) } : {}),
      reservations: () => reservations,
      ...(values['relay-network'] !== undefined ? { relayedNetworks: values['relay-network'].flatMap(parseRelayedNetworks) } : {}),
      dhcpPort: int('dhcp-port', values['dhcp-port'], 65535),
      proxyPort: int('proxy-port', values['proxy-port'], 65535),
      httpPort: int('http-port', values['http-port'], 65535),
      bootFiles,
      pxeOn67: { ...(bios ? { bios } : {}), ...(uefi ? { uefi } : {}) },
      answerRequestOn67: values['answer-request-on-67'],
      force: values.force,
      probeTimeoutMs: int('probe-timeout', values['probe-timeout'], 60_000),
      probeIntervalMs: int('probe-interval', values['probe-interval'], 86_400) * 1000,
      ...(dhcpFd !== undefined || proxyFd !== undefined
        ? { fds: { ...(dhcpFd !== undefined ? { dhcp: dhcpFd } : {}), ...(proxyFd !== undefined ? { proxy: proxyFd } : {}) } }
        : {}),
    },
  };
}

async function run(flags: RunFlags, log: Logger): Promise<{ stop(): Promise<void> } | undefined> {
  const { options } = flags;
  if (flags.mode === 'probe') {
    const result = await probeForDhcpServer({
      address: options.address,
      ...(options.interface !== undefined ? { interface: options.interface } : {}),
      ...(options.probeTimeoutMs !== undefined ? { timeoutMs: options.probeTimeoutMs } : {}),
      log,
    });
    log.info({ found: result.found, servers: result.servers, mac: result.mac, xid: result.xid, elapsedMs: result.elapsedMs }, 'dhcp probe result');
    return undefined;
  }
  const service = createDhcpService({ ...options, mode: flags.mode, log, events: createEventLog() });
  try {
    await service.start();
  } catch (err) {
    await service.stop();
    throw err;
  }
  return service;
}

async function main(): Promise<void> {
  let flags: RunFlags;
  try {
    flags = parseRunFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`run.ts: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const log = createLogger({ level: flags.logLevel });
  // The handlers are in place before start: "listening" is logged inside run(), and a SIGTERM
  // that arrives before run() returns must still stop cleanly instead of killing the process.
  let server: { stop(): Promise<void> } | undefined;
  let stopRequested = false;
  const stop = (): void => {
    if (!server) {
      stopRequested = true;
      return;
    }
    void server.stop().then(() => log.info('dhcp stopped'));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    server = await run(flags, log);
  } catch (err) {
    log.error({ code: (err as { code?: string }).code, err: (err as Error).message }, 'dhcp failed to start');
    process.exitCode = 1;
    process.removeListener('SIGTERM', stop);
    process.removeListener('SIGINT', stop);
    return;
  }
  if (!server) {
    process.removeListener('SIGTERM', stop);
    process.removeListener('SIGINT', stop);
    return;
  }
  if (stopRequested) stop();
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
