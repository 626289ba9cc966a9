/** `fetch ipxe`, `fetch rancheros` and `fetch secureboot`: put boot files where the appliance serves them. */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { definedFields } from '../defined.js';
import { EXIT, LOG_SETTINGS, loadCommandConfig, type CommandArgs, type CommandSpec } from './command.js';

/** `fetch ipxe`. */
export const FETCH_IPXE_COMMAND: CommandSpec = {
  name: 'ipxe',
  summary: 'copy the iPXE boot programs into --tftp-root (system package first, then download)',
  description:
    'Copy undionly.kpxe, ipxe.efi and snponly.efi (and ARM64 builds when the system has them) into\n' +
    "--tftp-root, from Debian's ipxe package (/usr/lib/ipxe), downloading what it lacks from the\n" +
    "iPXE project's site unless --no-download. Prints what it did as JSON on stdout.",
  settings: ['tftpRoot', ...LOG_SETTINGS],
  flags: [
    { name: 'no-download', type: 'boolean', help: 'never download: only the system package (offline labs)' },
    { name: 'mirror', type: 'string', arg: 'URL', help: 'where to download missing files [default: https://boot.ipxe.org]' },
    { name: 'from', type: 'string', arg: 'DIR', help: 'offline: take the files from DIR first (format-checked like the system package)' },
  ],
  async run(args) {
    const { config, log } = loadCommandConfig(args, ['tftpRoot']);
    const { fetchIpxe } = await import('../fetch/ipxe.js');
    const mirror = stringFlag(args, 'mirror');
    const from = stringFlag(args, 'from');
    const { DEFAULT_IPXE_SYSTEM_DIRS } = await import('../fetch/ipxe.js');
    const systemDirs = from !== undefined ? [await existingDir(resolve(args.io.cwd, from)), ...DEFAULT_IPXE_SYSTEM_DIRS] : DEFAULT_IPXE_SYSTEM_DIRS;
    const results = await fetchIpxe({
      tftpRoot: config.tftpRoot,
      systemDirs,
      download: args.flags['no-download'] !== true,
      ...definedFields({ mirror }),
      log,
    });
    args.io.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return EXIT.ok;
  },
};

/** `fetch rancheros`. */
export const FETCH_RANCHEROS_COMMAND: CommandSpec = {
  name: 'rancheros',
  summary: 'download a RancherOS release kernel and initrd into --assets, sha256-checked',
  description:
    'Download RancherOS vmlinuz and initrd into ASSETS/rancheros/VERSION/, each checked against the\n' +
    "release's checksums.txt; an interrupted download resumes. Prints what it did as JSON on stdout.",
  settings: ['assets', ...LOG_SETTINGS],
  flags: [
    { name: 'version', type: 'string', arg: 'TAG', help: 'release tag [default: v1.5.8, the last 1.x]' },
    {
      name: 'mirror',
      type: 'string',
      arg: 'URL',
      help: 'base URL holding VERSION/ directories, http(s):// or file:///path [default: https://releases.rancher.com/os]',
    },
    {
      name: 'from',
      type: 'string',
      arg: 'DIR|FILE',
      help: 'offline: import vmlinuz and initrd (or one FILE) from a folder holding the release checksums.txt; same sha256 check',
    },
  ],
  async run(args) {
    const { config, log } = loadCommandConfig(args, ['assets']);
    const { fetchRancherOS } = await import('../fetch/rancheros.js');
    const version = stringFlag(args, 'version');
    const mirror = stringFlag(args, 'mirror');
    const from = stringFlag(args, 'from');
    const result = await fetchRancherOS({
      assetsDir: config.assets,
      ...definedFields({ version, mirror, from: from === undefined ? undefined : resolve(args.io.cwd, from) }),
      log,
    });
    args.io.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return EXIT.ok;
  },
};

