/**
 * The DHCPv6 lease budget of server mode: one client may not exhaust the pool. Checked before
 * each IA_NA that would take an address it does not hold yet (an advertised or bound IA is
 * always answered again: renewals, the Request after an Advertise, reboots of known clients):
 *
 *  1. at most `maxIaPerClient` live IA_NAs per DUID (a Solicit with 100 IA_NAs gets 4);
 *  2. at most `maxClientsPerHost` DUIDs holding addresses taken from one host, and at most that
 *     many new DUIDs per minute from it. The host is the datagram's source address: on our link
 *     that is the interface's link-local address, which for EDK2, iPXE and Linux is the modified
 *     EUI-64 of its MAC, so this is the link-layer address. (Node sees no Ethernet header, and a
 *     DUID, a client link-layer option or a DUID-LL's MAC is whatever the sender writes.) A real
 *     machine takes 3 DUIDs in a boot chain (firmware, iPXE, OS); a live OS that makes a new
 *     DUID-LLT each boot takes one more per reboot until the old lease expires;
 *  3. at most `newLeasesPerMinute` new leases on the segment (the IPv4 server's
 *     `--dhcp-new-leases-per-minute`, same bucket rule: ../dhcp/lease-rate.ts);
 *  4. at most `maxLeases` records in the table (dead records are forgotten first): memory stays
 *     bounded however large the range (a /64 range is 2^64 addresses).
 * An IA refused is answered NoAddrsAvail with the reason; the socket layer logs a budgeted
 * warning naming the cap and the option that raises it. State: two token buckets (the clock is
 * passed in); counts are the pool's.
 */
import { createLeaseRateLimiter } from '../dhcp/lease-rate.js';
import type { Lease6Pool } from './leases.js';

/** The limits. */
export interface Lease6Limits {
  /** Records in the lease table (`--dhcp6-max-leases`). */
  maxLeases: number;
  /** Live IA_NAs per DUID. */
  maxIaPerClient: number;
  /** DUIDs with addresses from one host, and new DUIDs per minute from it (`--dhcp6-max-per-host`). */
  maxClientsPerHost: number;
  /** New leases per minute on the segment; 0 = unlimited (`--dhcp-new-leases-per-minute`). */
  newLeasesPerMinute: number;
}

/** Defaults: dnsmasq's dhcp-lease-max is 1000; our default range holds 4096. */
export const DEFAULT_LEASE6_LIMITS: Lease6Limits = { maxLeases: 4096, maxIaPerClient: 4, maxClientsPerHost: 8, newLeasesPerMinute: 60 };

/** Which cap refused an IA. */
export type Lease6Cap = 'ia-per-client' | 'clients-per-host' | 'host-rate' | 'segment-rate' | 'leases';

/** An IA that asks for an address. */
export interface Lease6Ask {
  /** Lease key (iaKey). */
  key: string;
  /** The client's DUID, hex. */
  duid: string;
  /** Source address of the datagram. */
  host: string;
}

/** The verdict on one IA. */
export type Lease6Verdict = { ok: true } | { ok: false; cap: Lease6Cap; message: string };

/** The budget. */
export interface Lease6Budget {
  readonly limits: Lease6Limits;
  /** May `ask` take an address now? Takes rate tokens only when it may. */
  admit(pool: Lease6Pool, ask: Lease6Ask, now: number): Lease6Verdict;
}

/** Create the budget (limits merged over the defaults). */
export function createLease6Budget(limits: Partial<Lease6Limits> = {}): Lease6Budget {
  const l: Lease6Limits = { ...DEFAULT_LEASE6_LIMITS, ...limits };
  const hostRate = createLeaseRateLimiter(l.maxClientsPerHost);
  const segmentRate = createLeaseRateLimiter(l.newLeasesPerMinute);
  const no = (cap: Lease6Cap, message: string): Lease6Verdict => ({ ok: false, cap, message });
  return {
    limits: l,
    admit(pool, ask, now) {
      if (pool.live(ask.key, now)) return { ok: true };
      const ias = pool.liveIasOf(ask.duid, now);
      if (ias >= l.maxIaPerClient) return no('ia-per-client', `this client already holds ${ias} addresses (at most ${l.maxIaPerClient} per DUID)`);
      const newClient = ias === 0;
      if (newClient) {
        const clients = pool.liveClientsOf(ask.host, now);
        if (clients >= l.maxClientsPerHost)
          return no('clients-per-host', `${clients} DUIDs from ${ask.host} already hold addresses (at most ${l.maxClientsPerHost} per host)`);
      }
      if (pool.records() >= l.maxLeases) {
        pool.pruneDead(now);
        if (pool.records() >= l.maxLeases) return no('leases', `the lease table is full (${l.maxLeases} live leases)`);
      }
      if (newClient && !hostRate.take(ask.host, now)) return no('host-rate', `more than ${l.maxClientsPerHost} new DUIDs a minute from ${ask.host}`);
      if (!segmentRate.take('local', now)) return no('segment-rate', `more than ${l.newLeasesPerMinute} new leases a minute on this segment`);
      return { ok: true };
    },
  };
}
