/**
 * Boot sessions: which request may speak for a machine. The lab segment is untrusted (README
 * "Threat model"): anyone can send `GET /ipxe?mac=VICTIM` and read the script, so nothing in a
 * script is secret from the segment. What an outsider cannot easily be is the machine's own
 * address as the appliance's DHCP saw it. So:
 *
 * - Every boot script and cloud-config the appliance renders for a MAC opens (or reuses) a
 *   session: an unguessable facts token (128 bits) bound to that MAC and to the IPv4 address
 *   the document went to, valid `ttlSeconds`, good for one facts report.
 * - A session is *trusted* when its address is one the DHCP side saw for that MAC (the
 *   appliance's own lease; in proxy mode the ciaddr of a request on 4011 or the address a PXE
 *   client's broadcast DHCPREQUEST takes from the other server; the addresses a DHCPv6 Reply
 *   leased) and no other address
 *   that DHCP also saw for that MAC fetched a boot script while the session lived (then two
 *   hosts claim the MAC: "contested", nobody is trusted). A stranger's address is simply not
 *   observed: its requests cannot make the machine's own boot untrusted. With binding `none`
 *   (no DHCP on this appliance) every address counts as observed.
 * - A facts report drives group selection only with the token of a trusted session, from that
 *   session's address, once. A report without a token is kept as unverified; a wrong, expired,
 *   replayed or other machine's token is refused.
 * - A pending one-shot boot is consumed only by a trusted /ipxe request (or by the verified
 *   facts of the boot it started): a stranger's request gets the one-shot script, consumes
 *   nothing, and the machine still boots what the operator asked for.
 *
 * What this cannot stop: a host that forges DHCP with the machine's MAC while the machine is
 * off is indistinguishable from it (switch port security or 802.1X closes that). Bounded
 * memory: `maxSessions` sessions in all (oldest dropped), a few per MAC, a few DHCP sightings
 * per MAC.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { trimOldest } from '../bounded-map.js';
import type { BootEvent } from '../events.js';

/** How a request is tied to a machine: `dhcp` (address seen by DHCP) or `none` (MAC alone). */
export const BOOT_BINDINGS = ['dhcp', 'none'] as const;
/** See {@link BOOT_BINDINGS}. */
export type BootBinding = (typeof BOOT_BINDINGS)[number];

/** Default lifetime of a facts token: long enough for a microkernel to boot and load its image. */
export const DEFAULT_FACTS_TOKEN_SECONDS = 1800;

/** Where a session's token was handed out. */
export type SessionStage = 'ipxe' | 'config';

/** One boot of one machine as the appliance served it. */
export interface BootSession {
  /** 32 hex digits; rendered as `{{ facts_token }}` and `FACTS_TOKEN`. */
  token: string;
  mac: string;
  /** IPv4 address the script or cloud-config went to. */
  ip: string;
  stage: SessionStage;
  issuedAt: number;
  expiresAt: number;
  /** The address was seen by DHCP for this MAC when the session opened (or binding none). */
  observed: boolean;
  /** When its facts report was accepted (a token is good for one report). */
  usedAt?: number;
}

/** The outcome of presenting a token with a facts report. */
export type TokenCheck =
  { kind: 'trusted'; session: BootSession } | { kind: 'untrusted'; session: BootSession; reason: string } | { kind: 'refused'; reason: string };

/** Options of {@link createBootSessions}. */
export interface BootSessionOptions {
  binding?: BootBinding;
  ttlSeconds?: number;
  /** Sessions held in all (default 8192, twice the discovery cap). */
  maxSessions?: number;
  now?: () => number;
  /** Events of one MAC (the event log), consulted besides what noteEvent was fed. */
  history?: (mac: string) => readonly BootEvent[];
}

/** The session table (in memory: a restart invalidates outstanding tokens, which is safe). */
export interface BootSessions {
  readonly binding: BootBinding;
  readonly ttlSeconds: number;
  /** Feed every boot event: DHCP offers/acks with an address teach which address is whose. */
  noteEvent(event: BootEvent): void;
  /** True when DHCP saw `mac` at `ip` within the token lifetime (always true with binding none). */
  dhcpSaw(mac: string, ip: string): boolean;
  /** Open a session for a document sent to `ip` for `mac`, or reuse the live unused one. */
  issue(mac: string, ip: string, stage: SessionStage): BootSession;
  /** Addresses other than `ip`, seen by DHCP for `mac`, that fetched a boot script for it within the token lifetime. */
  rivals(mac: string, ip: string): string[];
  /** Whether a request from `ip` may act as `mac`'s own boot (consume a one-shot). */
  trusted(mac: string, ip: string): { ok: true } | { ok: false; reason: string };
  /** Check a token presented with `mac`'s facts from `ip`; a trusted or untrusted result uses it up. */
  redeem(token: string, mac: string, ip: string): TokenCheck;
}

/**
 * `ip` when a request from it may say where `mac` is (the DHCP side saw the pair; any address
 * with binding none), else undefined: what the event log's address maps and the runtime
 * record's last address learn from a request, never a stranger's `?mac=VICTIM`.
 */
export function dhcpAddress(sessions: Pick<BootSessions, 'dhcpSaw'>, mac: string, ip: string | undefined): string | undefined {
  return mac !== '' && ip !== undefined && ip !== '' && sessions.dhcpSaw(mac, ip) ? ip : undefined;
}

const PER_MAC_SESSIONS = 8;

