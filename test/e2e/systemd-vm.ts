/**
 * The VM of test/e2e/systemd.test.ts: a Debian root filesystem with systemd (mmdebstrap, cached),
 * this checkout and the host's node binary copied in, test/e2e/systemd-check.sh as a unit that
 * runs at boot; and the PXE requests the host sends it.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { decodePacket, encodePacket } from '../../src/dhcp/packet.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const SUITE = 'bookworm';
const MIRROR = process.env.NETBOOT_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const PACKAGES = ['systemd', 'systemd-sysv', 'udev', 'iproute2', 'procps', 'kmod'];
const CACHE = '/var/cache/netboot-appliance/systemd-vm';
export const VM_ADDRESS = '10.98.211.2';
export const MAC1 = '52:54:00:5d:01:01';
export const MAC2 = '52:54:00:5d:01:02';
/** What the appliance tree needs at run time (no tests, no linter, no git). */
const TREE = ['bin', 'dist', 'node_modules', 'templates', 'web', 'schema', 'scripts', 'contrib', 'package.json', 'README.md'];
const CHECK_UNIT = `[Unit]
Description=live systemd check of the netboot appliance units (test/e2e/systemd.test.ts)
After=systemd-udevd.service

[Service]
Type=simple
EnvironmentFile=/etc/sdvm.env
ExecStart=/usr/local/sbin/sdvm-check

[Install]
WantedBy=multi-user.target
`;

export function run(cmd: string, args: string[], timeoutMs = 120_000): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
  if (r.error || r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').slice(-2000)}`);
  return r.stdout;
}

