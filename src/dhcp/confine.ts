/**
 * Strict interface confinement by default: with `--interface IFACE`, the appliance runs itself
 * under scripts/bind-device, which opens the DHCP (67) and PXE boot-server (4011) sockets with
 * SO_BINDTODEVICE and hands them over as `--dhcp-fd N --proxy-fd M`. Node cannot bind a socket
 * to a device, so without this a broadcast DISCOVER reaching a multi-homed host on another
 * interface is still heard; with it the kernel never delivers it. This process stays as a thin
 * parent: it forwards SIGINT/SIGTERM/SIGHUP and exits with the child's code.
 * `--no-strict-interface` opts out; inherited descriptors (systemd BindToDevice=) need none of it.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { APPLIANCE_HOME, type Config } from '../config.js';

/** The helper that opens device-bound sockets (perl-base, Essential in Debian). */
export const BIND_DEVICE_SCRIPT = join(APPLIANCE_HOME, 'scripts', 'bind-device');

/** Whether to re-run under scripts/bind-device, and why (pure). */
export type ConfinementPlan = { confine: true; interface: string; dhcpPort: number; proxyPort: number } | { confine: false; reason: string };

/** Decide confinement from the settings. */
export function planConfinement(
  config: Pick<Config, 'interface' | 'dhcpMode' | 'noStrictInterface' | 'dhcpFd' | 'proxyFd' | 'dhcpPort' | 'proxyPort'>,
): ConfinementPlan {
  if (config.dhcpMode === 'off') return { confine: false, reason: 'dhcp is off' };
  if (config.interface === undefined) return { confine: false, reason: 'no --interface given' };
  if (config.noStrictInterface) return { confine: false, reason: '--no-strict-interface' };
  if (config.dhcpFd !== undefined || config.proxyFd !== undefined) return { confine: false, reason: 'dhcp sockets were inherited (--dhcp-fd/--proxy-fd)' };
  if (config.dhcpPort === 0 || config.proxyPort === 0) return { confine: false, reason: 'an ephemeral dhcp port cannot be pre-opened' };
  return { confine: true, interface: config.interface, dhcpPort: config.dhcpPort, proxyPort: config.proxyPort };
}

/**
 * Run `bin/appliance ARGV` under scripts/bind-device for the planned interface, stdio inherited;
 * resolves with its exit code (1 when bind-device itself failed, e.g. not root).
 */
export function runConfined(
  plan: Extract<ConfinementPlan, { confine: true }>,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  signals: NodeJS.EventEmitter,
): Promise<number> {
  const bin = join(APPLIANCE_HOME, 'bin', 'appliance');
  // Its own process group: a Ctrl-C or a group kill reaches it once, through this parent (two
  // signals would mean "exit without waiting"); bind-device asks the kernel to SIGTERM it
  // should this parent die first (PR_SET_PDEATHSIG), so it is never left holding port 67.
  const child = spawn('perl', [BIND_DEVICE_SCRIPT, plan.interface, process.execPath, bin, ...argv], {
    stdio: 'inherit',
    detached: true,
    env: { ...env, DHCP_PORT: String(plan.dhcpPort), PROXY_PORT: String(plan.proxyPort), BIND_DEVICE_PARENT_DEATH: 'TERM' },
  });
  const forward = (signal: NodeJS.Signals) => () => {
    child.kill(signal);
  };
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) signals.on(s, h);
  return new Promise((resolve) => {
    const done = (code: number): void => {
      for (const [s, h] of handlers) signals.off(s, h);
      resolve(code);
    };
    child.on('error', () => done(1));
    // bin/appliance exits 0, 1 or 2; anything else is bind-device's own failure (perl's die).
    child.on('exit', (code, signal) => done(code !== null && code <= 2 ? code : signal === 'SIGTERM' || signal === 'SIGINT' ? 0 : 1));
  });
}
