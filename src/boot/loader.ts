/**
 * Which boot loader a UEFI machine is handed, and as which file: a pure function of the
 * database, what DHCP saw (MAC, SMBIOS UUID, architecture, PXE or HTTP boot) and the
 * appliance-wide Secure Boot default. Table-tested in test/boot/loader.test.ts.
 *
 * Facts behind the rules (docs/NETBOOT-FACTS.md section 7, booted here under OVMF/AAVMF):
 *  - Secure Boot firmware runs only signed images: unsigned iPXE is refused ("Access Denied").
 *    Debian's `shim-signed` (signed by Microsoft) loads `grubx64.efi` / `grubaa64.efi` from the
 *    directory it came from, and that must be Debian's signed network grub.
 *  - Debian 12's signed grub has no http module: it reads its config, kernel and initrd over
 *    TFTP only, and loaded by UEFI HTTP boot it stalls at `grub>`. So grub (signed or not) is
 *    only ever handed to PXE (TFTP) clients; an HTTP boot client that must run grub is not
 *    answered, with the reason logged, so its firmware moves on to PXE.
 *  - Debian ships no ARM64 iPXE: ARM64 machines get grub unless a record says `ipxe` (the
 *    operator then provides `snponly-arm64.efi`).
 *  - BIOS machines always get iPXE (`undionly.kpxe`): grub's BIOS network image is not built.
 */
import type { Db, Facts, Group, Machine, Profile } from '../store/schema.js';
import { selectProfile } from '../store/select.js';

/** Boot loader kinds. */
export type BootLoader = 'ipxe' | 'grub';

/** Firmware families the DHCP side knows (src/dhcp/pxe.ts `Firmware`). */
export type LoaderFirmware = 'bios' | 'efi-ia32' | 'efi-x64' | 'efi-arm64';

/** Signed shim and grub file names per UEFI architecture (shim looks for grub beside itself). */
export const SIGNED_FILES: Readonly<Record<'efi-x64' | 'efi-arm64', { shim: string; grub: string; grubCpu: string }>> = {
  'efi-x64': { shim: 'shimx64.efi', grub: 'grubx64.efi', grubCpu: 'x86_64' },
  'efi-arm64': { shim: 'shimaa64.efi', grub: 'grubaa64.efi', grubCpu: 'arm64' },
};

/** iPXE `${buildarch}` for a firmware family: what group `arch` selectors match. */
export function buildArchOf(firmware: LoaderFirmware): string {
  return firmware === 'efi-arm64' ? 'arm64' : firmware === 'efi-x64' ? 'x86_64' : 'i386';
}

/** What the DHCP side knows about a client. */
export interface LoaderQuery {
  mac: string;
  uuid?: string | undefined;
  firmware: LoaderFirmware;
  /** `pxe`: firmware PXE (TFTP); `http`: UEFI HTTP boot. iPXE clients never reach here. */
  client: 'pxe' | 'http';
  /**
   * The machine's verified facts, for groups' fact selectors: the whole report for grub's
   * scripts, the projection onto the selectors' paths at DHCP time (store/facts-index.ts),
   * which selects the same group. Never unverified facts.
   */
  facts?: Facts | undefined;
}

/** The loader decision for one client. */
export type LoaderChoice =
  | {
      kind: 'boot';
      loader: BootLoader;
      secureBoot: boolean;
      /** The file DHCP names (TFTP name for PXE); undefined = the default iPXE file for the firmware. */
      file: string | undefined;
      /** Why this loader (for the log): which record set it. */
      source: string;
    }
  | { kind: 'refuse'; loader: BootLoader; secureBoot: boolean; reason: string };

/** First defined value in a chain of records, with which record it came from. */
function pick<T>(chain: ReadonlyArray<[string, T | undefined]>): { value: T; from: string } | undefined {
  for (const [from, value] of chain) if (value !== undefined) return { value, from };
  return undefined;
}

