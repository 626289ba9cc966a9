/**
 * The built-in `local-disk` profile's iPXE script: leave network boot for the machine's disk.
 *
 * - UEFI: `exit` returns to the firmware's boot manager, which tries the next boot option
 *   (the disk after the NIC). sanboot of a local disk does not exist under UEFI iPXE.
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
    'iseq ${platform} efi && goto netboot-exit ||',
    'sanboot --no-describe --drive 0x80 ||',
    'echo netboot-appliance: no bootable disk at BIOS drive 0x80, returning to the firmware',
    ':netboot-exit',
    'exit',
  ].join('\n')}\n`;
}
