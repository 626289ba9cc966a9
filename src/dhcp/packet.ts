/**
 * DHCP/BOOTP packet codec: the RFC 2131 header, the options area (RFC 2132 code/length/value,
 * RFC 3396 long options, option overload 52). Options by name and their typed view are
 * options.ts; the values of options 43 and 77 are vendor-options.ts.
 *
 * Pure data in, data out: no sockets, no logging. Every decoder has its encoder; a canonical
 * packet (no PAD between options, zero fill after END to at least 300 bytes, options not split
 * unless longer than 255) round-trips byte for byte. Anything malformed raises an
 * ApplianceError with code `ERR_DHCP_DECODE` (or `ERR_DHCP_ENCODE`) and never anything else.
 */
import { Opt, readOptions, type DhcpOption, type TypedOptions } from './options.js';
import { cString, decodeError, encodeError, readIp, writeIp } from './wire.js';

/** RFC 2131 section 3: the four octets that start the options field. */
export const MAGIC_COOKIE = 0x63825363;
/** Fixed BOOTP header (236 octets) plus the magic cookie. */
export const HEADER_LENGTH = 240;
/**
 * RFC 1542 section 2.1: relay agents and many BOOTP clients expect at least 300 octets, so
 * replies are zero-filled to this size (dnsmasq does the same).
 */
export const MIN_PACKET_LENGTH = 300;

/** BOOTP op codes (RFC 951). */
export const BootOp = { REQUEST: 1, REPLY: 2 } as const;

/** Broadcast bit of `flags` (RFC 2131 section 2, figure 2). */
export const BROADCAST_FLAG = 0x8000;

/** A decoded DHCP packet. Options keep the order of first appearance. */
export interface DhcpPacket {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** All 16 octets of chaddr; the hardware address is the first `hlen`. */
  chaddr: Buffer;
  /** Server host name up to the first NUL ('' when option 52 used the field for options). */
  sname: string;
  /** Boot file name up to the first NUL ('' when option 52 used the field for options). */
  file: string;
  /**
   * Options in order of first appearance, repeated codes concatenated (RFC 3396 section 7).
   * Option 52 itself is consumed on decode and not listed.
   */
  options: DhcpOption[];
}

/**
 * Walk one options area (options field, or file/sname under overload) and append its options
 * to `out`, joining repeated codes (RFC 3396). Returns the option 52 value if one was seen.
 */
function readOptionArea(buf: Buffer, start: number, end: number, where: string, out: Map<number, Buffer[]>, allowOverload: boolean): number | undefined {
  let overload: number | undefined;
  let i = start;
  while (i < end) {
    const code = buf[i]!;
    if (code === Opt.PAD) {
      i += 1;
      continue;
    }
    if (code === Opt.END) return overload;
    if (i + 1 >= end) {
      throw decodeError(`option ${code} at offset ${i} in the ${where} has no length octet`, { code, offset: i });
    }
    const len = buf[i + 1]!;
    if (i + 2 + len > end) {
      throw decodeError(`option ${code} length ${len} at offset ${i} runs past the end of the ${where}`, {
        code,
        offset: i,
        length: len,
      });
    }
    const data = buf.subarray(i + 2, i + 2 + len);
    if (code === Opt.OVERLOAD) {
      if (!allowOverload) throw decodeError(`option 52 (overload) inside the ${where} is not allowed`);
      if (len !== 1) throw decodeError(`option 52 length ${len}, expected 1`);
      const v = data[0]!;
      if (v < 1 || v > 3) throw decodeError(`option 52 value ${v}, expected 1, 2 or 3`);
      overload = v;
    } else {
      const parts = out.get(code);
      if (parts) parts.push(data);
      else out.set(code, [data]);
    }
    i += 2 + len;
  }
  // A missing END is tolerated when the area is used up exactly: some clients omit it.
  return overload;
}

/**
 * Decode a DHCP datagram (UDP payload). Throws ApplianceError `ERR_DHCP_DECODE` naming what is
 * wrong; never throws anything else. Options this project reads by type (53, 54, 57, 61, 93, 94,
 * 97, 77, 175, and 43 of PXE clients) are validated here too.
 */
