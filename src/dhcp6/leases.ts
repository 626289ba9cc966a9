/**
 * The DHCPv6 address pool of server mode: one address per (DUID, IAID), from a range of one
 * /64 or smaller prefix. Pure (time passed in); every change is reported to `onChange`, which
 * the socket layer records in a lease journal (../dhcp/lease-journal.ts, the same format as
 * DHCPv4's, keys `id:DUID:IAID`), so leases survive a restart.
 */
import { createHash } from 'node:crypto';
import { ApplianceError } from '../errors.js';
import type { Lease, LeaseChange, LeaseSnapshot } from '../dhcp/leases.js';
import { bigIntToIpv6, formatIpv6, ipv6ToBigInt, parseIpv6 } from './address.js';

/** Error code of a bad `--dhcp6-range`. */
export const ERR_DHCP6_RANGE = 'ERR_DHCP6_RANGE';

/** A range of addresses, both ends included. */
export interface Dhcp6Range {
  start: string;
  end: string;
}

/** MAC recorded for a client whose DUID and address carry none. */
export const UNKNOWN_MAC = '00:00:00:00:00:00';

/** Parse `START-END` (e.g. `fd00::100-fd00::1ff`). */
export function parseDhcp6Range(text: string): Dhcp6Range {
  const m = /^\s*([0-9a-fA-F:.]+)\s*-\s*([0-9a-fA-F:.]+)\s*$/.exec(text);
  const start = m ? parseIpv6(m[1]!) : undefined;
  const end = m ? parseIpv6(m[2]!) : undefined;
  if (!start || !end)
    throw new ApplianceError(ERR_DHCP6_RANGE, `dhcpv6 range ${JSON.stringify(text)} is not START-END of two ipv6 addresses (fd00::100-fd00::1ff)`);
  if (ipv6ToBigInt(start) > ipv6ToBigInt(end)) throw new ApplianceError(ERR_DHCP6_RANGE, `dhcpv6 range ${text} ends before it starts`);
  return { start: formatIpv6(start), end: formatIpv6(end) };
}

/** The range leased when none is given: ::1000-::1fff of the address's /64. */
export function defaultDhcp6Range(address: string): Dhcp6Range {
  const a = parseIpv6(address);
  if (!a) throw new ApplianceError(ERR_DHCP6_RANGE, `${address} is not an ipv6 address`);
  const base = (ipv6ToBigInt(a) >> 64n) << 64n;
  return { start: formatIpv6(bigIntToIpv6(base + 0x1000n)), end: formatIpv6(bigIntToIpv6(base + 0x1fffn)) };
}

/** Lease key of one identity association. */
export function iaKey(duid: Buffer, iaid: number): string {
  return `id:${duid.toString('hex')}:${iaid.toString(16).padStart(8, '0')}`;
}

/** Options of {@link Lease6Pool}. */
export interface Lease6PoolOptions {
  range: Dhcp6Range;
  /** Valid lifetime of a binding, seconds. */
  leaseSeconds: number;
  /** How long an advertised address is held for the client, seconds (default 60). */
  offerHoldSeconds?: number;
  /** How long a declined address is not offered, seconds (default 600). */
  declineSeconds?: number;
  onChange?: (change: LeaseChange) => void;
}

/** The DUID (hex) of a lease key `id:DUID:IAID`. */
export function duidOfKey(key: string): string {
  return key.slice(3, key.lastIndexOf(':'));
}

/** The address pool. */
export class Lease6Pool {
  private readonly byKey = new Map<string, Lease>();
  private readonly byIp = new Map<string, Lease>();
  private readonly declined = new Map<string, number>();
  // Budget indices (budget.ts), in memory only: a DUID's keys, and the keys each host (the
  // datagram's source address) took. Dead keys are pruned as they are counted.
  private readonly byDuid = new Map<string, Set<string>>();
  private readonly byHost = new Map<string, Set<string>>();
  private readonly start: bigint;
  private readonly size: bigint;

  constructor(private readonly options: Lease6PoolOptions) {
    this.start = ipv6ToBigInt(parseIpv6(options.range.start)!);
    this.size = ipv6ToBigInt(parseIpv6(options.range.end)!) - this.start + 1n;
  }

  /** Replace the table with a journal's snapshot (IPv6 records only). */
  load(snapshot: LeaseSnapshot): void {
    for (const l of snapshot.leases) if (parseIpv6(l.ip)) this.put(l, false);
    for (const d of snapshot.declined) if (parseIpv6(d.ip)) this.declined.set(d.ip, d.until);
  }

  /** Every record (for tests and the journal's compaction). */
  leases(): Lease[] {
    return [...this.byKey.values()];
  }

  /** True when `address` is inside the range. */
  inRange(address: string): boolean {
    const b = parseIpv6(address);
    if (!b) return false;
    const n = ipv6ToBigInt(b) - this.start;
    return n >= 0n && n < this.size;
  }

  private put(lease: Lease, report = true, host?: string): void {
    const old = this.byKey.get(lease.key);
    if (old) this.byIp.delete(old.ip);
    const other = this.byIp.get(lease.ip);
    if (other && other.key !== lease.key) this.byKey.delete(other.key);
    this.byKey.set(lease.key, lease);
    this.byIp.set(lease.ip, lease);
    add(this.byDuid, duidOfKey(lease.key), lease.key);
    if (host !== undefined) add(this.byHost, host, lease.key);
    if (report) this.options.onChange?.({ op: 'put', lease });
  }

