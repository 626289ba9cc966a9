/**
 * Address allocation for the DHCP server mode: which address a client gets, which request is
 * acceptable, what RELEASE and DECLINE do. No sockets, no clock, no files: the caller passes
 * `now` (ms since the epoch) and persists `snapshot()` (lease-file.ts). Table-tested.
 *
 * Invariants:
 *  - at most one lease record per client key and at most one record per address, so an address
 *    is never bound to two clients;
 *  - an address is handed out only when it is inside the request's subnet, not its network or
 *    broadcast address, not one of ours, not declined, not reserved for another MAC, and not held
 *    by another client's unexpired lease (or offer);
 *  - expired and released records are kept as "previous address" hints: a returning client gets
 *    its old address back while it is free, and other clients get those addresses only when no
 *    never-used address is left (longest-expired first), as dnsmasq and ISC dhcpd do.
 *
 * Addresses are 32-bit numbers inside the pool (the tables, the free-address scan, every
 * availability check); the dotted text is made only at the edges: the records handed out (the
 * lease journal's format and the API's), the replies and the reasons logged.
 */
import { ApplianceError } from '../errors.js';
import { normalizeMac } from '../identity.js';
import { inSubnet, ipToNumber, numberToIp, type Subnet } from './subnet.js';

/** Error code of a bad `--dhcp-range`. */
export const ERR_DHCP_RANGE = 'ERR_DHCP_RANGE';

/** Largest dynamic range accepted (a /16): bounds the free-address scan per DISCOVER. */
export const MAX_RANGE_SIZE = 65_536;

/** An inclusive dynamic address range. */
export interface DhcpRange {
  start: string;
  end: string;
}

/**
 * Parse `--dhcp-range START-END` (e.g. `10.99.0.100-10.99.0.200`). Throws ApplianceError
 * `ERR_DHCP_RANGE` naming what is wrong.
 */
export function parseDhcpRange(text: string): DhcpRange {
  const m = /^\s*([0-9.]+)\s*-\s*([0-9.]+)\s*$/.exec(text);
  if (!m) throw new ApplianceError(ERR_DHCP_RANGE, `dhcp range ${JSON.stringify(text)} is not START-END, e.g. 10.99.0.100-10.99.0.200`, { range: text });
  const range = { start: m[1]!, end: m[2]! };
  validateRange(range);
  return range;
}

/** Check a range: two addresses, start <= end, at most MAX_RANGE_SIZE. Throws `ERR_DHCP_RANGE`. */
export function validateRange(range: DhcpRange, subnet?: Subnet): void {
  const s = ipToNumber(range.start);
  const e = ipToNumber(range.end);
  const text = `${range.start}-${range.end}`;
  if (s === undefined) throw new ApplianceError(ERR_DHCP_RANGE, `dhcp range start ${JSON.stringify(range.start)} is not an ipv4 address`, { range: text });
  if (e === undefined) throw new ApplianceError(ERR_DHCP_RANGE, `dhcp range end ${JSON.stringify(range.end)} is not an ipv4 address`, { range: text });
  if (s > e) throw new ApplianceError(ERR_DHCP_RANGE, `dhcp range ${text} ends before it starts; write the lower address first`, { range: text });
  if (e - s + 1 > MAX_RANGE_SIZE)
    throw new ApplianceError(ERR_DHCP_RANGE, `dhcp range ${text} holds ${e - s + 1} addresses, at most ${MAX_RANGE_SIZE} are supported`, { range: text });
  if (subnet && !(inSubnet(range.start, subnet) && inSubnet(range.end, subnet))) {
    throw new ApplianceError(ERR_DHCP_RANGE, `dhcp range ${text} is not inside the served subnet ${subnet.cidr}; pass a --dhcp-range on that network`, {
      range: text,
      subnet: subnet.cidr,
    });
  }
}

/** Who a lease belongs to: `key` is `mac:..` or `id:<hex of option 61>`; `mac` is chaddr. */
export interface ClientRef {
  key: string;
  mac: string;
}

/**
 * The lease key of a client (RFC 2131 section 4.2: client identifier if given, else chaddr).
 * Option 61 of type 1 holding the same MAC as chaddr is keyed by the MAC, so a machine whose
 * PXE firmware sends no 61 (EDK2) and whose iPXE sends 61 = 01+MAC gets the same lease
 * (dnsmasq treats them alike too).
 */
