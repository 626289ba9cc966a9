/**
 * Other processes' sockets on the DHCP ports. SO_REUSEADDR (which the listener needs, and which
 * dnsmasq sets too) lets two processes bind 0.0.0.0:67 without an error; the kernel then hands
 * each broadcast to both, and both answer with different boot URLs. So before binding, the DHCP
 * service lists the UDP sockets of this network namespace (`ss -uane`, iproute2) and compares
 * their inodes with the descriptors of this process (/proc/self/fd), which also makes sockets
 * inherited from scripts/bind-device or systemd count as ours.
 *
 * A socket bound to another device (`%virbr0`, libvirt's dnsmasq) or to an address that is not
 * ours does not hear our segment's broadcasts and is no conflict.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';

/** A UDP socket of another process on one of our ports. */
export interface PortHolder {
  port: number;
  /** Local address as `ss` prints it (`0.0.0.0`, `10.99.0.1`). */
  address: string;
  /** Device it is bound to (SO_BINDTODEVICE), if any. */
  device?: string;
  /** `dnsmasq (pid 1234)` when `ss` can tell (root), else `inode N`. */
  owner: string;
}

/** One line of `ss -H -u -a -n -e -p`, parsed. */
export interface SocketLine {
  address: string;
  device?: string;
  port: number;
  inode?: number;
  process?: string;
  pid?: number;
}

/** Parse `ss -H -u -a -n -e -p` output (pure; tested with captured output). */
export function parseSsOutput(text: string): SocketLine[] {
  const out: SocketLine[] = [];
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5) continue;
    const local = cols[3]!;
    const m = /^(.*?)(?:%([^:\]]+))?:(\d+)$/.exec(local);
    if (!m) continue;
    const inode = /\bino:(\d+)/.exec(line);
    const proc = /users:\(\("([^"]+)",pid=(\d+)/.exec(line);
    out.push({
      address: m[1]!.replace(/^\[|\]$/g, ''),
      ...(m[2] !== undefined ? { device: m[2] } : {}),
      port: Number(m[3]),
      ...(inode ? { inode: Number(inode[1]) } : {}),
      ...(proc ? { process: proc[1]!, pid: Number(proc[2]) } : {}),
    });
  }
  return out;
}

/** Inodes of the sockets this process holds. */
export function ownSocketInodes(): Set<number> {
  const inodes = new Set<number>();
  let fds: string[] = [];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) inodes.add(Number(m[1]));
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/**
 * The sockets in `lines` that conflict with a listener of ours on `ports`, serving `address`
 * on `device` (pure). Ours (inode in `own`) never conflict.
 */
export function conflictingHolders(lines: SocketLine[], own: Set<number>, ports: number[], address: string, device: string | undefined): PortHolder[] {
  return lines
    .filter((l) => ports.includes(l.port))
    .filter((l) => l.inode === undefined || !own.has(l.inode))
    .filter((l) => l.address === '0.0.0.0' || l.address === '*' || l.address === address)
    .filter((l) => l.device === undefined || device === undefined || l.device === device)
    .map((l) => ({
      port: l.port,
      address: l.address,
      ...(l.device !== undefined ? { device: l.device } : {}),
      owner: l.process !== undefined ? `${l.process} (pid ${l.pid})` : `inode ${l.inode ?? '?'}`,
    }));
}

/**
 * Other processes' sockets that would share our DHCP ports. Resolves [] when `ss` is missing
 * (iproute2 is installed by scripts/install; without it the check cannot run and says so).
 */
export function findPortHolders(ports: number[], address: string, device: string | undefined): Promise<{ holders: PortHolder[]; checked: boolean }> {
  return new Promise((resolve) => {
    execFile('ss', ['-H', '-u', '-a', '-n', '-e', '-p'], { timeout: 5000, maxBuffer: 8 * 1024 * 1024 }, (err, stdout) => {
      if (err && !stdout) {
        resolve({ holders: [], checked: false });
        return;
      }
      resolve({ holders: conflictingHolders(parseSsOutput(stdout), ownSocketInodes(), ports, address, device), checked: true });
    });
  });
}
