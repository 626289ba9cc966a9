/**
 * Router Advertisements (RFC 4861 section 4.2) for server mode: the M flag tells EDK2 and iPXE
 * to get their addresses by DHCPv6, the O flag to ask it for other configuration, and the
 * prefix option makes the lab prefix on-link. Router lifetime is 0: the appliance is not a
 * default router and must never become one by accident (an RA with a lifetime would draw every
 * host's IPv6 traffic to it).
 *
 * Node.js has no raw sockets, so the message is built here (codec, pure) and sent by
 * scripts/send-ra (perl, Essential in Debian), a child process the appliance owns: it stops
 * when the appliance stops or dies (its stdin closes). Why not radvd: one more daemon with its
 * own configuration file to write, start and reap, for a 56-octet message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { APPLIANCE_HOME } from '../config.js';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatIpv6, parseIpv6 } from './address.js';

/** The helper that sends them. */
export const SEND_RA_SCRIPT = join(APPLIANCE_HOME, 'scripts', 'send-ra');

/** What an advertisement says. */
export interface RouterAdvertisement {
  managed: boolean;
  other: boolean;
  /** Seconds; 0 = not a default router. */
  routerLifetime: number;
  curHopLimit: number;
  prefix?: { prefix: string; length: number; onLink: boolean; autonomous: boolean; validLifetime: number; preferredLifetime: number };
  /** Source link-layer address option. */
  sourceMac?: string;
}

/** The ICMPv6 message (type 134), checksum 0 (the kernel computes it for raw ICMPv6 sockets). */
export function encodeRouterAdvertisement(ra: RouterAdvertisement): Buffer {
  const h = Buffer.alloc(16);
  h[0] = 134;
  h[4] = ra.curHopLimit;
  h[5] = (ra.managed ? 0x80 : 0) | (ra.other ? 0x40 : 0);
  h.writeUInt16BE(ra.routerLifetime, 6);
  const parts = [h];
  if (ra.prefix) {
    const p = Buffer.alloc(32);
    p[0] = 3;
    p[1] = 4;
    p[2] = ra.prefix.length;
    p[3] = (ra.prefix.onLink ? 0x80 : 0) | (ra.prefix.autonomous ? 0x40 : 0);
    p.writeUInt32BE(ra.prefix.validLifetime >>> 0, 4);
    p.writeUInt32BE(ra.prefix.preferredLifetime >>> 0, 8);
    const bytes = parseIpv6(ra.prefix.prefix);
    if (!bytes) throw new ApplianceError('ERR_CONFIG', `${ra.prefix.prefix} is not an ipv6 prefix`);
    bytes.copy(p, 16);
    parts.push(p);
  }
  if (ra.sourceMac) {
    const m = Buffer.from(ra.sourceMac.replace(/[:-]/g, ''), 'hex');
    if (m.length === 6) parts.push(Buffer.concat([Buffer.from([1, 1]), m]));
  }
  return Buffer.concat(parts);
}

/** Decode an advertisement (tests, and a check of what we send); throws ERR_RA_DECODE. */
export function decodeRouterAdvertisement(buf: Buffer): RouterAdvertisement {
  const bad = (why: string) => new ApplianceError('ERR_RA_DECODE', `not a router advertisement: ${why}`);
  if (buf.length < 16 || buf[0] !== 134) throw bad('type or length');
  const ra: RouterAdvertisement = { curHopLimit: buf[4]!, managed: (buf[5]! & 0x80) !== 0, other: (buf[5]! & 0x40) !== 0, routerLifetime: buf.readUInt16BE(6) };
  for (let off = 16; off < buf.length;) {
    const type = buf[off]!;
    const len = (buf[off + 1] ?? 0) * 8;
    if (len === 0 || off + len > buf.length) throw bad('option length');
    if (type === 3 && len === 32) {
      ra.prefix = {
        length: buf[off + 2]!,
        onLink: (buf[off + 3]! & 0x80) !== 0,
        autonomous: (buf[off + 3]! & 0x40) !== 0,
        validLifetime: buf.readUInt32BE(off + 4),
        preferredLifetime: buf.readUInt32BE(off + 8),
        prefix: formatIpv6(buf.subarray(off + 16, off + 32)),
      };
    } else if (type === 1 && len === 8) {
      ra.sourceMac = [...buf.subarray(off + 2, off + 8)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    }
    off += len;
  }
  return ra;
}

/** The /64 of an address. */
export function prefix64(address: string): string {
  const b = parseIpv6(address);
  if (!b) throw new ApplianceError('ERR_CONFIG', `${address} is not an ipv6 address`);
  b.fill(0, 8);
  return formatIpv6(b);
}

/** The advertisement of server mode for the /64 of `address`. */
export function serverAdvertisement(address: string, options: { autonomous?: boolean; sourceMac?: string } = {}): RouterAdvertisement {
  return {
    managed: true,
    other: true,
    routerLifetime: 0,
    curHopLimit: 64,
    // Autonomous (SLAAC) too by default: an OS without a DHCPv6 client (the busybox test OS,
    // many installers) still gets an address on the lab prefix; firmware follows the M flag.
    prefix: { prefix: prefix64(address), length: 64, onLink: true, autonomous: options.autonomous ?? true, validLifetime: 86_400, preferredLifetime: 14_400 },
    ...(options.sourceMac ? { sourceMac: options.sourceMac } : {}),
  };
}

/** A running advertiser. */
export interface RouterAdvertiser {
  stop(): Promise<void>;
}

/**
 * Run scripts/send-ra on `iface`. Resolves once it reports the first advertisement sent;
 * rejects with its error (not root, no such interface).
 */
export function startRouterAdvertiser(options: {
  interface: string;
  ra: RouterAdvertisement;
  intervalSeconds?: number;
  log: Logger;
}): Promise<RouterAdvertiser> {
  const log = options.log.child({ subsystem: 'ra' });
  const hex = encodeRouterAdvertisement(options.ra).toString('hex');
  // Going away: the prefix stays on-link, but say the M/O flags no longer hold (RFC 4861 6.2.5).
  const final = encodeRouterAdvertisement({ ...options.ra, managed: false, other: false }).toString('hex');
  const child: ChildProcess = spawn('perl', [SEND_RA_SCRIPT, options.interface, hex, String(options.intervalSeconds ?? 10)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', RA_FINAL_HEX: final },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
    log.warn({ interface: options.interface, message: d.toString().trim() }, 'router advertiser says');
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return new Promise((resolve, reject) => {
    const fail = (why: string) => reject(new ApplianceError('ERR_RA', `cannot send router advertisements on ${options.interface}: ${why}`));
    const early = (code: number | null) => fail(stderr.trim() || `send-ra exited with ${code}`);
    child.once('error', (err) => fail(err.message));
    child.once('exit', early);
    child.stdout?.once('data', () => {
      // Only the start-up listener goes: `exited` (what stop() awaits) must still hear the exit.
      child.off('exit', early);
      child.once('exit', (code) => {
        if (code !== 0) log.warn({ interface: options.interface, code }, 'router advertiser stopped');
      });
      log.info(
        { interface: options.interface, flags: { managed: options.ra.managed, other: options.ra.other }, prefix: options.ra.prefix?.prefix },
        'sending router advertisements',
      );
      resolve({
        async stop() {
          if (child.exitCode !== null) return;
          child.stdin?.end();
          const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
          await exited;
          clearTimeout(timer);
        },
      });
    });
  });
}