export function clientRef(mac: string, clientId?: Buffer): ClientRef {
  const m = normalizeMac(mac) ?? mac.toLowerCase();
  if (clientId === undefined || clientId.length === 0) return { key: `mac:${m}`, mac: m };
  // The hex of 6 bytes is 12 lowercase digits: compared with the canonical MAC's without the
  // colons, not through normalizeMac's regex path (it showed in the DORA profile).
  if (clientId[0] === 1 && clientId.length === 7 && clientId.subarray(1).toString('hex') === m.replaceAll(':', '')) return { key: `mac:${m}`, mac: m };
  return { key: `id:${clientId.toString('hex')}`, mac: m };
}

/** A static reservation (from machine records): this MAC always gets this address. */
export interface Reservation {
  mac: string;
  ip: string;
  hostname?: string;
}

/** States of a lease record. */
export type LeaseState = 'offered' | 'bound' | 'released';

/** One lease record. */
export interface Lease {
  key: string;
  mac: string;
  ip: string;
  state: LeaseState;
  /** ms since the epoch; an offer's hold time, a binding's end, or the release time. */
  expiresAt: number;
  /** True once the address was ever bound to this client (ACKed). */
  bound: boolean;
}

/** An address a client declined (RFC 2131 section 4.3.3): not offered until `until`. */
export interface DeclinedAddress {
  ip: string;
  until: number;
  mac?: string;
}

/**
 * One change of the table, as the lease journal (lease-journal.ts) records it. Replaying the
 * changes in order with the pool's rules (a put replaces the client's previous record and any
 * other record on the address) rebuilds the table.
 */
export type LeaseChange = { op: 'put'; lease: Lease } | { op: 'drop'; key: string } | { op: 'decline'; declined: DeclinedAddress };

/** What lease-file.ts stores. */
export interface LeaseSnapshot {
  leases: Lease[];
  declined: DeclinedAddress[];
}

/** Result of `offer`. */
export type OfferResult =
  | { ok: true; ip: string; reservation?: Reservation; lease: Lease; reused: 'reservation' | 'current' | 'requested' | 'new' | 'expired' }
  | { ok: false; reason: string; exhausted: boolean };

/** Result of `request`. */
export type RequestResult = { ok: true; lease: Lease; reservation?: Reservation } | { ok: false; reason: string };

const CANONICAL_MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

interface ReservationIndex {
  /** Reserved address (number) -> normalised MAC. */
  byIp: Map<number, string>;
  /** The reservation of a (normalised) MAC on `subnet`, with its address as a number. */
  mine(mac: string, subnet: Subnet): { reservation: Reservation; n: number } | undefined;
}

/** A lease record in the tables, with its address as a number. */
interface Held {
  lease: Lease;
  n: number;
}

/** The mask of a prefix length, as an unsigned 32-bit number. */
function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** True when the address `n` is on `subnet`. */
function onSubnet(n: number, subnet: Subnet): boolean {
  return (n & maskOf(subnet.prefix)) >>> 0 === subnet.network;
}

/** Options of `LeasePool`. */
export interface LeasePoolOptions {
  /** Dynamic ranges, each inside one served subnet. */
  ranges: Array<DhcpRange & { subnet: Subnet }>;
  /** Our own addresses: never handed out. */
  exclude?: string[];
  /** Static reservations, read on every decision so store edits apply at once. */
  reservations?: (() => Reservation[]) | undefined;
  /** How long an offered address is held for the client, default 60 s. */
  offerHoldMs?: number | undefined;
  /** How long a declined address is kept out of use, default 10 min. */
  declineMs?: number | undefined;
  /** Called after every change of the table (not for `load`): the lease journal's feed. */
  onChange?: (change: LeaseChange) => void;
}

/**
 * The lease table and allocator. Mutates only itself; `now` is always passed in.
 */
export class LeasePool {
  readonly #ranges: Array<{ start: number; end: number; subnet: Subnet }>;
  readonly #exclude: Set<number>;
  readonly #reservations: () => Reservation[];
  readonly #offerHoldMs: number;
  readonly #declineMs: number;
  readonly #onChange: (change: LeaseChange) => void;
  readonly #byKey = new Map<string, Held>();
  readonly #byIp = new Map<number, Held>();
  readonly #declined = new Map<number, DeclinedAddress>();
  /** Per range: where the next search for a never-used address starts. */
  readonly #cursor: number[] = [];