/** The cached Debian root filesystem with systemd, built by mmdebstrap on the first run. */
export function systemdRootfs(): string {
  const version = run('mmdebstrap', ['--version']).trim();
  const args = [
    '--variant=minbase',
    '--format=tar',
    `--include=${PACKAGES.join(',')}`,
    '--dpkgopt=path-exclude=/usr/share/doc/*',
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/locale/*',
    SUITE,
  ];
  const key = createHash('sha256').update(JSON.stringify({ version, args, MIRROR })).digest('hex').slice(0, 16);
  const tar = join(CACHE, `rootfs-${key}.tar`);
  if (existsSync(tar)) return tar;
  mkdirSync(CACHE, { recursive: true });
  const tmp = `${tar}.${process.pid}.tmp`;
  try {
    // A private mount namespace takes down what mmdebstrap mounts into its chroot, however it ends.
    run('unshare', ['--mount', '--propagation', 'private', 'mmdebstrap', ...args, tmp, MIRROR], 15 * 60_000);
    renameSync(tmp, tar);
  } finally {
    rmSync(tmp, { force: true });
  }
  return tar;
}

/** The VM disk: the root filesystem, the host's node and kernel modules, this checkout, the check. */
export function buildDisk(work: string, kernelVersion: string): string {
  const root = join(work, 'root');
  mkdirSync(root);
  run('tar', ['-xpf', systemdRootfs(), '-C', root, '--numeric-owner']);
  copyFileSync(realpathSync(process.execPath), join(root, 'usr/bin/node'));
  chmodSync(join(root, 'usr/bin/node'), 0o755);
  cpSync(`/lib/modules/${kernelVersion}`, join(root, 'usr/lib/modules', kernelVersion), { recursive: true });
  const home = join(root, 'opt/netboot-appliance');
  mkdirSync(home, { recursive: true });
  for (const entry of TREE) if (existsSync(join(ROOT, entry))) cpSync(join(ROOT, entry), join(home, entry), { recursive: true, verbatimSymlinks: true });
  for (const dir of ['config', 'assets', 'tftpboot']) mkdirSync(join(home, dir));
  // The boot files `fetch ipxe` would put in tftpboot/ (the VM has no Debian ipxe package): without
  // them the appliance rightly answers no 4011 request, having no file to name.
  for (const file of ['snponly.efi', 'undionly.kpxe']) {
    const from = join('/usr/lib/ipxe', file);
    if (!existsSync(from)) throw new Error(`${from} is missing: install Debian's ipxe package (scripts/install)`);
    copyFileSync(from, join(home, 'tftpboot', file));
  }
  // Proxy mode: the VM's segment has no other DHCP server, and auto would probe for 5 s first.
  writeFileSync(join(home, 'config/appliance.json'), `${JSON.stringify({ dhcpMode: 'proxy' })}\n`);
  copyFileSync(join(ROOT, 'test/e2e/systemd-check.sh'), join(root, 'usr/local/sbin/sdvm-check'));
  chmodSync(join(root, 'usr/local/sbin/sdvm-check'), 0o755);
  writeFileSync(join(root, 'etc/sdvm.env'), `SDVM_ADDRESS=${VM_ADDRESS}\nSDVM_MAC1=${MAC1}\nSDVM_MAC2=${MAC2}\n`);
  writeFileSync(join(root, 'etc/systemd/system/sdvm-check.service'), CHECK_UNIT);
  mkdirSync(join(root, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
  symlinkSync('/etc/systemd/system/sdvm-check.service', join(root, 'etc/systemd/system/multi-user.target.wants/sdvm-check.service'));
  // No login prompt on the console the check reports on.
  symlinkSync('/dev/null', join(root, 'etc/systemd/system/serial-getty@ttyS0.service'));
  writeFileSync(join(root, 'etc/hostname'), 'sdvm\n');
  // A machine id: with an empty one systemd counts the boot as the first and systemd-firstboot
  // would prompt on the console (systemd.firstboot=off on the command line says the same).
  writeFileSync(join(root, 'etc/machine-id'), `${randomBytes(16).toString('hex')}\n`);
  const disk = join(work, 'disk.img');
  run('truncate', ['-s', '2G', disk]);
  run('mkfs.ext4', ['-q', '-F', '-L', 'sdvm', '-d', root, disk], 300_000);
  rmSync(root, { recursive: true, force: true });
  return disk;
}

/** A PXE client's datagram from a captured one, with its own MAC, xid and (for 4011) ciaddr. */
export function request(fixture: string, mac: string, ciaddr?: string): string {
  const p = decodePacket(readFileSync(join(ROOT, 'test/fixtures/dhcp', fixture)));
  p.xid = randomBytes(4).readUInt32BE();
  p.chaddr = Buffer.concat([Buffer.from(mac.split(':').map((h) => parseInt(h, 16))), Buffer.alloc(10)]);
  if (ciaddr !== undefined) p.ciaddr = ciaddr;
  return encodePacket(p).toString('hex');
}

export interface Reply {
  from: string;
  type?: number;
  file?: string;
  xid?: number;
}

/** Send one datagram from the namespace (test/dhcp/netns-client.ts) and return what came back. */
export function exchange(ns: string, from: [string, number], dest: string, port: number, hex: string): Reply[] {
  const out = run(
    'ip',
    [
      'netns',
      'exec',
      ns,
      process.execPath,
      '--import',
      'tsx',
      join(ROOT, 'test/dhcp/netns-client.ts'),
      from[0],
      String(from[1]),
      dest,
      String(port),
      '4000',
      hex,
    ],
    60_000,
  );
  return (JSON.parse(out.trim().split('\n').pop()!) as { received: Reply[] }).received;
}

/** Retry an exchange a few times (the first datagram may beat the VM's ARP or a busy TCG guest). */
export function answered(ns: string, from: [string, number], dest: string, port: number, hex: string, type: number): Reply | undefined {
  const xid = decodePacket(Buffer.from(hex, 'hex')).xid;
  for (let i = 0; i < 5; i++) {
    const reply = exchange(ns, from, dest, port, hex).find((r) => r.xid === xid && r.type === type && r.from === VM_ADDRESS);
    if (reply) return reply;
  }
  return undefined;
}