/** `fetch secureboot`. */
export const FETCH_SECUREBOOT_COMMAND: CommandSpec = {
  name: 'secureboot',
  summary: "copy Debian's shim and signed network grub into --tftp-root (for Secure Boot and grub)",
  description:
    'Copy shimx64.efi and grubx64.efi (and shimaa64.efi, grubaa64.efi with --arch arm64) into\n' +
    '--tftp-root, from the installed shim-signed / grub-efi-*-signed packages or, when absent, from\n' +
    "packages fetched with apt-get download into --deb-cache (never installed: grub-efi's\n" +
    'postinst would run grub-install on this host). arm64 adds the dpkg architecture for the\n' +
    'download and removes it again. --release trixie takes them from Debian 13 instead (from the\n' +
    "host's Debian mirror, with apt state of its own under --deb-cache): its grub reads the ProxyDHCP\n" +
    "offer, so it boots beside a DHCP server whose next-server is not the appliance; Debian 12's does\n" +
    'not. Prints what it did as JSON on stdout.',
  settings: ['tftpRoot', ...LOG_SETTINGS],
  flags: [
    { name: 'arch', type: 'string', arg: 'LIST', help: 'amd64, arm64 or amd64,arm64 [default: amd64]' },
    { name: 'release', type: 'string', arg: 'NAME', help: "a Debian release's packages, e.g. trixie [default: the installed ones, else this host's release]" },
    { name: 'deb-cache', type: 'string', arg: 'DIR', help: 'where downloaded packages are kept [default: /var/cache/netboot-appliance/debs]' },
  ],
  async run(args) {
    const arches = (stringFlag(args, 'arch') ?? 'amd64').split(',');
    for (const a of arches) {
      if (a !== 'amd64' && a !== 'arm64') throw new ConfigError(`--arch must be amd64, arm64 or both (comma-separated), not ${JSON.stringify(a)}`);
    }
    const { config, log } = loadCommandConfig(args, ['tftpRoot']);
    const { fetchSecureBoot } = await import('../fetch/secureboot.js');
    const cacheDir = stringFlag(args, 'deb-cache');
    const results = await fetchSecureBoot({
      tftpRoot: config.tftpRoot,
      arches: arches as Array<'amd64' | 'arm64'>,
      ...definedFields({ cacheDir: cacheDir === undefined ? undefined : resolve(args.io.cwd, cacheDir), release: stringFlag(args, 'release') }),
      log,
    });
    args.io.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return EXIT.ok;
  },
};

/** `fetch debian-installer`. */
export const FETCH_DEBIAN_INSTALLER_COMMAND: CommandSpec = {
  name: 'debian-installer',
  summary: "copy Debian 12's netboot installer (kernel, initrd) from its Debian package into --assets, offline",
  description:
    'Copy linux and initrd.gz of the Debian package debian-installer-12-netboot-amd64 into\n' +
    'ASSETS/debian-installer/12/amd64/, each checked against the package md5sums. The shipped\n' +
    'debian-installer profile boots them with a per-machine preseed. Prints what it did as JSON.',
  settings: ['assets', ...LOG_SETTINGS],
  flags: [{ name: 'from', type: 'string', arg: 'DIR', help: 'a .deb unpacked with dpkg-deb -R DEB DIR [default: the installed package]' }],
  async run(args) {
    const { config, log } = loadCommandConfig(args, ['assets']);
    const { fetchDebianInstaller } = await import('../fetch/debian-installer.js');
    const from = stringFlag(args, 'from');
    const results = await fetchDebianInstaller({
      assetsDir: config.assets,
      log,
      ...definedFields({ from: from === undefined ? undefined : resolve(args.io.cwd, from) }),
    });
    args.io.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return EXIT.ok;
  },
};

/** The `fetch` group; other fetch targets are added to `subcommands`. */
export const FETCH_COMMAND: CommandSpec = {
  name: 'fetch',
  summary: 'download or copy boot files (iPXE binaries, OS kernels and initrds)',
  description: 'Put the files machines boot where the appliance serves them.',
  subcommands: [FETCH_IPXE_COMMAND, FETCH_RANCHEROS_COMMAND, FETCH_SECUREBOOT_COMMAND, FETCH_DEBIAN_INSTALLER_COMMAND],
};

/** `dir` when it is a directory; a ConfigError (exit 2) otherwise. */
async function existingDir(dir: string): Promise<string> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new ConfigError(`--from ${dir} is not a folder; pass the folder you copied the iPXE files into`, { setting: 'from' });
  return dir;
}

/** A string flag's value, if given. */
export function stringFlag(args: CommandArgs, name: string): string | undefined {
  const v = args.flags[name];
  return typeof v === 'string' ? v : undefined;
}