  constructor(options: LeasePoolOptions) {
    this.#ranges = options.ranges.map((r) => {
      validateRange(r, r.subnet);
      return { start: ipToNumber(r.start)!, end: ipToNumber(r.end)!, subnet: r.subnet };
    });
    this.#exclude = new Set((options.exclude ?? []).flatMap((ip) => ipToNumber(ip) ?? []));
    this.#reservations = options.reservations ?? (() => []);
    this.#offerHoldMs = options.offerHoldMs ?? 60_000;
    this.#declineMs = options.declineMs ?? 600_000;
    this.#onChange = options.onChange ?? (() => undefined);
  }

  /** Load records (from the lease file), replacing the table. Inconsistent duplicates keep the later expiry. */
  load(snapshot: LeaseSnapshot): void {
    this.#byKey.clear();
    this.#byIp.clear();
    this.#declined.clear();
    const sorted = [...snapshot.leases].sort((a, b) => a.expiresAt - b.expiresAt);
    for (const lease of sorted) {
      const n = ipToNumber(lease.ip);
      if (n !== undefined) this.#put({ lease: { ...lease }, n });
    }
    for (const d of snapshot.declined) {
      const n = ipToNumber(d.ip);
      if (n !== undefined) this.#declined.set(n, { ...d });
    }
  }

  /** All records and declined addresses, for persistence. */
  snapshot(): LeaseSnapshot {
    return {
      leases: [...this.#byKey.values()].sort((a, b) => a.n - b.n).map((h) => ({ ...h.lease })),
      declined: [...this.#declined.values()].map((d) => ({ ...d })),
    };
  }

  /** The record of a client key, if any (expired ones included). */
  leaseOf(key: string): Lease | undefined {
    const h = this.#byKey.get(key);
    return h ? { ...h.lease } : undefined;
  }

  /** The record holding an address, if any. */
  leaseAt(ip: string): Lease | undefined {
    const n = ipToNumber(ip);
    const h = n === undefined ? undefined : this.#byIp.get(n);
    return h ? { ...h.lease } : undefined;
  }

  /** Counts for stats and metrics. */
  usage(now: number): { size: number; bound: number; offered: number; declined: number; reserved: number } {
    let bound = 0;
    let offered = 0;
    for (const { lease: l } of this.#byKey.values()) {
      if (l.expiresAt <= now) continue;
      if (l.state === 'bound') bound += 1;
      else if (l.state === 'offered') offered += 1;
    }
    const declined = [...this.#declined.values()].filter((d) => d.until > now).length;
    const size = this.#ranges.reduce((n, r) => n + (r.end - r.start + 1), 0);
    return { size, bound, offered, declined, reserved: this.#reservations().length };
  }

  /** The reservation of a MAC inside `subnet`, if any. */
  reservationFor(mac: string, subnet: Subnet): Reservation | undefined {
    return this.#indexReservations().mine(normalizeMac(mac) ?? mac, subnet)?.reservation;
  }

  /**
   * Why `ip` may not be given to `client` on `subnet` at `now`; undefined when it may. A
   * client's own reservation may lie outside the dynamic range.
   */
  unavailable(ip: string, client: ClientRef, subnet: Subnet, now: number): string | undefined {
    const n = ipToNumber(ip);
    if (n === undefined) return `${JSON.stringify(ip)} is not an ipv4 address`;
    return this.#unavailable(n, client, subnet, now, this.#indexReservations());
  }

  /**
   * Choose an address for a DISCOVER and hold it for the offer time. Order: the client's
   * reservation; its current or previous address; the address it asked for (option 50); a
   * never-used address (scanning on from the last one handed out, so a fill is linear); the
   * longest-expired address of another client. No free address gives
   * `{ ok: false, exhausted: true }`, never a duplicate.
   */
  offer(client: ClientRef, subnet: Subnet, now: number, requestedIp?: string): OfferResult {
    // One call of the (store-backed) reservation source per decision, not one per address.
    const index = this.#indexReservations();
    const mine = index.mine(client.mac, subnet);
    if (mine) {
      const why = this.#unavailable(mine.n, client, subnet, now, index);
      if (why) return { ok: false, reason: `reserved address unavailable: ${why}`, exhausted: false };
      return { ok: true, ip: mine.reservation.ip, reservation: mine.reservation, lease: this.#hold(client, mine.n, now), reused: 'reservation' };
    }
    const current = this.#byKey.get(client.key);
    if (current && this.#unavailable(current.n, client, subnet, now, index) === undefined) {
      return { ok: true, ip: current.lease.ip, lease: this.#hold(client, current.n, now), reused: 'current' };
    }
    const requested = requestedIp === undefined ? undefined : ipToNumber(requestedIp);
    if (requested !== undefined && this.#unavailable(requested, client, subnet, now, index) === undefined) {
      return { ok: true, ip: numberToIp(requested), lease: this.#hold(client, requested, now), reused: 'requested' };
    }
    let oldest: Held | undefined;
    for (const [i, r] of this.#ranges.entries()) {
      if (r.subnet.network !== subnet.network || r.subnet.prefix !== subnet.prefix) continue;
      const size = r.end - r.start + 1;
      const from = this.#cursor[i] ?? r.start;
      for (let k = 0; k < size; k++) {
        let n = from + k;
        if (n > r.end) n -= size;
        if (index.byIp.has(n)) continue; // reserved for another MAC (this client has none here)
        const holder = this.#byIp.get(n);
        if (holder) {
          if (
            holder.lease.expiresAt <= now &&
            (!oldest || holder.lease.expiresAt < oldest.lease.expiresAt) &&
            this.#unavailable(n, client, subnet, now, index) === undefined
          )
            oldest = holder;
          continue;
        }
        if (this.#unavailable(n, client, subnet, now, index) === undefined) {
          this.#cursor[i] = n + 1 > r.end ? r.start : n + 1;
          return { ok: true, ip: numberToIp(n), lease: this.#hold(client, n, now), reused: 'new' };
        }
      }
    }
    if (oldest) return { ok: true, ip: oldest.lease.ip, lease: this.#hold(client, oldest.n, now), reused: 'expired' };
    return { ok: false, reason: `no free address on ${subnet.cidr}: every address is leased, offered, reserved or declined`, exhausted: true };
  }

  /**
   * Bind `ip` to the client for `leaseMs` (REQUEST in any state, RFC 2131 section 4.3.2) when it
   * is acceptable; otherwise the reason (the caller sends a NAK).
   */
  request(client: ClientRef, ip: string, subnet: Subnet, now: number, leaseMs: number): RequestResult {
    const n = ipToNumber(ip);
    if (n === undefined) return { ok: false, reason: `${JSON.stringify(ip)} is not an ipv4 address` };
    const index = this.#indexReservations();
    const why = this.#unavailable(n, client, subnet, now, index);
    if (why) return { ok: false, reason: why };
    const lease = this.#assign(client, n, { state: 'bound', expiresAt: now + leaseMs, bound: true });
    const reservation = index.mine(client.mac, subnet)?.reservation;
    return reservation ? { ok: true, lease, reservation } : { ok: true, lease };
  }

  /** DHCPRELEASE: the client's lease on `ip` ends now (its record stays as a previous-address hint). */
  release(client: ClientRef, ip: string, now: number): boolean {
    const lease = this.#byKey.get(client.key)?.lease;
    if (!lease || lease.ip !== ip) return false;
    lease.state = 'released';
    lease.expiresAt = Math.min(lease.expiresAt, now);
    this.#onChange({ op: 'put', lease: { ...lease } });
    return true;
  }

  /**
   * DHCPDECLINE (RFC 2131 section 4.3.3): the client found `ip` in use. The address is kept out of
   * use for the decline time and the client's record is dropped so it gets another address.
   */
  decline(client: ClientRef, ip: string, now: number): boolean {
    const held = this.#byKey.get(client.key);
    if (!held || held.lease.ip !== ip) return false;
    const lease = held.lease;
    this.#byKey.delete(lease.key);
    this.#byIp.delete(held.n);
    const declined = { ip, until: now + this.#declineMs, mac: client.mac };
    this.#declined.set(held.n, declined);
    this.#onChange({ op: 'drop', key: lease.key });
    this.#onChange({ op: 'decline', declined: { ...declined } });
    return true;
  }

  /**
   * The client took another server's offer (REQUEST naming another server id): drop a hold that
   * was never bound, so the address is free again at once.
   */
  abandonOffer(client: ClientRef, now: number): boolean {
    const held = this.#byKey.get(client.key);
    const lease = held?.lease;
    if (!held || !lease || lease.state !== 'offered' || lease.expiresAt <= now) return false;
    if (lease.bound) {
      lease.state = 'released';
      lease.expiresAt = now;
      this.#onChange({ op: 'put', lease: { ...lease } });
    } else {
      this.#byKey.delete(lease.key);
      this.#byIp.delete(held.n);
      this.#onChange({ op: 'drop', key: lease.key });
    }
    return true;
  }

  /**
   * True when the client holds an unexpired offer or binding: its next OFFER/ACK is not a new
   * lease (lease-rate.ts counts only new ones).
   */
  holdsLease(client: ClientRef, now: number): boolean {
    const own = this.#byKey.get(client.key)?.lease;
    return own !== undefined && own.expiresAt > now && own.state !== 'released';
  }

  /** The MAC an address is reserved for, if it is (normalised). */
  reservedFor(ip: string): string | undefined {
    const n = ipToNumber(ip);
    return n === undefined ? undefined : this.#indexReservations().byIp.get(n);
  }

  /** Forget declines that have run out; returns how many. */
  pruneDeclined(now: number): number {
    let n = 0;
    for (const [ip, d] of this.#declined) {
      if (d.until <= now) {
        this.#declined.delete(ip);
        n += 1;
      }
    }
    return n;
  }

  /** Normalised reservations, read once per decision. */
  #indexReservations(): ReservationIndex {
    const byIp = new Map<number, string>();
    const byMac = new Map<string, Array<{ reservation: Reservation; n: number }>>();
    for (const r of this.#reservations()) {
      const n = ipToNumber(r.ip);
      if (n === undefined) continue; // the store validates addresses; a broken one reserves nothing
      // Store records are already canonical (schema.ts): skip the rewrite for those.
      const mac = CANONICAL_MAC.test(r.mac) ? r.mac : (normalizeMac(r.mac) ?? r.mac.toLowerCase());
      const entry = { reservation: mac === r.mac ? r : { ...r, mac }, n };
      byIp.set(n, mac);
      const list = byMac.get(mac);
      if (list) list.push(entry);
      else byMac.set(mac, [entry]);
    }
    return { byIp, mine: (mac, subnet) => byMac.get(mac)?.find((r) => onSubnet(r.n, subnet)) };
  }

  #unavailable(n: number, client: ClientRef, subnet: Subnet, now: number, index: ReservationIndex): string | undefined {
    if (!onSubnet(n, subnet)) return `${numberToIp(n)} is not on ${subnet.cidr}`;
    if (n === subnet.network && subnet.prefix < 31) return `${numberToIp(n)} is the network address of ${subnet.cidr}`;
    if (n === (subnet.network | ~maskOf(subnet.prefix)) >>> 0 && subnet.prefix < 31) return `${numberToIp(n)} is the broadcast address of ${subnet.cidr}`;
    if (this.#exclude.has(n)) return `${numberToIp(n)} is the server's own address`;
    const declined = this.#declined.get(n);
    if (declined && declined.until > now) return `${numberToIp(n)} was declined (in use on the network) until ${new Date(declined.until).toISOString()}`;
    const reservedFor = index.byIp.get(n);
    if (reservedFor !== undefined && reservedFor !== client.mac) return `${numberToIp(n)} is reserved for ${reservedFor}`;
    const mine = index.mine(client.mac, subnet);
    if (mine && mine.n !== n) return `${client.mac} has the reservation ${mine.reservation.ip}`;
    const holder = this.#byIp.get(n)?.lease;
    if (holder && holder.key !== client.key && holder.expiresAt > now) {
      return `${numberToIp(n)} is ${holder.state === 'offered' ? 'offered' : 'leased'} to ${holder.key} until ${new Date(holder.expiresAt).toISOString()}`;
    }
    if (!mine && !this.#ranges.some((r) => r.subnet.network === subnet.network && n >= r.start && n <= r.end))
      return `${numberToIp(n)} is outside the dynamic range`;
    return undefined;
  }

  #hold(client: ClientRef, n: number, now: number): Lease {
    const current = this.#byKey.get(client.key);
    // Re-offering a live binding keeps the binding (a client that rebooted before its lease
    // ended keeps its lease; the offer does not shorten it).
    const lease = current?.n === n ? current.lease : undefined;
    if (lease && lease.state === 'bound' && lease.expiresAt > now) return { ...lease };
    return this.#assign(client, n, { state: 'offered', expiresAt: now + this.#offerHoldMs, bound: lease ? lease.bound : false });
  }

  #assign(client: ClientRef, n: number, fields: Pick<Lease, 'state' | 'expiresAt' | 'bound'>): Lease {
    const lease: Lease = { key: client.key, mac: client.mac, ip: numberToIp(n), ...fields };
    this.#put({ lease, n });
    this.#onChange({ op: 'put', lease: { ...lease } });
    return { ...lease };
  }

  #put(held: Held): void {
    const previousOfKey = this.#byKey.get(held.lease.key);
    if (previousOfKey) this.#byIp.delete(previousOfKey.n);
    const previousAtIp = this.#byIp.get(held.n);
    if (previousAtIp) this.#byKey.delete(previousAtIp.lease.key);
    this.#byKey.set(held.lease.key, held);
    this.#byIp.set(held.n, held);
  }
}
