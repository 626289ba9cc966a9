/**
 * grub scripts, rendered per machine exactly as iPXE scripts are (same profile, kernel, initrd
 * and command line, same validation, same retry-with-a-message when something is missing).
 *
 * How Debian's signed network grub (`grubnetx64.efi.signed`, `grubnetaa64.efi.signed`) finds
 * them (docs/NETBOOT-FACTS.md section 7): it does no DHCP of its own; its built-in prefix is
 * `(tftp,NEXT-SERVER)/grub`, so it reads `/grub/grub.cfg` over TFTP from the server in the DHCP
 * ACK's siaddr. That fixed file (`renderGrubEntry`) sources the per-machine script
 * `/grub/machines/${grub_cpu}/${net_default_mac}.cfg`, which names the kernel and initrds as
 * `(tftp,ADDRESS)/assets/...`: the signed grub has no http module, so everything is TFTP.
 *
 * Every value placed in a script is first checked to be one iPXE-safe token (no whitespace,
 * quotes, `$`, `#`, `|`, `&`, `;`) and then single-quoted, which grub's lexer takes literally.
 */
import { ApplianceError } from '../errors.js';
import { assertIpxeSafe, buildCmdline, initrdNames, placeholderValues, type BootRequest, type ServerAddress } from '../http/render.js';
import type { Machine, Profile } from '../store/schema.js';
import type { SelectedVia } from '../store/select.js';

/** The template a profile's grub script is rendered from unless it names another. */
export const DEFAULT_GRUB_TEMPLATE = 'profile.grub.njk';

/** TFTP directory of the per-machine scripts, below the grub prefix. */
export const GRUB_MACHINES_DIR = 'grub/machines';

/** `'value'` after checking it is one iPXE-safe token (so it holds no quote to break out of). */
export function grubQuote(value: string, what = 'value'): string {
  return `'${assertIpxeSafe(value, what)}'`;
}

