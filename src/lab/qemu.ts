import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ApplianceError } from '../errors.js';
import { createSilentLogger, type Logger } from '../log.js';
import type { Lab } from './netns.js';
import type { ManagedProcess, ProcessExit } from './process.js';

/**
 * Firmware of a lab VM (docs/NETBOOT-FACTS.md sections 5 and 7):
 * - `bios`: SeaBIOS + QEMU's iPXE option ROM;
 * - `uefi`: OVMF with EDK2's own PXE (arch 7);
 * - `uefi-http`: OVMF with only its HTTP boot options (PXEv4/v6 switched off by fw_cfg, else
 *   HTTPv4 is reached after ~132 s of PXE timeouts); DHCP vendor class `HTTPClient`, arch 16;
 * - `uefi-secureboot`: OVMF built with Secure Boot (q35, SMM) and Microsoft's keys enrolled:
 *   only signed code runs (shim, Debian's signed grub and kernel);
 * - `arm64`: AAVMF under qemu-system-aarch64 `-M virt` (arch 11), TCG;
 * - `uefi-ipv6`: OVMF with only PXEv6 (DHCPv6 option 59 boot-file URL).
 */
export type Firmware = keyof typeof FIRMWARE_HELP;

/**
 * Every lab firmware with its line in `lab --help`, in the order the lab command lists them:
 * the one list `--firmware` is checked against and its help is generated from. A new firmware
 * is a line here and its case in startVm().
 */
export const FIRMWARE_HELP = {
  bios: 'SeaBIOS + iPXE ROM',
  uefi: 'OVMF with its own PXE',
  'uefi-http': 'OVMF HTTP boot only (PXE off)',
  'uefi-secureboot': 'OVMF with Secure Boot on (Microsoft keys; needs fetch secureboot and secureBoot set, see README)',
  arm64: 'AAVMF under qemu-system-aarch64 (grub)',
  'uefi-ipv6': 'OVMF PXEv6 only; the lab gets IPv6 and the appliance DHCPv6 (proxy beside dnsmasq, server with --no-upstream-dhcp)',
} as const satisfies Record<string, string>;

/** Every lab firmware, in the order the lab command lists them. */
export const FIRMWARES = Object.keys(FIRMWARE_HELP) as readonly Firmware[];

/** OVMF images (Debian `ovmf`): 4M CODE read-only, VARS copied per VM. */
export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
/** Template of the per-VM UEFI variable store. */
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
/** OVMF with Secure Boot support (needs q35 + SMM + a secure pflash). */
export const OVMF_CODE_SECBOOT = '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd';
/** Variable store with Microsoft's keys enrolled and Secure Boot on. */
export const OVMF_VARS_MS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';
/** ARM64 UEFI (Debian `qemu-efi-aarch64`). */
export const AAVMF_CODE = '/usr/share/AAVMF/AAVMF_CODE.fd';
/** Template of the ARM64 variable store. */
export const AAVMF_VARS = '/usr/share/AAVMF/AAVMF_VARS.fd';
/** The QEMU system emulator. */
export const QEMU_BINARY = 'qemu-system-x86_64';
/** The ARM64 system emulator (Debian `qemu-system-arm`). */
export const QEMU_ARM64_BINARY = 'qemu-system-aarch64';

/** The emulator a firmware runs under. */
export function qemuBinaryFor(firmware: Firmware): string {
  return firmware === 'arm64' ? QEMU_ARM64_BINARY : QEMU_BINARY;
}

/** Code and variable-store template of a UEFI firmware; undefined for BIOS. */
export function firmwareImages(firmware: Firmware): { code: string; vars: string } | undefined {
  if (firmware === 'bios') return undefined;
  if (firmware === 'arm64') return { code: AAVMF_CODE, vars: AAVMF_VARS };
  if (firmware === 'uefi-secureboot') return { code: OVMF_CODE_SECBOOT, vars: OVMF_VARS_MS };
  return { code: OVMF_CODE, vars: OVMF_VARS };
}

/** Options for {@link startVm}. */
export interface VmOptions {
  firmware: Firmware;
  /** NIC MAC address; random locally administered 52:54:00:xx:xx:xx when omitted. */
  mac?: string;
  /** SMBIOS UUID (`-uuid`): EDK2 sends it as DHCP option 97. */
  uuid?: string;
  /** Guest memory in MiB (default 512). */
  memoryMiB?: number;
  /** Hard limit: the VM is killed after this long (default 4 minutes). */
  timeoutMs?: number;
  /** Name used in file names and logs (default `vm-MAC`). */
  name?: string;
  /** Extra QEMU arguments appended last. */
  extraArgs?: readonly string[];
  /** Called with every chunk of serial output (e.g. to show the console live). */
  onSerial?: (chunk: Buffer) => void;
  log?: Logger;
}

/** Result of {@link Vm.waitFor}. */
export interface WaitResult {
  /** The regex match against the whole serial log so far. */
  match: RegExpExecArray;
  /** Milliseconds from VM start until the matching output arrived. */
  elapsedMs: number;
}