  /** The key holds an address now (advertised and held, or bound, and not expired). */
  live(key: string, now: number): boolean {
    const l = this.byKey.get(key);
    return l !== undefined && (l.state === 'offered' || l.state === 'bound') && l.expiresAt > now;
  }

  /** Live IAs of one DUID (hex). */
  liveIasOf(duid: string, now: number): number {
    return countLive(this.byDuid, duid, (k) => this.live(k, now)).size;
  }

  /** Distinct DUIDs holding a live lease that `host` took. */
  liveClientsOf(host: string, now: number): number {
    return new Set([...countLive(this.byHost, host, (k) => this.live(k, now))].map(duidOfKey)).size;
  }

  /** Records kept (live, expired and released). */
  records(): number {
    return this.byKey.size;
  }

  /** Forget every record that holds no address now (the table is full); returns how many. */
  pruneDead(now: number): number {
    let dropped = 0;
    for (const [key, lease] of this.byKey) {
      if (this.live(key, now)) continue;
      this.byKey.delete(key);
      if (this.byIp.get(lease.ip)?.key === key) this.byIp.delete(lease.ip);
      this.byDuid.get(duidOfKey(key))?.delete(key);
      this.options.onChange?.({ op: 'drop', key });
      dropped += 1;
    }
    return dropped;
  }

  private free(ip: string, key: string, now: number): boolean {
    const until = this.declined.get(ip);
    if (until !== undefined && until > now) return false;
    const holder = this.byIp.get(ip);
    return !holder || holder.key === key || holder.expiresAt <= now;
  }

  /** The address for a client: its current one, a requested one in range, else a free one. */
  private pick(key: string, requested: readonly string[], now: number): string | undefined {
    const current = this.byKey.get(key);
    if (current && this.free(current.ip, key, now)) return current.ip;
    for (const r of requested) {
      const n = parseIpv6(r) ? formatIpv6(parseIpv6(r)!) : undefined;
      if (n && this.inRange(n) && this.free(n, key, now)) return n;
    }
    // Start at a point derived from the key: the same client tends to get the same address
    // even after its lease was forgotten, and clients do not all contend for the first one.
    const h = BigInt(`0x${createHash('sha256').update(key).digest('hex').slice(0, 16)}`) % this.size;
    const probes = this.size < 65_536n ? Number(this.size) : 65_536;
    for (let i = 0; i < probes; i++) {
      const ip = formatIpv6(bigIntToIpv6(this.start + ((h + BigInt(i)) % this.size)));
      if (this.free(ip, key, now)) return ip;
    }
    return undefined;
  }

  /** Hold an address for an Advertise. */
  offer(key: string, mac: string, requested: readonly string[], now: number, host?: string): Lease | undefined {
    const ip = this.pick(key, requested, now);
    if (!ip) return undefined;
    const current = this.byKey.get(key);
    if (current && current.ip === ip && current.state === 'bound' && current.expiresAt > now) return current;
    const lease: Lease = { key, mac, ip, state: 'offered', expiresAt: now + (this.options.offerHoldSeconds ?? 60) * 1000, bound: current?.bound ?? false };
    this.put(lease, true, host);
    return lease;
  }

  /** Bind (Request, or Rapid Commit): the held or requested address, else any free one. */
  bind(key: string, mac: string, requested: readonly string[], now: number, host?: string): Lease | undefined {
    const ip = this.pick(key, requested, now);
    if (!ip) return undefined;
    const lease: Lease = { key, mac, ip, state: 'bound', expiresAt: now + this.options.leaseSeconds * 1000, bound: true };
    this.put(lease, true, host);
    return lease;
  }

  /** Extend a binding (Renew, Rebind); undefined when the client has none. */
  renew(key: string, now: number): Lease | undefined {
    const current = this.byKey.get(key);
    if (!current || current.state !== 'bound' || current.expiresAt <= now) return undefined;
    const lease: Lease = { ...current, expiresAt: now + this.options.leaseSeconds * 1000 };
    this.put(lease);
    return lease;
  }

  /** Release (the address is free at once). */
  release(key: string, now: number): boolean {
    const current = this.byKey.get(key);
    if (!current) return false;
    this.put({ ...current, state: 'released', expiresAt: now });
    return true;
  }

  /** Decline: the address is in use by someone else; do not hand it out for a while. */
  decline(key: string, address: string, mac: string, now: number): void {
    const until = now + (this.options.declineSeconds ?? 600) * 1000;
    this.declined.set(address, until);
    const current = this.byKey.get(key);
    if (current && current.ip === address) {
      this.byKey.delete(key);
      this.byIp.delete(address);
      this.options.onChange?.({ op: 'drop', key });
    }
    this.options.onChange?.({ op: 'decline', declined: { ip: address, until, ...(mac !== UNKNOWN_MAC ? { mac } : {}) } });
  }

  /** The lease of a key. */
  find(key: string): Lease | undefined {
    return this.byKey.get(key);
  }
}

function add(index: Map<string, Set<string>>, at: string, key: string): void {
  let set = index.get(at);
  if (!set) index.set(at, (set = new Set()));
  set.add(key);
}

/** The live keys of `index[at]`; dead ones leave the index (and an empty entry goes). */
function countLive(index: Map<string, Set<string>>, at: string, live: (key: string) => boolean): Set<string> {
  const set = index.get(at);
  if (!set) return new Set();
  for (const k of set) if (!live(k)) set.delete(k);
  if (set.size === 0) index.delete(at);
  return set;
}
