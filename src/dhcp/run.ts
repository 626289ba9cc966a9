/**
 * Run the ProxyDHCP server on its own, e.g. inside a network namespace of the VM lab:
 *
 *   ip netns exec lab node --import tsx src/dhcp/run.ts --address 10.77.0.1 --http-port 8080
 *
 * Defaults to the real ports 67 and 4011 (root or cap_net_bind_service). Logs are pino JSON
 * lines on stdout; the line with msg "proxydhcp listening" carries the bound ports. SIGTERM or
 * SIGINT stops it. The appliance itself wires the server through src/appliance.ts, not this.
 *
 * Strict interface mode: `--dhcp-fd 3 --proxy-fd 4` take UDP sockets opened by the parent with
 * SO_BINDTODEVICE (systemd: a .socket unit with `ListenDatagram=0.0.0.0:67`, `BindToDevice=eth1`,
 * `Broadcast=yes`, `ReuseAddress=yes`; or perl-base, which Debian always has, as in
 * test/dhcp/netns.test.ts). Such sockets hear only that interface's broadcasts.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { createEventLog } from '../events.js';
import { createLogger, LOG_LEVELS } from '../log.js';
import { DEFAULT_BOOT_FILES, type BootFiles, type On67Style } from './pxe.js';
import { createProxyDhcpServer, type ProxyDhcpServerOptions } from './server.js';

/** Parse run.ts flags into server options (without the logger); throws a plain message on bad flags. */
export function parseRunFlags(argv: string[]): Omit<ProxyDhcpServerOptions, 'log'> & { logLevel: (typeof LOG_LEVELS)[number] } {
  const { values } = parseArgs({
    args: argv,
    options: {
      address: { type: 'string' },
      interface: { type: 'string' },
      host: { type: 'string' },
      subnet: { type: 'string' },
      'dhcp-port': { type: 'string', default: '67' },
      'proxy-port': { type: 'string', default: '4011' },
      'http-port': { type: 'string', default: '8080' },
      'boot-file': { type: 'string', multiple: true },
      'ipxe-script-url': { type: 'string' },
      'bios-on-67': { type: 'string' },
      'uefi-on-67': { type: 'string' },
      'answer-request-on-67': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
      'dhcp-fd': { type: 'string' },
      'proxy-fd': { type: 'string' },
    },
    strict: true,
  });
  if (values.address === undefined) throw new Error('--address is required (this host\'s ipv4 address on the boot network)');
  const port = (name: string, v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--${name} ${v} is not a port number`);
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
    if (!arch || !file || !(arch in DEFAULT_BOOT_FILES)) {
      throw new Error(`--boot-file ${entry}: use ARCH=FILE with ARCH one of ${Object.keys(DEFAULT_BOOT_FILES).join(', ')}`);
    }
    bootFiles[arch as keyof BootFiles] = file;
  }
  const logLevel = values['log-level'];
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new Error(`--log-level ${logLevel}: use one of ${LOG_LEVELS.join(', ')}`);
  const fd = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 3) throw new Error(`--${name} ${v} is not an inherited descriptor (3 or more)`);
    return n;
  };
  const dhcpFd = fd('dhcp-fd', values['dhcp-fd']);
  const proxyFd = fd('proxy-fd', values['proxy-fd']);
  const bios = style('bios-on-67', values['bios-on-67']);
  const uefi = style('uefi-on-67', values['uefi-on-67']);
  return {
    address: values.address,
    ...(values.interface !== undefined ? { interface: values.interface } : {}),
    ...(values.host !== undefined ? { host: values.host } : {}),
    ...(values.subnet !== undefined ? { subnet: values.subnet } : {}),
    ...(values['ipxe-script-url'] !== undefined ? { ipxeScriptUrl: values['ipxe-script-url'] } : {}),
    dhcpPort: port('dhcp-port', values['dhcp-port']),
    proxyPort: port('proxy-port', values['proxy-port']),
    httpPort: port('http-port', values['http-port']),
    bootFiles,
    pxeOn67: { ...(bios ? { bios } : {}), ...(uefi ? { uefi } : {}) },
    answerRequestOn67: values['answer-request-on-67'],
    ...(dhcpFd !== undefined || proxyFd !== undefined
      ? { fds: { ...(dhcpFd !== undefined ? { dhcp: dhcpFd } : {}), ...(proxyFd !== undefined ? { proxy: proxyFd } : {}) } }
      : {}),
    logLevel: logLevel as (typeof LOG_LEVELS)[number],
  };
}

async function main(): Promise<void> {
  let flags: ReturnType<typeof parseRunFlags>;
  try {
    flags = parseRunFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`run.ts: ${(err as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  const { logLevel, ...options } = flags;
  const log = createLogger({ level: logLevel });
  const server = createProxyDhcpServer({ ...options, log, events: createEventLog() });
  try {
    await server.start();
  } catch (err) {
    log.error({ code: (err as { code?: string }).code, err: (err as Error).message }, 'proxydhcp failed to start');
    process.exitCode = 1;
    return;
  }
  const stop = (): void => {
    void server.stop().then(() => log.info('proxydhcp stopped'));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void main();
}
