/**
 * Wire primitives the DHCP codecs share (packet.ts for the header, options.ts for the typed
 * options, vendor-options.ts for options 43 and 77): the two error codes, IPv4 addresses as
 * octets, NUL-terminated strings and the code/length/value walk of encapsulated sub-options.
 *
 * Pure data in, data out. Anything malformed raises an ApplianceError with code
 * `ERR_DHCP_DECODE` (or `ERR_DHCP_ENCODE`) and never anything else.
 */
import { ApplianceError } from '../errors.js';

/** Error code for a datagram that is not a well-formed DHCP packet. */
export const ERR_DHCP_DECODE = 'ERR_DHCP_DECODE';
/** Error code for a packet value that cannot be encoded. */
export const ERR_DHCP_ENCODE = 'ERR_DHCP_ENCODE';

/** One option: its code and its whole (joined, RFC 3396) value. */
export interface DhcpOption {
  code: number;
  data: Buffer;
}

/** An `ERR_DHCP_DECODE` error naming what is malformed. */
export function decodeError(message: string, detail?: Record<string, unknown>): ApplianceError {
  return new ApplianceError(ERR_DHCP_DECODE, message, detail);
}

/** An `ERR_DHCP_ENCODE` error naming the value that does not fit. */
export function encodeError(message: string, detail?: Record<string, unknown>): ApplianceError {
  return new ApplianceError(ERR_DHCP_ENCODE, message, detail);
}

/** Dotted-quad text of 4 octets at `offset`. */
export function readIp(buf: Uint8Array, offset = 0): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

/**
 * The 32-bit value of a dotted-quad IPv4 address (1-3 decimal digits per part, each <= 255);
 * undefined when it is not one. A hand-written scan: a regex, an array and a Buffer per address
 * showed in the DHCP answer path's profile (several addresses per packet).
 */
export function parseIpNumber(ip: string): number | undefined {
  const len = ip.length;
  if (len < 7 || len > 15) return undefined;
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < len; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return undefined;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots += 1;
    } else if (c >= 48 && c <= 57) {
      if (digits === 3) return undefined;
      part = part * 10 + (c - 48);
      digits += 1;
      if (part > 255) return undefined;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || digits === 0) return undefined;
  return value * 256 + part;
}

/** Parse a dotted-quad IPv4 address into 4 octets; undefined when it is not one. */
export function parseIp(ip: string): Buffer | undefined {
  const n = parseIpNumber(ip);
  if (n === undefined) return undefined;
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** The 4 octets of `ip`; throws `ERR_DHCP_ENCODE` naming `field` when it is not an address. */
export function ipBytes(ip: string, field: string): Buffer {
  const b = parseIp(ip);
  if (!b) throw encodeError(`${field} ${JSON.stringify(ip)} is not a dotted-quad ipv4 address`);
  return b;
}

/** Write the 4 octets of `ip` at `offset` (no allocation); throws `ERR_DHCP_ENCODE` naming `field` when it is not an address. */
export function writeIp(buf: Buffer, offset: number, ip: string, field: string): void {
  const n = parseIpNumber(ip);
  if (n === undefined) throw encodeError(`${field} ${JSON.stringify(ip)} is not a dotted-quad ipv4 address`);
  buf.writeUInt32BE(n, offset);
}

/** Latin1 text up to the first NUL (or the whole buffer). */
export function cString(buf: Buffer): string {
  const nul = buf.indexOf(0);
  return buf.toString('latin1', 0, nul === -1 ? buf.length : nul);
}

/**
 * Split an encapsulated option (43 for PXE, 175 for iPXE) into its sub-options: PAD skipped,
 * END stops, every sub-option copied out of the datagram.
 */
export function decodeSubOptions(data: Buffer, parent: number): DhcpOption[] {
  const out: DhcpOption[] = [];
  let i = 0;
  while (i < data.length) {
    const code = data[i]!;
    if (code === 0) {
      i += 1;
      continue;
    }
    if (code === 255) break;
    if (i + 1 >= data.length) throw decodeError(`option ${parent} sub-option ${code} has no length octet`);
    const len = data[i + 1]!;
    if (i + 2 + len > data.length) {
      throw decodeError(`option ${parent} sub-option ${code} length ${len} runs past the end of option ${parent}`);
    }
    out.push({ code, data: Buffer.from(data.subarray(i + 2, i + 2 + len)) });
    i += 2 + len;
  }
  return out;
}
