/**
 * The boot-file catalogue: every firmware family the appliance boots, the client architecture
 * codes that name it, and the network boot programs it is handed, with where Debian's packages
 * install them and where they can be downloaded. One table with one vocabulary (`Firmware`),
 * read by the DHCP decisions (dhcp/pxe.ts), the TFTP start-up check (tftp/boot-files.ts),
 * `appliance fetch ipxe` (fetch/ipxe.ts) and the VM lab. Pure data, no I/O.
 */

/** Firmware families the appliance hands a boot file to. */
export type Firmware = 'bios' | 'efi-ia32' | 'efi-x64' | 'efi-arm64';

/** Every firmware family, in the order logs and help list them. */
export const FIRMWARES: readonly Firmware[] = ['bios', 'efi-x64', 'efi-ia32', 'efi-arm64'];

/**
 * RFC 4578 section 2.1 / IANA "Processor Architecture Types" (option 93) we can boot, with
 * whether the code means UEFI HTTP boot (15, 16, 19: the client wants a URL, not a TFTP name).
 */
export const ARCHITECTURES: ReadonlyMap<number, { firmware: Firmware; http: boolean }> = new Map([
  [0, { firmware: 'bios', http: false }],
  [6, { firmware: 'efi-ia32', http: false }],
  [7, { firmware: 'efi-x64', http: false }],
  // 9 is "EFI x86-64" in RFC 4578 (errata: some firmwares send it instead of 7).
  [9, { firmware: 'efi-x64', http: false }],
  [11, { firmware: 'efi-arm64', http: false }],
  [15, { firmware: 'efi-ia32', http: true }],
  [16, { firmware: 'efi-x64', http: true }],
  [19, { firmware: 'efi-arm64', http: true }],
]);

/** PE/COFF machine type of each UEFI family (PE format spec, "Machine Types"); BIOS images are not PE. */
export const PE_MACHINE: Readonly<Record<Exclude<Firmware, 'bios'>, number>> = { 'efi-ia32': 0x014c, 'efi-x64': 0x8664, 'efi-arm64': 0xaa64 };

/** One network boot program the appliance can serve. */
export interface BootFileEntry {
  /** File name under the TFTP root (what DHCP hands out, and the name in HTTP boot URLs). */
  name: string;
  firmware: Firmware;
  /** The file DHCP hands this firmware unless the operator names another. One per firmware. */
  dhcpDefault: boolean;
  /** `fetch ipxe` fails while a required file is missing; optional ones are copied when found. */
  required: boolean;
  /** Candidate paths under each system directory (IPXE_SYSTEM_DIRS), first match wins. */
  systemNames: readonly string[];
  /** Path under the download mirror; undefined when it is never downloaded. */
  downloadPath: string | undefined;
  /** Why this build: shown in docs and logs. */
  note: string;
}

/** Where Debian/Ubuntu's `ipxe` package installs its builds. */
export const IPXE_SYSTEM_DIRS: readonly string[] = ['/usr/lib/ipxe', '/usr/share/ipxe'];

/**
 * The catalogue. `undionly.kpxe` and `snponly.efi` ship in Debian's `ipxe` package and are the
 * builds that booted SeaBIOS and OVMF in the lab (docs/NETBOOT-FACTS.md section 5); `snponly.efi` uses
 * the firmware's own NIC driver (SNP), so it works on any UEFI NIC. IA32 and ARM64 builds are
 * not packaged by Debian: the operator drops upstream iPXE's `bin-i386-efi/snponly.efi` /
 * `bin-arm64-efi/snponly.efi` under these flat names.
 */
export const BOOT_FILE_CATALOGUE: readonly BootFileEntry[] = [
  {
    name: 'undionly.kpxe',
    firmware: 'bios',
    dhcpDefault: true,
    required: true,
    systemNames: ['undionly.kpxe'],
    downloadPath: 'undionly.kpxe',
    note: "chainloads through the PXE ROM's UNDI driver: any NIC the BIOS can PXE boot from",
  },
  {
    name: 'ipxe.efi',
    firmware: 'efi-x64',
    dhcpDefault: false,
    required: true,
    systemNames: ['ipxe.efi'],
    downloadPath: 'ipxe.efi',
    note: "iPXE's own NIC drivers, for firmware whose SNP is broken",
  },
  {
    name: 'snponly.efi',
    firmware: 'efi-x64',
    dhcpDefault: true,
    required: true,
    systemNames: ['snponly.efi'],
    downloadPath: 'snponly.efi',
    note: "drives the NIC through the firmware's SNP protocol; proven under OVMF",
  },
  {
    name: 'snponly-arm64.efi',
    firmware: 'efi-arm64',
    dhcpDefault: true,
    required: false,
    systemNames: ['arm64-efi/snponly.efi', 'snponly-arm64.efi', 'snponly_arm64.efi'],
    downloadPath: undefined,
    note: 'ARM64 UEFI through SNP',
  },
  {
    name: 'ipxe-arm64.efi',
    firmware: 'efi-arm64',
    dhcpDefault: false,
    required: false,
    systemNames: ['arm64-efi/ipxe.efi', 'ipxe-arm64.efi', 'ipxe_arm64.efi'],
    downloadPath: undefined,
    note: 'ARM64 UEFI with iPXE drivers',
  },
  {
    name: 'snponly-ia32.efi',
    firmware: 'efi-ia32',
    dhcpDefault: true,
    required: false,
    systemNames: ['i386-efi/snponly.efi', 'snponly-ia32.efi'],
    downloadPath: undefined,
    note: 'not packaged by Debian: drop an upstream bin-i386-efi build here',
  },
];

/** Boot file per firmware family. */
export type BootFiles = Record<Firmware, string>;

/** The file DHCP hands each firmware by default (the catalogue's `dhcpDefault` entries). */
export const DEFAULT_BOOT_FILES: Readonly<BootFiles> = Object.freeze(
  Object.fromEntries(FIRMWARES.map((f) => [f, BOOT_FILE_CATALOGUE.find((e) => e.firmware === f && e.dhcpDefault)!.name])) as BootFiles,
);

/** True for a firmware family name. */
export function isFirmware(name: string): name is Firmware {
  return (FIRMWARES as readonly string[]).includes(name);
}

/** The catalogue entry named `name`, if any. */
export function catalogueEntry(name: string): BootFileEntry | undefined {
  return BOOT_FILE_CATALOGUE.find((e) => e.name === name);
}