/** The records that may carry `bootloader` / `secureBoot` for a client, most specific first. */
function recordsFor(db: Db, query: LoaderQuery): { machine?: Machine; group?: Group; profile?: Profile } {
  const selection = selectProfile(db, { mac: query.mac, uuid: query.uuid, arch: buildArchOf(query.firmware), facts: query.facts });
  return {
    ...(selection.machine ? { machine: selection.machine } : {}),
    ...(selection.group ? { group: selection.group } : {}),
    ...(selection.kind === 'profile' ? { profile: selection.profile } : {}),
  };
}

/**
 * Choose the loader for a firmware client. Machine record wins over its group, the group over
 * the profile, the profile over the appliance default (`secureBootDefault`, and `ipxe` except
 * on ARM64).
 */
export function chooseLoader(db: Db, query: LoaderQuery, secureBootDefault: boolean): LoaderChoice {
  const { machine, group, profile } = recordsFor(db, query);
  const where = (from: string): string =>
    from === 'machine' ? `machine ${machine?.mac}` : from === 'group' ? `group ${group?.id}` : from === 'profile' ? `profile ${profile?.id}` : from;
  if (query.firmware === 'bios' || query.firmware === 'efi-ia32') {
    return { kind: 'boot', loader: 'ipxe', secureBoot: false, file: undefined, source: 'bios and ia32 boot ipxe' };
  }
  const sb = pick<boolean>([
    ['machine', machine?.secureBoot],
    ['group', group?.secureBoot],
    ['profile', profile?.secureBoot],
    ['--secure-boot', secureBootDefault],
  ])!;
  const chosen = pick<BootLoader>([
    ['machine', machine?.bootloader],
    ['group', group?.bootloader],
    ['profile', profile?.bootloader],
  ]);
  const files = SIGNED_FILES[query.firmware];
  if (sb.value) {
    if (chosen?.value === 'ipxe') {
      // A record asks for iPXE and Secure Boot at once: unsigned iPXE would be refused.
      return {
        kind: 'refuse',
        loader: 'ipxe',
        secureBoot: true,
        reason: `${where(chosen.from)} asks for ipxe but secure boot is on (${where(sb.from)}): secure boot firmware refuses unsigned ipxe; set bootloader grub or secureBoot false`,
      };
    }
    if (query.client === 'http') {
      return {
        kind: 'refuse',
        loader: 'grub',
        secureBoot: true,
        reason: `secure boot (${where(sb.from)}) over uefi http boot needs a signed grub with http support, and debian's signed grub has none: not answering this http boot request so the firmware falls back to pxe (tftp), where shim and grub work`,
      };
    }
    return { kind: 'boot', loader: 'grub', secureBoot: true, file: files.shim, source: `secure boot from ${where(sb.from)}` };
  }
  const loader = chosen?.value ?? (query.firmware === 'efi-arm64' ? 'grub' : 'ipxe');
  const source = chosen ? where(chosen.from) : query.firmware === 'efi-arm64' ? 'arm64 default (no arm64 ipxe in debian)' : 'default';
  if (loader === 'ipxe') return { kind: 'boot', loader, secureBoot: false, file: undefined, source };
  if (query.client === 'http') {
    return {
      kind: 'refuse',
      loader,
      secureBoot: false,
      reason: `grub (${source}) cannot be http booted: debian's signed grub has no http module; not answering so the firmware falls back to pxe (tftp)`,
    };
  }
  return { kind: 'boot', loader, secureBoot: false, file: files.grub, source };
}

/**
 * Option 97's GUID (RFC 4578 section 2.3) as the 8-4-4-4-12 text iPXE, dmidecode and machine
 * records use: firmware copies the SMBIOS UUID, whose first three fields are little-endian
 * (SMBIOS 2.6 section 7.2.1). `raw` is the whole option (type octet 0, then 16 octets).
 */
export function dhcpUuidText(raw: Uint8Array): string | undefined {
  if (raw.length !== 17 || raw[0] !== 0) return undefined;
  const b = Buffer.from(raw.subarray(1));
  const hex = (from: number, to: number, swap: boolean): string => {
    const part = b.subarray(from, to);
    return Buffer.from(swap ? [...part].reverse() : part).toString('hex');
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`;
}
