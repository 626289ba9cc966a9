/**
 * IPv4 subnet arithmetic and the admission rule that keeps the DHCP server to the clients of
 * its own interface. Pure functions: no sockets.
 */
import { type DhcpPacket } from './packet.js';
import { parseIpNumber } from './wire.js';

/** An IPv4 subnet: network address as a 32-bit number and prefix length. */
export interface Subnet {
  network: number;
  prefix: number;
  /** `10.99.0.0/24` */
  cidr: string;
}

/** 32-bit unsigned value of a dotted quad; undefined when it is not one. */
export function ipToNumber(ip: string): number | undefined {
  return parseIpNumber(ip);
}

/** Dotted quad of a 32-bit unsigned value. */
export function numberToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Subnet of `address/prefix` (host bits cleared); undefined when either part is invalid. */
export function subnetOf(address: string, prefix: number): Subnet | undefined {
  const n = ipToNumber(address);
  if (n === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) return undefined;
  const network = (n & maskOf(prefix)) >>> 0;
  return { network, prefix, cidr: `${numberToIp(network)}/${prefix}` };
}

/** Parse `a.b.c.d/n`; undefined when it is not one. */
export function parseCidr(cidr: string): Subnet | undefined {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(cidr.trim());
  if (!m) return undefined;
  return subnetOf(m[1]!, Number(m[2]));
}

/** True when `ip` lies inside `subnet`. */
export function inSubnet(ip: string, subnet: Subnet): boolean {
  const n = ipToNumber(ip);
  return n !== undefined && (n & maskOf(subnet.prefix)) >>> 0 === subnet.network;
}

/** The subnet-directed broadcast address (`10.99.0.255` for 10.99.0.0/24). */
export function broadcastOf(subnet: Subnet): string {
  return numberToIp((subnet.network | ~maskOf(subnet.prefix)) >>> 0);
}

/**
 * Whether a datagram may be answered by a server that serves `subnet` (undefined = yes, else
 * the reason). Relayed requests (giaddr set) come from other subnets by design and are admitted
 * when `allowRelayed`. Otherwise a source address or ciaddr outside the subnet means the client
 * sits on another interface of this host. A broadcast DISCOVER from 0.0.0.0 carries nothing
 * that says which interface it came in on (Node has no IP_PKTINFO): it is admitted, and the
 * reply is sent so that it can only leave by the configured interface (see server.ts).
 */
export function admissionRefusal(
  packet: Pick<DhcpPacket, 'ciaddr' | 'giaddr'>,
  source: string,
  subnet: Subnet,
  allowRelayed: boolean,
  /** Networks behind relays whose clients may also talk to us directly (renewals by unicast). */
  relayed: readonly Subnet[] = [],
): string | undefined {
  if (packet.giaddr !== '0.0.0.0') {
    return allowRelayed ? undefined : `relayed by ${packet.giaddr}, relayed requests are not answered`;
  }
  const ours = (ip: string): boolean => inSubnet(ip, subnet) || (allowRelayed && relayed.some((r) => inSubnet(ip, r)));
  if (packet.ciaddr !== '0.0.0.0' && !ours(packet.ciaddr)) {
    return `ciaddr ${packet.ciaddr} is outside ${subnet.cidr}`;
  }
  if (source !== '0.0.0.0' && !ours(source)) return `source ${source} is outside ${subnet.cidr}`;
  return undefined;
}
