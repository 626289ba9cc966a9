import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ApplianceError } from '../errors.js';
import { findTestKernel } from './initrd.js';
import { AAVMF_CODE, AAVMF_VARS, OVMF_CODE, OVMF_CODE_SECBOOT, OVMF_VARS, OVMF_VARS_MS, QEMU_ARM64_BINARY, QEMU_BINARY, type Firmware } from './qemu.js';
import { DEFAULT_BOOT_FILES } from '../boot-catalogue.js';
import { IPXE_DIR } from './baseline.js';

/** One missing prerequisite and the Debian package (or action) that provides it. */
export interface MissingPrerequisite {
  what: string;
  fix: string;
}

function onPath(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      // Try the next directory.
    }
  }
  return false;
}

/**
 * List what the VM lab needs and is missing on this host: root, /dev/net/tun, iproute2, qemu,
 * OVMF, iPXE binaries, dnsmasq, static busybox and a Debian kernel with modules.
 * `firmware` limits the check to what one firmware needs.
 */
export function checkLabPrerequisites(firmware: 'bios' | 'uefi' | 'both' = 'both', more: readonly Firmware[] = []): MissingPrerequisite[] {
  const missing: MissingPrerequisite[] = [];
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    missing.push({ what: 'root (network namespaces and taps)', fix: 'run as root' });
  }
  if (!existsSync('/dev/net/tun')) missing.push({ what: '/dev/net/tun', fix: 'load the tun module / expose /dev/net/tun' });
  const cmds: Array<[string, string]> = [
    ['ip', 'iproute2'],
    [QEMU_BINARY, 'qemu-system-x86'],
    ['dnsmasq', 'dnsmasq-base'],
  ];
  for (const [cmd, pkg] of cmds) if (!onPath(cmd)) missing.push({ what: cmd, fix: `apt-get install ${pkg}` });
  const files: Array<[string, string]> = [
    ['/bin/busybox', 'busybox-static'],
    [join(IPXE_DIR, DEFAULT_BOOT_FILES.bios), 'ipxe'],
  ];
  if (firmware !== 'uefi') files.push(['/usr/lib/ipxe/qemu/efi-virtio.rom', 'ipxe-qemu']);
  if (firmware !== 'bios') files.push([join(IPXE_DIR, DEFAULT_BOOT_FILES['efi-x64']), 'ipxe'], [OVMF_CODE, 'ovmf'], [OVMF_VARS, 'ovmf']);
  if (more.includes('uefi-secureboot')) files.push([OVMF_CODE_SECBOOT, 'ovmf'], [OVMF_VARS_MS, 'ovmf']);
  if (more.includes('arm64')) {
    files.push([AAVMF_CODE, 'qemu-efi-aarch64'], [AAVMF_VARS, 'qemu-efi-aarch64']);
    if (!onPath(QEMU_ARM64_BINARY)) missing.push({ what: QEMU_ARM64_BINARY, fix: 'apt-get install qemu-system-arm' });
  }
  for (const [file, pkg] of files) if (!existsSync(file)) missing.push({ what: file, fix: `apt-get install ${pkg}` });
  try {
    findTestKernel();
  } catch {
    missing.push({ what: '/boot/vmlinuz-* with /lib/modules', fix: 'apt-get install linux-image-cloud-amd64' });
  }
  return missing;
}

/**
 * Throw `ERR_LAB_PREREQ` listing every missing prerequisite. Tests call this so that a CI
 * host without them fails loudly instead of skipping.
 */
export function assertLabPrerequisites(firmware: 'bios' | 'uefi' | 'both' = 'both', more: readonly Firmware[] = []): void {
  const missing = checkLabPrerequisites(firmware, more);
  if (missing.length > 0) {
    const list = missing.map((m) => `${m.what} (${m.fix})`).join('; ');
    throw new ApplianceError('ERR_LAB_PREREQ', `vm lab prerequisites missing: ${list}`, { missing });
  }
}
