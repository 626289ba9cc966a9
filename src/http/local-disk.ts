/**
 * The built-in `local-disk` profile's iPXE script: leave network boot for the machine's disk.
 *
 * - UEFI: `exit 1` returns to the firmware's boot manager with a failure status, so it tries
 *   the next boot option (the disk after the NIC). The status matters: EDK2's BdsDxe stops at
 *   its boot menu (UiApp) when a boot option returns EFI_SUCCESS, which a bare `exit` (status
 *   0) is; test/e2e/bmc-provisioning.test.ts saw exactly that under OVMF. sanboot of a local
 *   disk does not exist under UEFI iPXE.
 * - BIOS: `sanboot --no-describe --drive 0x80` boots the first hard disk's MBR through INT 13h.
 *   A plain `exit` hands back to the BIOS, which on many machines (and when the NIC is the last
 *   boot device) stops with "no bootable device" instead of trying the disk; `exit` stays the
 *   fallback when drive 0x80 cannot be booted (no disk, no boot sector).
 * The platform comes from iPXE itself (`${platform}`), so the script is right even when the
 * request did not say.
 */
import { ipxeEchoText } from './render.js';

/** The script for `mac` (already a canonical MAC). */
export function renderLocalDiskScript(mac: string): string {
  const who = ipxeEchoText(mac);
  return `${[
    '#!ipxe',
    `# netboot-appliance: profile local-disk for ${who} (built in): boot the next device`,
    `echo netboot-appliance: ${who} boots from its local disk`,
    'iseq ${platform} efi && goto netboot-efi ||',
    'sanboot --no-describe --drive 0x80 ||',
    'echo netboot-appliance: no bootable disk at BIOS drive 0x80, returning to the firmware',
    'exit',
    ':netboot-efi',
    'exit 1',
  ].join('\n')}\n`;
}