/** A running lab VM. */
export interface Vm {
  readonly name: string;
  readonly mac: string;
  readonly firmware: Firmware;
  readonly tap: string;
  /** The serial console, appended as it arrives. */
  readonly serialLogPath: string;
  /** QEMU's own stderr. */
  readonly qemuLogPath: string;
  /** performance.now() when QEMU was spawned. */
  readonly startedAt: number;
  /** Resolves when QEMU exits (poweroff, -no-reboot on reset, kill or hard timeout). */
  readonly exited: Promise<ProcessExit>;
  /** The serial output so far (control characters kept). */
  serial(): string;
  /**
   * Milliseconds from VM start until the serial output that first matched `pattern` arrived
   * (to the chunk), or undefined when it has not appeared. Used to split a boot into phases.
   */
  timeOf(pattern: RegExp): number | undefined;
  /**
   * Wait until the serial log matches `pattern`. Rejects with `ERR_LAB_TIMEOUT` after
   * `timeoutMs`, or `ERR_LAB_VM_EXITED` if QEMU exits first; both carry the log tail.
   */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<WaitResult>;
  /** Kill QEMU (idempotent); resolves when it is gone. */
  kill(): Promise<void>;
  /**
   * Why QEMU was stopped from outside: `kill` (kill() was called), `timeout` (the hard
   * timeout), or undefined when it exited by itself. QEMU exits 0 on SIGTERM too, so only an
   * exit code 0 with no stop reason is a guest poweroff.
   */
  stoppedBy(): 'kill' | 'timeout' | undefined;
}

/** A random MAC in QEMU's locally administered 52:54:00 range. */
export function randomMac(): string {
  const b = randomBytes(3);
  return ['52', '54', '00', ...[...b].map((x) => x.toString(16).padStart(2, '0'))].join(':');
}

function tail(text: string, lines = 25): string {
  return text.split(/\r?\n/).slice(-lines).join('\n');
}

/**
 * Build the QEMU argument list. BIOS: SeaBIOS runs QEMU's iPXE option ROM for virtio-net
 * (the client is iPXE from the first DHCP packet). UEFI: OVMF with `romfile=` empty so EDK2's
 * own PXE (arch 7) boots, as on most real UEFI machines (docs/NETBOOT-FACTS.md section 5).
 */