export function decodePacket(input: Uint8Array): DhcpPacket {
  return decodeWith(input, true).packet;
}

/** A received datagram decoded for answering: the packet and its typed options (read once). */
export interface DecodedRequest {
  packet: DhcpPacket;
  typed: TypedOptions;
}

/**
 * Decode a received datagram as decodePacket does, without copying: the packet's options and
 * chaddr are views into `datagram`, which the caller must not reuse (dgram hands every datagram
 * its own buffer). The typed options are returned too, so the answer path reads them once.
 */
export function decodeDatagram(datagram: Buffer): DecodedRequest {
  return decodeWith(datagram, false);
}

function decodeWith(input: Uint8Array, copy: boolean): DecodedRequest {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length < HEADER_LENGTH) {
    throw decodeError(`packet is ${buf.length} bytes, shorter than the ${HEADER_LENGTH}-byte dhcp header`, {
      length: buf.length,
    });
  }
  const cookie = buf.readUInt32BE(236);
  if (cookie !== MAGIC_COOKIE) {
    throw decodeError(`magic cookie 0x${cookie.toString(16).padStart(8, '0')} is not 0x63825363 (bootp without dhcp)`);
  }
  const op = buf[0]!;
  if (op !== BootOp.REQUEST && op !== BootOp.REPLY) throw decodeError(`op ${op}, expected 1 or 2`);
  const hlen = buf[2]!;
  if (hlen > 16) throw decodeError(`hlen ${hlen}, expected at most 16`);

  const collected = new Map<number, Buffer[]>();
  const overload = readOptionArea(buf, HEADER_LENGTH, buf.length, 'options field', collected, true);
  const fileField = buf.subarray(108, 236);
  const snameField = buf.subarray(44, 108);
  // RFC 3396 section 7 / RFC 2132 section 9.3: options field first, then file, then sname.
  if (overload === 1 || overload === 3) readOptionArea(buf, 108, 236, 'file field', collected, false);
  if (overload === 2 || overload === 3) readOptionArea(buf, 44, 108, 'sname field', collected, false);

  const options: DhcpOption[] = [];
  for (const [code, parts] of collected) {
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    options.push({ code, data: copy && parts.length === 1 ? Buffer.from(data) : data });
  }

  const packet: DhcpPacket = {
    op,
    htype: buf[1]!,
    hlen,
    hops: buf[3]!,
    xid: buf.readUInt32BE(4),
    secs: buf.readUInt16BE(8),
    flags: buf.readUInt16BE(10),
    ciaddr: readIp(buf, 12),
    yiaddr: readIp(buf, 16),
    siaddr: readIp(buf, 20),
    giaddr: readIp(buf, 24),
    chaddr: copy ? Buffer.from(buf.subarray(28, 44)) : buf.subarray(28, 44),
    sname: overload === 2 || overload === 3 ? '' : cString(snameField),
    file: overload === 1 || overload === 3 ? '' : cString(fileField),
    options,
  };
  // Validate the typed options now so a broken one is reported as a decode error up front.
  return { packet, typed: readOptions(packet) };
}

/**
 * Encode a packet. Options longer than 255 octets are split into consecutive instances
 * (RFC 3396 section 5); END is appended and the result zero-filled to `minLength` (default
 * 300). Throws `ERR_DHCP_ENCODE` for values that do not fit their fields.
 */
