/**
 * Boot events: what the appliance did for each machine (DHCP offer, TFTP file, script served,
 * kernel/initrd fetched, cloud-config served, facts reported). Every server records into one
 * EventLog; the HTTP API lists them per MAC (`GET /api/events?mac=`) and answers lookups with
 * the address the DHCP side last saw a machine at (never a request's own claim, teachesAddress).
 */
import { trimOldest } from './bounded-map.js';
import { normalizeMac } from './identity.js';

/** @deprecated import from identity.ts; kept so branches written before the move still build. */
export { normalizeMac } from './identity.js';

/** Kinds of boot event, in the order a machine usually produces them. */
export type BootEventType =
  | 'dhcp-offer'
  /** Proxy mode: a PXE client took an address from the other DHCP server (its REQUEST, option 50). */
  | 'dhcp-request'
  | 'dhcp-ack'
  | 'dhcp-nak'
  | 'dhcp-release'
  | 'dhcp-decline'
  /** A request the DHCP server refused: pool exhausted, new-lease budget spent, another MAC's reserved address. */
  | 'dhcp-refused'
  /** The DHCP service changed what it does on the segment (mac ''): stepped down, resumed. */
  | 'dhcp-mode'
  /** DHCPv6 (src/dhcp6/): an Advertise, and a Reply (bound, renewed, released, 4011 boot-server reply). */
  | 'dhcp6-advertise'
  | 'dhcp6-reply'
  | 'tftp-file'
  | 'tftp-error'
  | 'http-script'
  | 'grub-script'
  | 'http-asset'
  | 'http-cloud-config'
  | 'http-preseed'
  | 'facts'
  | 'discovered'
  | 'boot-once'
  | 'state'
  /** A provisioning callback refused with ERR_CALLBACK_TOKEN (throttled per machine, http/refusal-throttle.ts). */
  | 'callback-refused'
  | 'power'
  | 'boot-diagnosis';

/** One thing the appliance did for one machine. */
export interface BootEvent {
  /** ISO 8601 time the event was recorded. */
  at: string;
  /** Lowercase colon-separated MAC (`52:54:00:12:34:56`), or '' when unknown (TFTP by IP only). */
  mac: string;
  type: BootEventType;
  /** Client IPv4 address when known. */
  ip?: string;
  /** Small structured detail: arch, file, profile, bytes ... never a whole packet. */
  detail?: Record<string, unknown>;
  /**
   * Set by a recorder that is not the DHCP side (HTTP) when the DHCP side saw this (mac, ip)
   * pair itself: only then may the event teach the address maps (see {@link teachesAddress}).
   */
  addressTrusted?: true;
}

/**
 * The DHCP side's own view of which address is whose: our offers and acks (server mode: the
 * lease; proxy mode: the ciaddr of a request on 4011), a proxy-mode client's broadcast
 * REQUEST taking an address from the other server, DHCPv6 Advertise/Reply. A NAK, release,
 * decline or refusal names an address the machine does not (or no longer) hold.
 */
const ADDRESS_SIGHTINGS: ReadonlySet<BootEventType> = new Set<BootEventType>(['dhcp-offer', 'dhcp-ack', 'dhcp-request', 'dhcp6-advertise', 'dhcp6-reply']);

/**
 * Whether an event may teach `macForIp`/`lastIp`. The lab segment is untrusted: an HTTP or
 * TFTP request's MAC is the requester's claim (`/ipxe?mac=VICTIM`, a facts POST naming
 * VICTIM), so a request event counts only when its recorder flagged `addressTrusted` (the DHCP
 * side saw the pair). The event itself still carries the requester's address for the timeline.
 */
export function teachesAddress(event: Pick<BootEvent, 'mac' | 'ip' | 'type' | 'addressTrusted'>): boolean {
  if (!event.mac || !event.ip || event.ip === '0.0.0.0') return false;
  return ADDRESS_SIGHTINGS.has(event.type) || event.addressTrusted === true;
}