/** A message for grub's `echo`, single-quoted: quotes, `$` and control characters removed. */
export function grubEchoText(message: string): string {
  const text = message
    .replace(/[^A-Za-z0-9 .,:/_=()\-"@+?!*[\]<>%~^]/g, '?')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 300);
  return `'${text}'`;
}

/** The TFTP path of a machine's script (what `renderGrubEntry` sources), without a leading slash. */
export function grubMachinePath(grubCpu: string, mac: string): string {
  return `${GRUB_MACHINES_DIR}/${grubCpu}/${mac}.cfg`;
}

/** Parse `grub/machines/CPU/MAC.cfg`; undefined for any other name. */
export function parseGrubMachinePath(name: string): { grubCpu: string; mac: string } | undefined {
  const m = /^grub\/machines\/([a-z0-9_]{1,16})\/([0-9a-f]{2}(?::[0-9a-f]{2}){5})\.cfg$/.exec(name.toLowerCase());
  return m ? { grubCpu: m[1]!, mac: m[2]! } : undefined;
}

/** `(tftp,ADDRESS)` — the device every grub path on this appliance starts with. */
export function tftpDevice(server: ServerAddress): string {
  return `(tftp,${assertIpxeSafe(server.address, 'server address')})`;
}

/**
 * `/grub/grub.cfg`, grub's built-in first file: names the machine, then sources its own script.
 * If that returns (no script, or it failed), it waits and reloads itself, so fixing the database
 * or adding the assets is enough for a waiting machine to boot.
 */
export function renderGrubEntry(server: ServerAddress, retrySeconds = 20): string {
  const dev = tftpDevice(server);
  return [
    '# netboot-appliance: grub entry (Debian signed network grub reads /grub/grub.cfg over TFTP)',
    'set timeout=0',
    `echo "netboot-appliance: grub on $net_default_mac ($net_default_ip), $grub_cpu-$grub_platform"`,
    `source ${dev}/${GRUB_MACHINES_DIR}/$grub_cpu/$net_default_mac.cfg`,
    `echo ${grubEchoText(`no boot script for this machine was served; retrying in ${retrySeconds} seconds`)}`,
    `sleep ${retrySeconds}`,
    `configfile ${dev}/grub/grub.cfg`,
    '',
  ].join('\n');
}

/** A script that prints why the machine cannot boot yet, waits and starts over. */
export function renderGrubRetry(server: ServerAddress, message: string, retrySeconds = 20): string {
  return [
    '# netboot-appliance: this machine cannot boot yet; see the message below.',
    `echo ${grubEchoText(`netboot-appliance: ${message}`)}`,
    `echo ${grubEchoText(`netboot-appliance: retrying in ${retrySeconds} seconds`)}`,
    `sleep ${retrySeconds}`,
    `configfile ${tftpDevice(server)}/grub/grub.cfg`,
    '',
  ].join('\n');
}

/** One boot file as grub reads it: `(tftp,ADDRESS)/assets/PATH`. */
export interface GrubFile {
  path: string;
  /** The `/assets/...` source. */
  asset: string;
  name: string;
}

/** Everything a grub template gets. Every string is safe to place as it is. */
export interface GrubContext {
  mac: string;
  uuid: string;
  arch: string;
  hostname: string;
  address: string;
  port: number;
  base_url: string;
  profile: { id: string; name: string };
  via: SelectedVia;
  secure_boot: boolean;
  kernel: GrubFile;
  initrds: GrubFile[];
  /** The kernel arguments, each single-quoted, joined by spaces. */
  kernel_args: string;
  /** The initrd paths joined by spaces (one grub `initrd` line loads them all). */
  initrd_paths: string;
  /** `(tftp,ADDRESS)/grub/grub.cfg`, for retry loops (`configfile`). */
  retry_path: string;
  retry_seconds: number;
}

/** A kernel or initrd source as a grub TFTP path; http(s) URLs are refused (no http module). */
function grubFile(server: ServerAddress, source: string, name: string, profileId: string): GrubFile {
  if (!source.startsWith('/assets/')) {
    throw new ApplianceError(
      'ERR_GRUB_SOURCE',
      `profile ${profileId}: ${source.slice(0, 80)} is a url, but debian's signed grub fetches over tftp only (no http module); put the file under the assets directory and name it /assets/...`,
      { profile: profileId },
    );
  }
  return { path: `${tftpDevice(server)}${assertIpxeSafe(source, 'boot file path')}`, asset: source, name };
}

/** Build the grub template context; throws ERR_UNSAFE_VALUE / ERR_TEMPLATE / ERR_GRUB_SOURCE naming the value. */
export function buildGrubContext(
  server: ServerAddress,
  req: BootRequest,
  profile: Profile,
  machine: Machine | undefined,
  via: SelectedVia,
  options: { secureBoot: boolean; retrySeconds?: number },
): GrubContext {
  const values = placeholderValues(server, req, profile, machine);
  const names = initrdNames(profile.initrd);
  const initrds = profile.initrd.map((s, i) => grubFile(server, s, names[i]!, profile.id));
  const tokens = buildCmdline(profile, values);
  const retrySeconds = options.retrySeconds ?? 20;
  return {
    mac: req.mac,
    uuid: req.uuid ?? '',
    arch: req.arch ?? '',
    hostname: machine?.hostname ?? '',
    address: server.address,
    port: server.port,
    base_url: `http://${server.address}:${server.port}`,
    profile: { id: profile.id, name: profile.name !== undefined && /^[A-Za-z0-9 ._:-]{1,64}$/.test(profile.name) ? profile.name : profile.id },
    via,
    secure_boot: options.secureBoot,
    kernel: grubFile(server, profile.kernel, 'kernel', profile.id),
    initrds,
    kernel_args: tokens.map((t) => grubQuote(t, `profile ${profile.id} cmdline token`)).join(' '),
    initrd_paths: initrds.map((i) => i.path).join(' '),
    retry_path: `${tftpDevice(server)}/grub/grub.cfg`,
    retry_seconds: retrySeconds,
  };
}

/**
 * Whether a PE/COFF image carries an Authenticode signature (a non-empty certificate table,
 * data directory 4; PE/COFF specification section "The Attribute Certificate Table"). Shim and
 * the firmware check the signature itself; this only tells "unsigned" from "signed by someone"
 * so a Secure Boot machine is told before it fails. Returns undefined when `head` is not PE.
 */
export function peSignature(head: Buffer): { signed: boolean; machine: number } | undefined {
  if (head.length < 0x40 || head.readUInt16LE(0) !== 0x5a4d) return undefined;
  const pe = head.readUInt32LE(0x3c);
  if (pe + 24 > head.length || head.readUInt32LE(pe) !== 0x00004550) return undefined;
  const machine = head.readUInt16LE(pe + 4);
  const opt = pe + 24;
  if (opt + 2 > head.length) return undefined;
  const magic = head.readUInt16LE(opt);
  // Data directories start at 96 (PE32) or 112 (PE32+) into the optional header; 8 bytes each.
  const dirs = magic === 0x20b ? opt + 112 : magic === 0x10b ? opt + 96 : -1;
  if (dirs < 0 || dirs + 5 * 8 > head.length) return undefined;
  const count = head.readUInt32LE(opt + (magic === 0x20b ? 108 : 92));
  if (count < 5) return { signed: false, machine };
  const size = head.readUInt32LE(dirs + 4 * 8 + 4);
  return { signed: size > 0, machine };
}
