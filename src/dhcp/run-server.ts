/**
 * Run the DHCP server mode on its own (the VM lab and the namespace tests run it this way):
 *
 *   ip netns exec lab node --import tsx src/dhcp/run-server.ts --mode server \
 *     --address 10.77.0.1 --range 10.77.0.100-10.77.0.200 --lease-file /tmp/leases.json
 *
 * `--mode auto` probes the segment first and runs the ProxyDHCP (another server answered) or
 * the DHCP server (none did), logging which and why; `--mode probe` only probes and logs the
 * result (msg "dhcp probe result"). Logs are pino JSON lines on stdout: "dhcp server listening"
 * or "proxydhcp listening" carry the bound ports. SIGTERM/SIGINT stop it. The appliance itself
 * wires the servers in src/appliance.ts, not through this file.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { createEventLog } from '../events.js';
import { createLogger, LOG_LEVELS, type Logger } from '../log.js';
import { createDhcpServer, type DhcpServerOptions } from './dhcp-server.js';
import { parseDhcpRange, type Reservation } from './leases.js';
import { DEFAULT_PROBE_TIMEOUT_MS, decideAutoMode, probeForDhcpServer } from './probe.js';
import { createProxyDhcpServer } from './server.js';

/** Parsed run-server.ts flags. */
export interface RunServerFlags {
  mode: 'server' | 'auto' | 'probe';
  options: Omit<DhcpServerOptions, 'log'>;
  logLevel: (typeof LOG_LEVELS)[number];
}

/** Parse run-server.ts flags; throws an Error with the message to print on bad flags. */
export function parseRunServerFlags(argv: string[]): RunServerFlags {
  const { values } = parseArgs({
    args: argv,
    options: {
      mode: { type: 'string', default: 'server' },
      address: { type: 'string' },
      interface: { type: 'string' },
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
      force: { type: 'boolean', default: false },
      'probe-timeout': { type: 'string', default: String(DEFAULT_PROBE_TIMEOUT_MS) },
      'log-level': { type: 'string', default: 'info' },
    },
    strict: true,
  });
  const mode = values.mode;
  if (mode !== 'server' && mode !== 'auto' && mode !== 'probe') throw new Error(`--mode ${mode}: use server, auto or probe`);
  if (values.address === undefined) throw new Error('--address is required (this host\'s ipv4 address on the boot network)');
  const int = (name: string, v: string, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > max) throw new Error(`--${name} ${v} is not a number from 0 to ${max}`);
    return n;
  };
  const reservations: Reservation[] = (values.reservation ?? []).map((r) => {
    const [mac, ip, hostname] = r.split('=');
    if (!mac || !ip) throw new Error(`--reservation ${r}: use MAC=IP or MAC=IP=HOSTNAME`);
    return { mac, ip, ...(hostname ? { hostname } : {}) };
  });
  const logLevel = values['log-level'];
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new Error(`--log-level ${logLevel}: use one of ${LOG_LEVELS.join(', ')}`);
  if (mode !== 'probe' && values.range === undefined) throw new Error('--range START-END is required for server and auto mode');
  if (mode !== 'probe' && values['lease-file'] === undefined) throw new Error('--lease-file is required for server and auto mode');
  return {
    mode,
    logLevel: logLevel as (typeof LOG_LEVELS)[number],
    options: {
      address: values.address,
      interface: values.interface,
      subnet: values.subnet,
      range: values.range !== undefined ? parseDhcpRange(values.range) : { start: values.address, end: values.address },
      router: values.router,
      dns: values.dns,
      domain: values.domain,
      leaseTime: values['lease-time'] !== undefined ? int('lease-time', values['lease-time'], 0xfffffffe) : undefined,
      leaseFile: values['lease-file'] ?? '',
      reservations: () => reservations,
      dhcpPort: int('dhcp-port', values['dhcp-port'], 65535),
      proxyPort: int('proxy-port', values['proxy-port'], 65535),
      httpPort: int('http-port', values['http-port'], 65535),
      force: values.force,
      probeTimeoutMs: int('probe-timeout', values['probe-timeout'], 60_000),
    },
  };
}

async function run(flags: RunServerFlags, log: Logger): Promise<{ stop(): Promise<void> } | undefined> {
  const { options } = flags;
  const events = createEventLog();
  if (flags.mode === 'probe') {
    const result = await probeForDhcpServer({ address: options.address, interface: options.interface, timeoutMs: options.probeTimeoutMs, log });
    log.info({ found: result.found, servers: result.servers, mac: result.mac, xid: result.xid, elapsedMs: result.elapsedMs }, 'dhcp probe result');
    return undefined;
  }
  if (flags.mode === 'auto') {
    const result = await probeForDhcpServer({ address: options.address, interface: options.interface, timeoutMs: options.probeTimeoutMs, log });
    const choice = decideAutoMode(result);
    log.info({ mode: choice.mode, reason: choice.reason, servers: result.servers.map((s) => s.serverId) }, 'dhcp auto mode');
    if (choice.mode === 'proxy') {
      const proxy = createProxyDhcpServer({ address: options.address, interface: options.interface, subnet: options.subnet, dhcpPort: options.dhcpPort, proxyPort: options.proxyPort, httpPort: options.httpPort, log, events });
      await proxy.start();
      return proxy;
    }
    // The probe just ran and found nobody: do not probe twice.
    const server = createDhcpServer({ ...options, probe: async () => result, log, events });
    await server.start();
    return server;
  }
  const server = createDhcpServer({ ...options, log, events });
  await server.start();
  return server;
}

async function main(): Promise<void> {
  let flags: RunServerFlags;
  try {
    flags = parseRunServerFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`run-server.ts: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const log = createLogger({ level: flags.logLevel });
  let server: { stop(): Promise<void> } | undefined;
  try {
    server = await run(flags, log);
  } catch (err) {
    log.error({ code: (err as { code?: string }).code, err: (err as Error).message }, 'dhcp failed to start');
    process.exitCode = 1;
    return;
  }
  if (!server) return;
  const running = server;
  const stop = (): void => {
    void running.stop().then(() => log.info('dhcp stopped'));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
