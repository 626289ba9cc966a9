/**
 * The checked plan of one `lab` run, from the flags the command table parsed (command.ts):
 * which VMs with which firmware, MAC and UUID, what they boot and how the lab network is set
 * up. Pure: no network, no processes; a bad value is a UsageError (exit 2) naming the flag.
 */
import { isAbsolute, resolve } from 'node:path';
import { UsageError, type CommandArgs } from '../commands/command.js';
import { definedFields } from '../defined.js';
import { FIRMWARES, type Firmware } from './qemu.js';

/** Streams and settings the lab uses; injectable so tests run it in-process. */
export interface LabIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** Exit codes of the lab command. */
export const LAB_EXIT = {
  /** Every VM powered off (or, with --keep or no VMs, the lab was stopped by a signal). */
  ok: 0,
  /** A VM crashed or timed out, or the lab could not be built. */
  failure: 1,
  /** Bad flags. */
  usage: 2,
  /** SIGINT/SIGTERM arrived before every VM had powered off. */
  interrupted: 130,
} as const;

/** Parsed and checked flags of the lab command. */
export interface LabPlan {
  vms: Array<{ name: string; firmware: Firmware; mac?: string; uuid?: string }>;
  memoryMiB: number;
  timeoutMs: number;
  serialLogDir: string | undefined;
  quiet: boolean;
  testOs: boolean;
  applianceArgs: string[];
  logLevel: string | undefined;
  attach: string[];
  upstreamDhcp: boolean;
  ipv6Router: boolean;
  /** A uefi-ipv6 VM is in the plan: the lab gets IPv6 and the appliance DHCPv6 (proxy beside the upstream, else server). */
  ipv6: boolean;
  httpPort: number;
  keep: boolean;
}

const MAC_RE = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Flags handed to the appliance: paths are made absolute (the appliance runs elsewhere). */
export const LAB_PATH_FLAGS = ['db', 'assets', 'templates', 'tftp-root', 'config'] as const;

function usage(message: string): UsageError {
  return new UsageError(`lab: ${message}`);
}

function intFlag(value: string | undefined, name: string, min: number, max: number, dflt: number): number {
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw usage(`--${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Check the lab's flags (as parsed by the command table) and plan the run. */
export function planLab(flags: CommandArgs['flags'], cwd: string): LabPlan {
  const str = (name: string): string | undefined => (typeof flags[name] === 'string' ? (flags[name] as string) : undefined);
  const list = (name: string): string[] => (Array.isArray(flags[name]) ? (flags[name] as string[]) : []);
  const bool = (name: string): boolean => flags[name] === true;
  const firmwares = list('firmware').length > 0 ? list('firmware') : ['bios'];
  for (const f of firmwares) {
    if (!(FIRMWARES as readonly string[]).includes(f)) throw usage(`--firmware must be one of ${FIRMWARES.join(', ')}, not ${JSON.stringify(f)}`);
  }
  const macs = list('mac');
  const uuids = list('uuid');
  for (const m of macs) if (!MAC_RE.test(m)) throw usage(`--mac ${JSON.stringify(m)} is not a MAC address like 52:54:00:12:34:56`);
  for (const u of uuids) if (!UUID_RE.test(u)) throw usage(`--uuid ${JSON.stringify(u)} is not a UUID like 8f9a2b3c-1d2e-4f50-8a6b-7c8d9e0f1a2b`);
  if (new Set(macs.map((m) => m.toLowerCase())).size !== macs.length) throw usage('--mac values must differ: two NICs with one MAC on one bridge do not boot');
  const count = intFlag(str('vms'), 'vms', 0, 16, Math.max(1, macs.length, uuids.length));
  if (macs.length > count || uuids.length > count) throw usage(`${Math.max(macs.length, uuids.length)} --mac/--uuid values for --vms ${count}`);
  const attach = list('attach');
  for (const a of attach) if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(a)) throw usage(`--attach ${JSON.stringify(a)} is not an interface name`);
  const applianceArgs: string[] = [];
  for (const flag of LAB_PATH_FLAGS) {
    const value = str(flag);
    // The appliance runs with another working directory: hand it absolute paths.
    if (value !== undefined) applianceArgs.push(`--${flag}`, isAbsolute(value) ? value : resolve(cwd, value));
  }
  const token = str('api-token');
  if (token !== undefined) applianceArgs.push('--api-token', token);
  if (bool('test-os') && applianceArgs.length > 0)
    throw usage('--test-os uses a private database, assets and templates: drop --db/--assets/--templates/--tftp-root/--config/--api-token');
  const vms = Array.from({ length: count }, (_, i) => {
    const firmware = firmwares[i % firmwares.length] as Firmware;
    const mac = macs[i]?.toLowerCase();
    const uuid = uuids[i];
    return { name: `vm${i}-${firmware}`, firmware, ...definedFields({ mac, uuid }) };
  });
  // With no upstream DHCP server on the bridge, the appliance is the only one: server mode
  // (the last --dhcp-mode given to bin/appliance wins over the lab's default proxy).
  if (bool('no-upstream-dhcp')) applianceArgs.push('--dhcp-mode', 'server');
  const serialLog = str('serial-log');
  return {
    vms,
    memoryMiB: intFlag(str('memory'), 'memory', 128, 16384, 512),
    timeoutMs: intFlag(str('timeout'), 'timeout', 10, 7 * 24 * 3600, 3600) * 1000,
    serialLogDir: serialLog === undefined ? undefined : resolve(cwd, serialLog),
    quiet: bool('quiet'),
    testOs: bool('test-os'),
    applianceArgs,
    logLevel: str('log-level'),
    attach,
    upstreamDhcp: !bool('no-upstream-dhcp'),
    ipv6Router: !bool('no-ipv6-router'),
    ipv6: vms.some((vm) => vm.firmware === 'uefi-ipv6'),
    httpPort: intFlag(str('http-port'), 'http-port', 1, 65535, 8080),
    keep: bool('keep'),
  };
}
