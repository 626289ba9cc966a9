/**
 * How many new leases one source may take per minute (a token bucket per source). A new lease is
 * an OFFER or ACK to a client that holds no live lease; renewals and reserved machines are never
 * counted. Without it, 127 INIT-REBOOT REQUESTs with made-up MACs bound a whole /25 pool for an
 * hour. A source is a segment: the local one, or the one behind each relay (giaddr). Nothing
 * finer can be trusted: chaddr, client id and the source address of a broadcast are whatever
 * the sender writes, and Node sees no Ethernet source address. Pure: the caller passes `now`.
 */
import { trimOldest } from '../bounded-map.js';

/** The per-source budget. */
export interface LeaseRateLimiter {
  /** Take one new lease for `source` at `now`; false when its budget is spent. */
  take(source: string, now: number): boolean;
  /** Sources currently tracked (bounded). */
  size(): number;
}

/** Most sources tracked at once: a flood of made-up giaddrs cannot grow memory. */
const MAX_SOURCES = 4096;

/** A bucket of `perMinute` leases per source, refilled continuously; 0 means unlimited. */
export function createLeaseRateLimiter(perMinute: number): LeaseRateLimiter {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const ratePerMs = perMinute / 60_000;
  return {
    take(source, now) {
      if (perMinute <= 0) return true;
      let b = buckets.get(source);
      if (!b) {
        b = { tokens: perMinute, at: now };
        buckets.set(source, b);
        trimOldest(buckets, MAX_SOURCES);
      }
      b.tokens = Math.min(perMinute, b.tokens + Math.max(0, now - b.at) * ratePerMs);
      b.at = now;
      if (b.tokens < 1) return false;
      b.tokens -= 1;
      return true;
    },
    size: () => buckets.size,
  };
}

/** The source key of a request: `relay:GIADDR`, or `local` for the segment we sit on. */
export function leaseSource(packet: { giaddr: string }): string {
  return packet.giaddr !== '0.0.0.0' ? `relay:${packet.giaddr}` : 'local';
}