export function buildQemuArgs(o: {
  firmware: Firmware;
  tap: string;
  mac: string;
  memoryMiB: number;
  uuid?: string;
  varsPath?: string;
  extraArgs?: readonly string[];
}): string[] {
  const nic = [`virtio-net-pci`, `netdev=n0`, `mac=${o.mac}`, `bootindex=1`];
  const args = [
    '-accel',
    'tcg', // KVM guests hang on this host (docs/NETBOOT-FACTS.md section 5)
    ...(o.firmware === 'arm64' ? ['-M', 'virt', '-cpu', 'cortex-a57'] : []),
    // The Secure Boot build of OVMF requires SMM, which needs q35 and a secure pflash.
    ...(o.firmware === 'uefi-secureboot' ? ['-machine', 'q35,smm=on', '-global', 'driver=cfi.pflash01,property=secure,value=on'] : []),
    '-m',
    String(o.memoryMiB),
    '-smp',
    '1',
    // -nographic makes SeaBIOS mirror its and iPXE's text console onto the serial port (sercon).
    '-nographic',
    '-monitor',
    'none',
    '-serial',
    'stdio',
    '-no-reboot',
    '-netdev',
    `tap,id=n0,ifname=${o.tap},script=no,downscript=no`,
  ];
  const images = firmwareImages(o.firmware);
  if (images) {
    if (!o.varsPath) throw new ApplianceError('ERR_LAB_CONFIG', 'uefi vm needs a VARS copy');
    args.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${images.code}`, '-drive', `if=pflash,format=raw,unit=1,file=${o.varsPath}`);
    // No iPXE option ROM: the firmware's own network stack boots (EDK2 PXE / HTTP boot).
    nic.push('romfile=');
  }
  // OVMF cannot order a NIC's PXEv4/PXEv6/HTTPv4/HTTPv6 options by bootindex; switching the
  // PXE stacks off in fw_cfg leaves the wanted ones (docs/NETBOOT-FACTS.md section 7).
  if (o.firmware === 'uefi-http') {
    args.push('-fw_cfg', 'name=opt/org.tianocore/IPv4PXESupport,string=n', '-fw_cfg', 'name=opt/org.tianocore/IPv6PXESupport,string=n');
  }
  if (o.firmware === 'uefi-ipv6') args.push('-fw_cfg', 'name=opt/org.tianocore/IPv4PXESupport,string=n');
  args.push('-device', nic.join(','));
  if (o.uuid) args.push('-uuid', o.uuid);
  args.push(...(o.extraArgs ?? []));
  return args;
}

/**
 * Start a VM on a new tap of `lab`, inside the lab namespace. The VM is killed when it
 * exceeds `timeoutMs` and when the lab is destroyed.
 */
export async function startVm(lab: Lab, options: VmOptions): Promise<Vm> {
  const log = (options.log ?? createSilentLogger()).child({ subsystem: 'lab-vm' });
  const mac = (options.mac ?? randomMac()).toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac)) {
    throw new ApplianceError('ERR_LAB_CONFIG', `mac ${mac} is not of the form 52:54:00:12:34:56`);
  }
  if (options.uuid !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(options.uuid)) {
    throw new ApplianceError('ERR_LAB_CONFIG', `uuid ${options.uuid} is not of the form 8f9a2b3c-1d2e-4f50-8a6b-7c8d9e0f1a2b`);
  }
  const name = options.name ?? `vm-${mac.replace(/:/g, '')}`;
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
    throw new ApplianceError('ERR_LAB_CONFIG', `vm name ${JSON.stringify(name)} may only use letters, digits, . _ -`);
  }
  // The arm64 kernel is an uncompressed 27 MB Image: give AAVMF the 1 GiB the recipes used.
  const memoryMiB = options.memoryMiB ?? (options.firmware === 'arm64' ? 1024 : 512);
  const timeoutMs = options.timeoutMs ?? 240_000;
  let varsPath: string | undefined;
  const images = firmwareImages(options.firmware);
  if (images) {
    for (const f of [images.code, images.vars]) {
      if (!existsSync(f)) throw new ApplianceError('ERR_LAB_PREREQ', `${f} is missing; install ${options.firmware === 'arm64' ? 'qemu-efi-aarch64' : 'ovmf'}`);
    }
    varsPath = join(lab.workDir, `${name}-VARS.fd`);
    copyFileSync(images.vars, varsPath);
  }
  const tap = await lab.addTap();
  const serialLogPath = join(lab.workDir, `${name}.serial.log`);
  const qemuLogPath = join(lab.workDir, `${name}.qemu.log`);
  writeFileSync(serialLogPath, '');
  const args = buildQemuArgs({
    firmware: options.firmware,
    tap,
    mac,
    memoryMiB,
    ...(options.uuid ? { uuid: options.uuid } : {}),
    ...(varsPath ? { varsPath } : {}),
    ...(options.extraArgs ? { extraArgs: options.extraArgs } : {}),
  });

  let text = '';
  const waiters = new Set<() => void>();
  const startedAt = performance.now();
  const proc: ManagedProcess = lab.spawn(qemuBinaryFor(options.firmware), args, { stdoutPath: serialLogPath, stderrPath: qemuLogPath, label: `qemu ${name}` });
  // Arrival time of each chunk, by the offset in `text` where it ends.
  const arrivals: Array<{ end: number; ms: number }> = [];
  proc.onStdout((chunk) => {
    text += chunk.toString('latin1');
    arrivals.push({ end: text.length, ms: performance.now() - startedAt });
    options.onSerial?.(chunk);
    for (const w of [...waiters]) w();
  });
  let stoppedBy: 'kill' | 'timeout' | undefined;
  const hardTimer = setTimeout(() => {
    stoppedBy ??= 'timeout';
    log.warn({ name, mac, timeoutMs }, 'vm exceeded its hard timeout; killing it');
    void proc.stop(1000);
  }, timeoutMs);
  hardTimer.unref();
  let exitedFlag = false;
  const exited = proc.exited.then((status) => {
    clearTimeout(hardTimer);
    exitedFlag = true;
    for (const w of [...waiters]) w();
    return status;
  });
  log.info({ name, mac, firmware: options.firmware, tap, netns: lab.netns }, 'vm started');

  const waitFor = (pattern: RegExp, waitMs: number): Promise<WaitResult> =>
    new Promise((resolve, reject) => {
      const re = new RegExp(pattern.source, pattern.flags.replace('g', ''));
      let timer: NodeJS.Timeout | undefined;
      const check = () => {
        const match = re.exec(text);
        if (match) {
          done();
          resolve({ match, elapsedMs: performance.now() - startedAt });
          return;
        }
        if (exitedFlag) {
          done();
          reject(
            new ApplianceError('ERR_LAB_VM_EXITED', `vm ${name} exited before its console matched ${re}; last lines:\n${tail(text)}`, {
              name,
              serialLogPath,
              qemuLogPath,
            }),
          );
        }
      };
      const done = () => {
        waiters.delete(check);
        if (timer) clearTimeout(timer);
      };
      timer = setTimeout(() => {
        done();
        reject(
          new ApplianceError('ERR_LAB_TIMEOUT', `vm ${name} console did not match ${re} within ${waitMs} ms; last lines:\n${tail(text)}`, {
            name,
            serialLogPath,
            qemuLogPath,
          }),
        );
      }, waitMs);
      waiters.add(check);
      check();
    });

  return {
    name,
    mac,
    firmware: options.firmware,
    tap,
    serialLogPath,
    qemuLogPath,
    startedAt,
    exited,
    serial: () => text,
    timeOf: (pattern) => {
      const m = new RegExp(pattern.source, pattern.flags.replace('g', '')).exec(text);
      if (!m) return undefined;
      const last = m.index + m[0].length;
      return arrivals.find((a) => a.end >= last)?.ms;
    },
    waitFor,
    kill: async () => {
      if (!exitedFlag) stoppedBy ??= 'kill';
      await proc.stop(1000);
    },
    stoppedBy: () => stoppedBy,
  };
}