/** Where servers put boot events and where the API reads them. */
export interface EventLog {
  record(event: Omit<BootEvent, 'at'> & { at?: string }): BootEvent;
  /** Events for one MAC, oldest first; all events (newest `limit`) when mac is undefined. */
  list(filter?: { mac?: string; limit?: number }): BootEvent[];
  /** The MAC last seen at an IPv4 address (learned from DHCP only, {@link teachesAddress}), if any. */
  macForIp(ip: string): string | undefined;
  /** The IPv4 address the DHCP side last saw a MAC at ({@link teachesAddress}), if any. */
  lastIp(mac: string): string | undefined;
  /**
   * Whose timeline a request from `ip` that names no MAC (a kernel or initrd fetch, a TFTP read)
   * belongs to: {@link macForIp}, else the MAC the last request from that address named itself
   * (`/ipxe?mac=`), where the DHCP side never saw that address (QEMU's user network, a DHCP
   * server the appliance cannot hear). For attribution in the timeline and logs only: never for
   * what a machine is served, for lookups or for `lastIp`; a stranger claiming a MAC could already
   * write to that MAC's timeline with the claim itself.
   */
  timelineMac(ip: string): string | undefined;
  /**
   * Call `listener` with every event recorded from now on (the console's live timeline);
   * returns the unsubscribe function. A listener that throws is dropped, never the record.
   */
  subscribe?(listener: (event: BootEvent) => void): () => void;
}

/**
 * An in-memory EventLog bounded per machine and in the number of machines, so a flood of
 * spoofed MACs cannot grow memory without limit.
 */
export function createEventLog(options: { perMachine?: number; machines?: number; now?: () => Date } = {}): EventLog {
  const perMachine = options.perMachine ?? 200;
  const maxMachines = options.machines ?? 10_000;
  const now = options.now;
  // The time of an event as ISO 8601; events in the same millisecond share one string.
  let lastMs = Number.NaN;
  let lastAt = '';
  const stamp = (): string => {
    if (now !== undefined) return now().toISOString();
    const ms = Date.now();
    if (ms !== lastMs) {
      lastMs = ms;
      lastAt = new Date(ms).toISOString();
    }
    return lastAt;
  };
  const byMac = new Map<string, BootEvent[]>();
  const ipToMac = new Map<string, string>();
  const macToIp = new Map<string, string>();
  // Address -> the MAC its last untrusted request named (timelineMac), bounded like the machines.
  const claimed = new Map<string, string>();
  let seq: BootEvent[] = [];
  const listeners = new Set<(event: BootEvent) => void>();
  const forget = (mac: string): void => {
    const ip = macToIp.get(mac);
    if (ip === undefined) return;
    macToIp.delete(mac);
    if (ipToMac.get(ip) === mac) ipToMac.delete(ip);
  };

  return {
    record(input) {
      // Built field by field, not spread: a spread of inputs of many shapes is the slow path
      // (profiled: the largest cost of recording a DHCP offer). Absent fields stay absent.
      const event: BootEvent = { at: input.at ?? stamp(), mac: input.mac, type: input.type };
      if (input.ip !== undefined) event.ip = input.ip;
      if (input.detail !== undefined) event.detail = input.detail;
      if (input.addressTrusted !== undefined) event.addressTrusted = input.addressTrusted;
      const key = event.mac;
      let list = byMac.get(key);
      if (!list) {
        list = [];
        byMac.set(key, list);
        // A forgotten machine's address goes with it: spoofed MACs with spoofed ciaddrs must not grow the address maps.
        trimOldest(byMac, maxMachines, forget);
      }
      list.push(event);
      if (list.length > perMachine) list.shift();
      seq.push(event);
      if (seq.length > perMachine * 10) seq = seq.slice(-perMachine * 5);
      if (event.ip !== undefined && teachesAddress(event)) {
        ipToMac.set(event.ip, event.mac);
        macToIp.set(event.mac, event.ip);
      } else if (event.mac && event.ip !== undefined && event.ip !== '0.0.0.0' && claimed.get(event.ip) !== event.mac) {
        claimed.delete(event.ip);
        claimed.set(event.ip, event.mac);
        trimOldest(claimed, maxMachines);
      }
      for (const listener of listeners) {
        try {
          listener(event);
        } catch {
          listeners.delete(listener);
        }
      }
      return event;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    list(filter = {}) {
      const limit = filter.limit ?? perMachine;
      if (filter.mac !== undefined) {
        const mac = normalizeMac(filter.mac) ?? filter.mac;
        return (byMac.get(mac) ?? []).slice(-limit);
      }
      return seq.slice(-limit);
    },
    macForIp(ip) {
      return ipToMac.get(ip);
    },
    lastIp(mac) {
      return macToIp.get(normalizeMac(mac) ?? mac);
    },
    timelineMac(ip) {
      return ipToMac.get(ip) ?? claimed.get(ip);
    },
  };
}