export function encodePacket(packet: DhcpPacket, options: { minLength?: number } = {}): Buffer {
  const minLength = options.minLength ?? MIN_PACKET_LENGTH;
  const u8 = (v: number, f: string): number => {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw encodeError(`${f} ${v} is not an octet`);
    return v;
  };
  // One buffer of the final size, written in place (a buffer per option and two concats showed in
  // the answer path's profile).
  let length = HEADER_LENGTH + 1;
  for (const opt of packet.options) {
    if (!Number.isInteger(opt.code) || opt.code <= 0 || opt.code >= 255) {
      throw encodeError(`option code ${opt.code} cannot be encoded (1..254)`);
    }
    if (opt.code === Opt.OVERLOAD) throw encodeError('option 52 (overload) is not produced by this encoder');
    // RFC 3396 section 5: a long option is split into consecutive instances of the same code.
    length += opt.data.length === 0 ? 2 : opt.data.length + 2 * Math.ceil(opt.data.length / 255);
  }
  // From Node's buffer pool (zeroed here): a reply of ~300 octets is then a slice of a shared
  // ArrayBuffer, not an ArrayBuffer of its own for the young-generation GC to sweep.
  const out = Buffer.allocUnsafe(Math.max(length, minLength)).fill(0);
  out[0] = u8(packet.op, 'op');
  out[1] = u8(packet.htype, 'htype');
  out[2] = u8(packet.hlen, 'hlen');
  out[3] = u8(packet.hops, 'hops');
  if (!Number.isInteger(packet.xid) || packet.xid < 0 || packet.xid > 0xffffffff) {
    throw encodeError(`xid ${packet.xid} is not a 32-bit unsigned integer`);
  }
  out.writeUInt32BE(packet.xid, 4);
  if (!Number.isInteger(packet.secs) || packet.secs < 0 || packet.secs > 0xffff) throw encodeError(`secs ${packet.secs} out of range`);
  out.writeUInt16BE(packet.secs, 8);
  if (!Number.isInteger(packet.flags) || packet.flags < 0 || packet.flags > 0xffff) throw encodeError(`flags ${packet.flags} out of range`);
  out.writeUInt16BE(packet.flags, 10);
  writeIp(out, 12, packet.ciaddr, 'ciaddr');
  writeIp(out, 16, packet.yiaddr, 'yiaddr');
  writeIp(out, 20, packet.siaddr, 'siaddr');
  writeIp(out, 24, packet.giaddr, 'giaddr');
  if (packet.chaddr.length > 16) throw encodeError(`chaddr is ${packet.chaddr.length} bytes, at most 16 fit`);
  out.set(packet.chaddr, 28);
  if (!fitsLatin1(packet.sname, 64)) throw encodeError(`sname does not fit 64 latin1 bytes`);
  out.write(packet.sname, 44, 'latin1');
  if (!fitsLatin1(packet.file, 128)) {
    throw encodeError(`file ${JSON.stringify(packet.file.slice(0, 40))} does not fit 128 latin1 bytes`);
  }
  out.write(packet.file, 108, 'latin1');
  out.writeUInt32BE(MAGIC_COOKIE, 236);

  let at = HEADER_LENGTH;
  for (const opt of packet.options) {
    const data = opt.data;
    if (data.length === 0) {
      out[at] = opt.code;
      at += 2; // length 0
      continue;
    }
    for (let i = 0; i < data.length; i += 255) {
      const n = Math.min(255, data.length - i);
      out[at] = opt.code;
      out[at + 1] = n;
      out.set(i === 0 && n === data.length ? data : data.subarray(i, i + n), at + 2);
      at += 2 + n;
    }
  }
  out[at] = Opt.END;
  return out;
}

/** True when `text` is at most `max` characters, each one latin1 byte. */
function fitsLatin1(text: string, max: number): boolean {
  if (text.length > max) return false;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return false;
  return true;
}

/** The joined value of option `code`, if present. */
export function getOption(packet: DhcpPacket, code: number): Buffer | undefined {
  return packet.options.find((o) => o.code === code)?.data;
}

/** The client's hardware address as lowercase `aa:bb:..` (the first `hlen` octets of chaddr). */
export function clientMac(packet: DhcpPacket): string {
  const n = Math.min(packet.hlen, 16, packet.chaddr.length);
  // Per packet: a table of octet texts, no arrays (this showed in the answer path's profile).
  let mac = '';
  for (let i = 0; i < n; i++) mac += i === 0 ? HEX_OCTETS[packet.chaddr[i]!]! : `:${HEX_OCTETS[packet.chaddr[i]!]!}`;
  return mac;
}

const HEX_OCTETS: readonly string[] = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));
