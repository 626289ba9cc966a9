/**
 * In proxy mode another server hands out the addresses, but every PXE client's DHCPREQUEST to it
 * is broadcast on port 67, where the ProxyDHCP listens: it names the address the client takes
 * (option 50, RFC 2132 section 9.1) and the server it takes it from (option 54). Noting it lets
 * the HTTP side know which address belongs to which MAC (http/boot-sessions.ts), for BIOS iPXE
 * clients that never send a 4011 request with ciaddr. Pure: a packet in, an observation out.
 */
import { requestedAddress } from './lease-decisions.js';
import { MessageType, Opt } from './options.js';
import { clientMac, getOption, type DhcpPacket } from './packet.js';
import { readIp } from './wire.js';

/** A PXE client taking an address from another DHCP server. */
export interface RequestSighting {
  mac: string;
  ip: string;
  /** The DHCP server it names (option 54). */
  server: string;
}

/** The sighting a packet is, or undefined (not a PXE client's REQUEST to another server). */
export function snoopRequest(packet: DhcpPacket, ownAddress: string): RequestSighting | undefined {
  const type = getOption(packet, Opt.MESSAGE_TYPE);
  if (!type || type.length !== 1 || type[0] !== MessageType.REQUEST) return undefined;
  const vendor = getOption(packet, Opt.VENDOR_CLASS)?.toString('latin1') ?? '';
  if (!vendor.startsWith('PXEClient') && !vendor.startsWith('HTTPClient')) return undefined;
  const sid = getOption(packet, Opt.SERVER_ID);
  const server = sid && sid.length === 4 ? readIp(sid) : undefined;
  if (server === undefined || server === ownAddress) return undefined;
  const ip = requestedAddress(packet);
  if (ip === undefined || ip === '0.0.0.0' || ip === '255.255.255.255') return undefined;
  return { mac: clientMac(packet), ip, server };
}
