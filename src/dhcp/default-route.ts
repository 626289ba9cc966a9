/**
 * Which interfaces carry this host's IPv4 default route (/proc/net/route, this network
 * namespace). `--dhcp-mode auto` never becomes a server on such an interface: it is an uplink to
 * a network somebody else runs, where an unanswered probe means a missed answer.
 */
import { readFileSync } from 'node:fs';

/** Interfaces with a default route in a /proc/net/route text (pure). */
export function parseDefaultRouteInterfaces(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...; flags bit 0 = RTF_UP.
    if (cols.length < 8) continue;
    const [iface, destination, , flags, , , , mask] = cols;
    if (destination === '00000000' && mask === '00000000' && (parseInt(flags!, 16) & 1) === 1 && !out.includes(iface!)) out.push(iface!);
  }
  return out;
}

/**
 * `parse` of the route table `read` returns; [] when it cannot be read (no /proc, another
 * network stack): without a table nothing is known to be an uplink. Shared by the IPv4 reader
 * below and the IPv6 one (../dhcp6/probe.ts), whose parsers differ.
 */
export function readRouteTable(read: () => string, parse: (text: string) => string[]): string[] {
  try {
    return parse(read());
  } catch {
    return [];
  }
}

/** Interfaces carrying a default route here; [] when /proc/net/route cannot be read. */
export function defaultRouteInterfaces(read: () => string = () => readFileSync('/proc/net/route', 'utf8')): string[] {
  return readRouteTable(read, parseDefaultRouteInterfaces);
}
