import { existsSync, readFileSync } from 'node:fs';
import { createSilentLogger, type Logger } from '../log.js';
import { DEFAULT_CLOUD_CONFIG, type BootServer, type StartBootServer } from './baseline.js';
import { buildTestInitrd, MARKERS } from './initrd.js';
import { createLab, type Lab } from './netns.js';
import { startVm, type Firmware, type Vm, type VmOptions } from './qemu.js';

/** Options for {@link runBootScenario}. */
export interface BootScenarioOptions {
  firmware: Firmware;
  /** Starts the boot server under test in the lab (the dnsmasq baseline or the appliance). */
  startBootServer: StartBootServer;
  /** cloud-config body handed to the boot server (default {@link DEFAULT_CLOUD_CONFIG}). */
  cloudConfig?: string;
  /** VM settings: mac, uuid, memoryMiB, onSerial. */
  vm?: Omit<VmOptions, 'firmware' | 'timeoutMs' | 'log'>;
  /** How long the VM may take to fetch its cloud-config (default 4 minutes). */
  timeoutMs?: number;
  /** Run an IPv6 router on the lab network (see LabOptions.ipv6Router). Default false. */
  ipv6Router?: boolean;
  /** Keep the lab's work directory (serial and server logs) after the run. */
  keepWorkDir?: boolean;
  /** Called as soon as the lab exists, e.g. `(lab) => t.teardown(() => lab.destroy())`. */
  onLab?: (lab: Lab) => void;
  log?: Logger;
}

/** Console milestones of a boot, in order. */
export type BootPhase = 'ipxe' | 'bootScript' | 'kernel' | 'init' | 'dhcp' | 'cloudConfig';

/**
 * iPXE has started: its first line, or its banner. Both are needed: a serial console under TCG
 * load can drop characters while the firmware switches consoles (a CI run lost the first line
 * after OVMF's HTTP boot, and kept "k" of its "ok" and the banner after it).
 */
export const IPXE_STARTED = /iPXE initialising devices|iPXE [^\r\n]*-- Open Source Network Boot Firmware/;

const PHASE_PATTERNS: ReadonlyArray<[BootPhase, RegExp]> = [
  ['ipxe', IPXE_STARTED],
  // boot.ipxe is an operator template: the first thing iPXE fetches after it is the kernel.
  ['bootScript', /\[script\]/],
  ['kernel', /Linux version \d/],
  ['init', new RegExp(MARKERS.initStarted)],
  ['dhcp', new RegExp(MARKERS.dhcpBound)],
  ['cloudConfig', new RegExp(MARKERS.cloudConfigFetched)],
];

/** Seconds to every milestone the VM's console has shown so far. */
export function bootPhases(vm: Vm): Partial<Record<BootPhase, number>> {
  const out: Partial<Record<BootPhase, number>> = {};
  for (const [phase, re] of PHASE_PATTERNS) {
    const ms = vm.timeOf(re);
    if (ms !== undefined) out[phase] = ms / 1000;
  }
  return out;
}

/** What one boot through one boot server produced. */
export interface BootScenarioResult {
  firmware: Firmware;
  /** `BootServer.name` of the server under test. */
  server: string;
  mac: string;
  /** Seconds from QEMU start until the cloud-config was printed on the console. */
  secondsToCloudConfig: number;
  /**
   * Seconds from QEMU start to each milestone seen on the console (absent when not seen):
   * `ipxe` iPXE starts, `bootScript` boot.ipxe runs, `kernel` Linux starts, `init` /init runs,
   * `dhcp` the OS has its address, `cloudConfig` as above.
   */
  phases: Partial<Record<BootPhase, number>>;
  /** True when `/init` reached its final marker and QEMU exited with status 0 (poweroff). */
  poweredOff: boolean;
  /** The whole serial console. */
  serial: string;
  /** The plain upstream DHCP server's log. */
  upstreamLog: string;
  /** Contents of the boot server's `logPaths`, by the same names. */
  serverLogs: Record<string, string>;
  /** The lab work directory (deleted unless `keepWorkDir`). */
  workDir: string;
}

function readLogs(paths: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, path] of Object.entries(paths ?? {})) out[name] = existsSync(path) ? readFileSync(path, 'utf8') : '';
  return out;
}

/**
 * Boot one VM through one boot server in a fresh lab and measure it: create the lab, start
 * the server, start the VM, wait for `=== CLOUD-CONFIG FETCHED ===`, then for `/init` to power
 * off (bounded), collect logs, and tear everything down — also when any step fails.
 */
export async function runBootScenario(options: BootScenarioOptions): Promise<BootScenarioResult> {
  const log = options.log ?? createSilentLogger();
  const timeoutMs = options.timeoutMs ?? 240_000;
  const initrd = buildTestInitrd();
  const lab = await createLab({
    log,
    ...(options.keepWorkDir !== undefined ? { keepWorkDir: options.keepWorkDir } : {}),
    ...(options.ipv6Router !== undefined ? { ipv6Router: options.ipv6Router } : {}),
  });
  options.onLab?.(lab);
  let server: BootServer | undefined;
  let failed = true;
  let vm: Vm | undefined;
  try {
    server = await options.startBootServer(lab, {
      kernelPath: initrd.kernel.path,
      initrdPath: initrd.path,
      cloudConfig: options.cloudConfig ?? DEFAULT_CLOUD_CONFIG,
    });
    vm = await startVm(lab, { ...options.vm, firmware: options.firmware, timeoutMs: timeoutMs + 30_000, log });
    const fetched = await vm.waitFor(new RegExp(MARKERS.cloudConfigFetched), timeoutMs);
    // After the fetch /init posts its facts and powers off; give it a bounded moment.
    let poweredOff = false;
    try {
      await vm.waitFor(new RegExp(MARKERS.done), 30_000);
      const exit = await Promise.race([vm.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000).unref())]);
      poweredOff = exit?.code === 0;
    } catch {
      poweredOff = false;
    }
    const result: BootScenarioResult = {
      firmware: options.firmware,
      server: server.name,
      mac: vm.mac,
      secondsToCloudConfig: fetched.elapsedMs / 1000,
      phases: bootPhases(vm),
      poweredOff,
      serial: vm.serial(),
      upstreamLog: readFileSync(lab.upstreamLogPath, 'utf8'),
      serverLogs: readLogs(server.logPaths),
      workDir: lab.workDir,
    };
    log.info({ firmware: options.firmware, server: server.name, seconds: result.secondsToCloudConfig }, 'boot scenario finished');
    failed = false;
    return result;
  } catch (err) {
    // Keep the serial and server logs of a failed boot for diagnosis; say where they are.
    if (err instanceof Error) err.message += `\n(lab logs kept in ${lab.workDir})`;
    throw err;
  } finally {
    await vm?.kill();
    await server?.stop();
    await lab.destroy(failed ? { keepWorkDir: true } : {});
  }
}