/** Events that tie an address to a MAC: our offers and acks, a proxy-mode client's REQUEST. */
const isDhcpSighting = (type: BootEvent['type']): boolean => type === 'dhcp-offer' || type === 'dhcp-ack' || type === 'dhcp-request';

/** The addresses an event ties to its MAC: the IPv4 one, or the IPv6 ones a DHCPv6 Reply leased. */
function sightedAddresses(event: BootEvent): string[] {
  if (isDhcpSighting(event.type)) return event.ip && event.ip !== '0.0.0.0' ? [event.ip] : [];
  if (event.type !== 'dhcp6-reply') return [];
  const leased = event.detail?.['addresses'];
  return Array.isArray(leased) ? leased.filter((a): a is string => typeof a === 'string') : [];
}
const PER_MAC_SIGHTINGS = 4;

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Create the session table. */
export function createBootSessions(options: BootSessionOptions = {}): BootSessions {
  const binding = options.binding ?? 'dhcp';
  const ttlSeconds = options.ttlSeconds ?? DEFAULT_FACTS_TOKEN_SECONDS;
  const ttlMs = ttlSeconds * 1000;
  const max = options.maxSessions ?? 8192;
  const now = options.now ?? (() => Date.now());
  const byToken = new Map<string, BootSession>();
  const byMac = new Map<string, BootSession[]>();
  // mac -> recent DHCP sightings (address, when), newest last. Insertion order bounds the map.
  const sightings = new Map<string, Array<{ ip: string; at: number }>>();

  const live = (s: BootSession, t: number): boolean => s.expiresAt > t;
  const drop = (s: BootSession): void => {
    byToken.delete(s.token);
    const list = byMac.get(s.mac);
    if (!list) return;
    const i = list.indexOf(s);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) byMac.delete(s.mac);
  };
  const sessionsOf = (mac: string, t: number): BootSession[] => {
    const list = byMac.get(mac) ?? [];
    for (const s of [...list]) if (!live(s, t)) drop(s);
    return byMac.get(mac) ?? [];
  };

  const table: BootSessions = {
    binding,
    ttlSeconds,
    noteEvent(event) {
      const addresses = event.mac ? sightedAddresses(event) : [];
      if (addresses.length === 0) return;
      const t = now();
      const list = (sightings.get(event.mac) ?? []).filter((s) => !addresses.includes(s.ip) && t - s.at < ttlMs);
      for (const ip of addresses) list.push({ ip, at: t });
      while (list.length > PER_MAC_SIGHTINGS) list.shift();
      sightings.delete(event.mac);
      sightings.set(event.mac, list);
      trimOldest(sightings, max);
    },
    dhcpSaw(mac, ip) {
      if (binding === 'none') return true;
      const t = now();
      if ((sightings.get(mac) ?? []).some((s) => s.ip === ip && t - s.at < ttlMs)) return true;
      return (options.history?.(mac) ?? []).some((e) => sightedAddresses(e).includes(ip) && t - Date.parse(e.at) < ttlMs);
    },
    issue(mac, ip, stage) {
      const t = now();
      const reuse = sessionsOf(mac, t).find((s) => s.ip === ip && s.stage === stage && s.usedAt === undefined);
      if (reuse) return reuse;
      const session: BootSession = {
        token: randomBytes(16).toString('hex'),
        mac,
        ip,
        stage,
        issuedAt: t,
        expiresAt: t + ttlMs,
        observed: table.dhcpSaw(mac, ip),
      };
      const list = byMac.get(mac) ?? [];
      list.push(session);
      byMac.set(mac, list);
      byToken.set(session.token, session);
      if (list.length > PER_MAC_SESSIONS) drop(list[0]!);
      if (byToken.size > max) drop(byToken.values().next().value as BootSession);
      return session;
    },
    rivals(mac, ip) {
      return [
        ...new Set(
          sessionsOf(mac, now())
            .filter((s) => s.stage === 'ipxe' && s.ip !== ip && s.observed)
            .map((s) => s.ip),
        ),
      ];
    },
    trusted(mac, ip) {
      if (!table.dhcpSaw(mac, ip)) return { ok: false, reason: `DHCP never saw ${mac} at ${ip}` };
      const others = table.rivals(mac, ip);
      if (others.length > 0) return { ok: false, reason: `boot scripts for ${mac} also went to ${others.join(', ')}` };
      return { ok: true };
    },
    redeem(token, mac, ip) {
      const t = now();
      const session = /^[0-9a-f]{32}$/.test(token) ? byToken.get(token) : undefined;
      if (!session || !sameSecret(session.token, token)) return { kind: 'refused', reason: 'unknown facts token' };
      if (session.mac !== mac) return { kind: 'refused', reason: 'this facts token belongs to another machine' };
      if (!live(session, t)) {
        drop(session);
        return { kind: 'refused', reason: 'the facts token has expired' };
      }
      if (session.usedAt !== undefined) return { kind: 'refused', reason: 'the facts token was already used' };
      if (session.ip !== ip) return { kind: 'refused', reason: `the facts token was issued to ${session.ip}, not ${ip}` };
      session.usedAt = t;
      if (!session.observed && !table.dhcpSaw(mac, ip)) return { kind: 'untrusted', session, reason: `DHCP never saw ${mac} at ${ip}` };
      const others = table.rivals(mac, ip);
      if (others.length > 0) return { kind: 'untrusted', session, reason: `boot scripts for ${mac} also went to ${others.join(', ')}` };
      return { kind: 'trusted', session };
    },
  };
  return table;
}
