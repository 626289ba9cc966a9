/**
 * DHCP/BOOTP packet codec (RFC 2131 header, RFC 2132 options, RFC 3396 long options, option
 * overload 52, RFC 3004 user class, RFC 4578 PXE options, PXE 2.1 option 43 sub-options).
 *
 * Pure data in, data out: no sockets, no logging. Every decoder has its encoder; a canonical
 * packet (no PAD between options, zero fill after END to at least 300 bytes, options not split
 * unless longer than 255) round-trips byte for byte. Anything malformed raises an
 * ApplianceError with code `ERR_DHCP_DECODE` (or `ERR_DHCP_ENCODE`) and never anything else.
 */
import { ApplianceError } from '../errors.js';

/** Error code for a datagram that is not a well-formed DHCP packet. */
export const ERR_DHCP_DECODE = 'ERR_DHCP_DECODE';
/** Error code for a packet value that cannot be encoded. */
export const ERR_DHCP_ENCODE = 'ERR_DHCP_ENCODE';

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

/** DHCP message types, option 53 (RFC 2132 section 9.6). */
export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

/** Option codes this project reads or writes by name. */
export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  VENDOR: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_LIST: 55,
  MAX_MESSAGE_SIZE: 57,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  TFTP_SERVER: 66,
  BOOTFILE: 67,
  USER_CLASS: 77,
  CLIENT_ARCH: 93,
  CLIENT_NDI: 94,
  CLIENT_UUID: 97,
  IPXE_ENCAP: 175,
  END: 255,
} as const;

/** PXE 2.1 option 43 sub-option codes. */
export const PxeOpt = {
  DISCOVERY_CONTROL: 6,
  MULTICAST_ADDRESS: 7,
  BOOT_SERVERS: 8,
  BOOT_MENU: 9,
  MENU_PROMPT: 10,
  BOOT_ITEM: 71,
} as const;

/** Broadcast bit of `flags` (RFC 2131 section 2, figure 2). */
export const BROADCAST_FLAG = 0x8000;

/** One option: its code and its whole (joined, RFC 3396) value. */
export interface DhcpOption {
  code: number;
  data: Buffer;
}

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

function decodeError(message: string, detail?: Record<string, unknown>): ApplianceError {
  return new ApplianceError(ERR_DHCP_DECODE, message, detail);
}

function encodeError(message: string, detail?: Record<string, unknown>): ApplianceError {
  return new ApplianceError(ERR_DHCP_ENCODE, message, detail);
}

/** Dotted-quad text of 4 octets at `offset`. */
export function readIp(buf: Uint8Array, offset = 0): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

/** Parse a dotted-quad IPv4 address into 4 octets; undefined when it is not one. */
export function parseIp(ip: string): Buffer | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = [m[1], m[2], m[3], m[4]].map(Number);
  if (parts.some((n) => n > 255)) return undefined;
  return Buffer.from(parts);
}

function ipBytes(ip: string, field: string): Buffer {
  const b = parseIp(ip);
  if (!b) throw encodeError(`${field} ${JSON.stringify(ip)} is not a dotted-quad ipv4 address`);
  return b;
}

function cString(buf: Buffer): string {
  const nul = buf.indexOf(0);
  return buf.toString('latin1', 0, nul === -1 ? buf.length : nul);
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
    options.push({ code, data: Buffer.from(parts.length === 1 ? parts[0]! : Buffer.concat(parts)) });
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
    chaddr: Buffer.from(buf.subarray(28, 44)),
    sname: overload === 2 || overload === 3 ? '' : cString(snameField),
    file: overload === 1 || overload === 3 ? '' : cString(fileField),
    options,
  };
  // Validate the typed options now so a broken one is reported as a decode error up front.
  readOptions(packet);
  return packet;
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
  const header = Buffer.alloc(HEADER_LENGTH);
  header[0] = u8(packet.op, 'op');
  header[1] = u8(packet.htype, 'htype');
  header[2] = u8(packet.hlen, 'hlen');
  header[3] = u8(packet.hops, 'hops');
  if (!Number.isInteger(packet.xid) || packet.xid < 0 || packet.xid > 0xffffffff) {
    throw encodeError(`xid ${packet.xid} is not a 32-bit unsigned integer`);
  }
  header.writeUInt32BE(packet.xid, 4);
  if (!Number.isInteger(packet.secs) || packet.secs < 0 || packet.secs > 0xffff) throw encodeError(`secs ${packet.secs} out of range`);
  header.writeUInt16BE(packet.secs, 8);
  if (!Number.isInteger(packet.flags) || packet.flags < 0 || packet.flags > 0xffff) throw encodeError(`flags ${packet.flags} out of range`);
  header.writeUInt16BE(packet.flags, 10);
  ipBytes(packet.ciaddr, 'ciaddr').copy(header, 12);
  ipBytes(packet.yiaddr, 'yiaddr').copy(header, 16);
  ipBytes(packet.siaddr, 'siaddr').copy(header, 20);
  ipBytes(packet.giaddr, 'giaddr').copy(header, 24);
  if (packet.chaddr.length > 16) throw encodeError(`chaddr is ${packet.chaddr.length} bytes, at most 16 fit`);
  packet.chaddr.copy(header, 28);
  const sname = Buffer.from(packet.sname, 'latin1');
  if (sname.length > 64 || sname.toString('latin1') !== packet.sname) throw encodeError(`sname does not fit 64 latin1 bytes`);
  sname.copy(header, 44);
  const file = Buffer.from(packet.file, 'latin1');
  if (file.length > 128 || file.toString('latin1') !== packet.file) {
    throw encodeError(`file ${JSON.stringify(packet.file.slice(0, 40))} does not fit 128 latin1 bytes`);
  }
  file.copy(header, 108);
  header.writeUInt32BE(MAGIC_COOKIE, 236);

  const parts: Buffer[] = [header];
  for (const opt of packet.options) {
    if (!Number.isInteger(opt.code) || opt.code <= 0 || opt.code >= 255) {
      throw encodeError(`option code ${opt.code} cannot be encoded (1..254)`);
    }
    if (opt.code === Opt.OVERLOAD) throw encodeError('option 52 (overload) is not produced by this encoder');
    if (opt.data.length === 0) {
      parts.push(Buffer.from([opt.code, 0]));
      continue;
    }
    // RFC 3396 section 5: split a long option into consecutive instances of the same code.
    for (let i = 0; i < opt.data.length; i += 255) {
      const chunk = opt.data.subarray(i, Math.min(i + 255, opt.data.length));
      parts.push(Buffer.from([opt.code, chunk.length]), chunk);
    }
  }
  parts.push(Buffer.from([Opt.END]));
  let out = Buffer.concat(parts);
  if (out.length < minLength) out = Buffer.concat([out, Buffer.alloc(minLength - out.length)]);
  return out;
}

/** The joined value of option `code`, if present. */
export function getOption(packet: DhcpPacket, code: number): Buffer | undefined {
  return packet.options.find((o) => o.code === code)?.data;
}

/** The client's hardware address as lowercase `aa:bb:..` (the first `hlen` octets of chaddr). */
export function clientMac(packet: DhcpPacket): string {
  const n = Math.min(packet.hlen, 16);
  return [...packet.chaddr.subarray(0, n)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

// ---------------------------------------------------------------------------------------------
// Option value builders

/** Option with a one-octet value. */
export function u8Option(code: number, value: number): DhcpOption {
  return { code, data: Buffer.from([value & 0xff]) };
}

/** Option holding one IPv4 address. */
export function ipOption(code: number, ip: string): DhcpOption {
  return { code, data: ipBytes(ip, `option ${code}`) };
}

/** Option holding text (latin1, no NUL). */
export function textOption(code: number, text: string): DhcpOption {
  return { code, data: Buffer.from(text, 'latin1') };
}

// ---------------------------------------------------------------------------------------------
// RFC 3004 user class (77)

/** Option 77 as sent: iPXE sends the raw text `iPXE`, RFC 3004 wants length-prefixed items. */
export interface UserClass {
  format: 'raw' | 'rfc3004';
  classes: string[];
}

/**
 * Decode option 77. A value that parses exactly as RFC 3004 length-prefixed items is read that
 * way; otherwise it is one raw class (iPXE sends `iPXE` without a length prefix).
 */
export function decodeUserClass(data: Buffer): UserClass {
  if (data.length === 0) throw decodeError('option 77 length 0, expected at least 1');
  const classes: string[] = [];
  let i = 0;
  while (i < data.length) {
    const len = data[i]!;
    if (len === 0 || i + 1 + len > data.length) return { format: 'raw', classes: [data.toString('latin1')] };
    classes.push(data.toString('latin1', i + 1, i + 1 + len));
    i += 1 + len;
  }
  return { format: 'rfc3004', classes };
}

/** Encode option 77 in the given format. */
export function encodeUserClass(value: UserClass): Buffer {
  if (value.format === 'raw') return Buffer.from(value.classes.join(''), 'latin1');
  return Buffer.concat(
    value.classes.map((c) => {
      const b = Buffer.from(c, 'latin1');
      if (b.length === 0 || b.length > 255) throw encodeError(`user class item length ${b.length}, expected 1..255`);
      return Buffer.concat([Buffer.from([b.length]), b]);
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Encapsulated sub-options (43 for PXE, 175 for iPXE)

function decodeSubOptions(data: Buffer, parent: number): DhcpOption[] {
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

/** Option 43 of a PXE client or server (PXE 2.1 spec, table 2-1). */
export interface PxeVendorOptions {
  /** 6: bit 0 disable broadcast, bit 1 disable multicast, bit 2 only listed servers, bit 3 boot file given (skip discovery). */
  discoveryControl?: number;
  /** 7: multicast discovery address. */
  multicastAddress?: string;
  /** 8: boot servers by type. */
  bootServers?: Array<{ type: number; addresses: string[] }>;
  /** 9: boot menu entries. */
  bootMenu?: Array<{ type: number; description: string }>;
  /** 10: menu prompt (timeout seconds, 255 = wait for key) and text. */
  menuPrompt?: { timeout: number; prompt: string };
  /** 71: the boot item a client asks for on 4011 and the server echoes. */
  bootItem?: { type: number; layer: number };
  /** Sub-options not named above, kept raw. */
  other?: DhcpOption[];
}

/** Decode option 43 as PXE sub-options. Throws `ERR_DHCP_DECODE` when malformed. */
export function decodePxeVendorOptions(data: Buffer): PxeVendorOptions {
  const result: PxeVendorOptions = {};
  for (const { code, data: d } of decodeSubOptions(data, 43)) {
    switch (code) {
      case PxeOpt.DISCOVERY_CONTROL:
        if (d.length !== 1) throw decodeError(`option 43 sub-option 6 length ${d.length}, expected 1`);
        result.discoveryControl = d[0]!;
        break;
      case PxeOpt.MULTICAST_ADDRESS:
        if (d.length !== 4) throw decodeError(`option 43 sub-option 7 length ${d.length}, expected 4`);
        result.multicastAddress = readIp(d);
        break;
      case PxeOpt.BOOT_SERVERS: {
        const servers: Array<{ type: number; addresses: string[] }> = [];
        let i = 0;
        while (i < d.length) {
          if (i + 3 > d.length) throw decodeError('option 43 sub-option 8 entry truncated before its count');
          const type = d.readUInt16BE(i);
          const count = d[i + 2]!;
          if (i + 3 + count * 4 > d.length) throw decodeError(`option 43 sub-option 8 lists ${count} addresses but is too short`);
          const addresses: string[] = [];
          for (let k = 0; k < count; k++) addresses.push(readIp(d, i + 3 + k * 4));
          servers.push({ type, addresses });
          i += 3 + count * 4;
        }
        result.bootServers = servers;
        break;
      }
      case PxeOpt.BOOT_MENU: {
        const menu: Array<{ type: number; description: string }> = [];
        let i = 0;
        while (i < d.length) {
          if (i + 3 > d.length) throw decodeError('option 43 sub-option 9 entry truncated before its length');
          const type = d.readUInt16BE(i);
          const len = d[i + 2]!;
          if (i + 3 + len > d.length) throw decodeError(`option 43 sub-option 9 description length ${len} runs past its end`);
          menu.push({ type, description: d.toString('latin1', i + 3, i + 3 + len) });
          i += 3 + len;
        }
        result.bootMenu = menu;
        break;
      }
      case PxeOpt.MENU_PROMPT:
        if (d.length < 1) throw decodeError('option 43 sub-option 10 length 0, expected at least 1');
        result.menuPrompt = { timeout: d[0]!, prompt: d.toString('latin1', 1) };
        break;
      case PxeOpt.BOOT_ITEM:
        if (d.length !== 4) throw decodeError(`option 43 sub-option 71 length ${d.length}, expected 4`);
        result.bootItem = { type: d.readUInt16BE(0), layer: d.readUInt16BE(2) };
        break;
      default:
        (result.other ??= []).push({ code, data: d });
    }
  }
  return result;
}

/**
 * Encode PXE option 43 sub-options, in the order dnsmasq uses (6, 7, 10, 8, 9, 71, others),
 * terminated by END as the PXE spec requires.
 */
export function encodePxeVendorOptions(value: PxeVendorOptions): Buffer {
  const parts: Buffer[] = [];
  const sub = (code: number, data: Buffer): void => {
    if (data.length > 255) throw encodeError(`option 43 sub-option ${code} is ${data.length} bytes, at most 255 fit`);
    parts.push(Buffer.from([code, data.length]), data);
  };
  const u16 = (n: number): Buffer => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n & 0xffff);
    return b;
  };
  if (value.discoveryControl !== undefined) sub(PxeOpt.DISCOVERY_CONTROL, Buffer.from([value.discoveryControl & 0xff]));
  if (value.multicastAddress !== undefined) sub(PxeOpt.MULTICAST_ADDRESS, ipBytes(value.multicastAddress, 'option 43.7'));
  if (value.menuPrompt !== undefined) {
    sub(PxeOpt.MENU_PROMPT, Buffer.concat([Buffer.from([value.menuPrompt.timeout & 0xff]), Buffer.from(value.menuPrompt.prompt, 'latin1')]));
  }
  if (value.bootServers !== undefined) {
    sub(
      PxeOpt.BOOT_SERVERS,
      Buffer.concat(value.bootServers.flatMap((s) => [u16(s.type), Buffer.from([s.addresses.length]), ...s.addresses.map((a) => ipBytes(a, 'option 43.8'))])),
    );
  }
  if (value.bootMenu !== undefined) {
    sub(
      PxeOpt.BOOT_MENU,
      Buffer.concat(
        value.bootMenu.flatMap((m) => {
          const d = Buffer.from(m.description, 'latin1');
          if (d.length > 255) throw encodeError('option 43.9 description longer than 255 bytes');
          return [u16(m.type), Buffer.from([d.length]), d];
        }),
      ),
    );
  }
  if (value.bootItem !== undefined) sub(PxeOpt.BOOT_ITEM, Buffer.concat([u16(value.bootItem.type), u16(value.bootItem.layer)]));
  for (const o of value.other ?? []) sub(o.code, o.data);
  parts.push(Buffer.from([255]));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// Typed view

/** Typed view of the options this project uses. Absent options are undefined. */
export interface TypedOptions {
  /** 53 */
  messageType?: number;
  /** 54 */
  serverId?: string;
  /** 55 */
  parameterRequestList?: number[];
  /** 57 */
  maxMessageSize?: number;
  /** 60 as text, e.g. `PXEClient:Arch:00007:UNDI:003000`. */
  vendorClass?: string;
  /** 61 raw (type octet + identifier). */
  clientId?: Buffer;
  /** 66 */
  tftpServerName?: string;
  /** 67 */
  bootfileName?: string;
  /** 77 */
  userClass?: UserClass;
  /** 93 (RFC 4578 section 2.1): one or more architecture types. */
  clientArch?: number[];
  /** 94 (RFC 4578 section 2.2): interface type (1 = UNDI) and version. */
  clientNdi?: { type: number; major: number; minor: number };
  /** 97 (RFC 4578 section 2.3): type 0 then a 16-octet GUID; `raw` is the whole value for echoing. */
  clientUuid?: { type: number; guid: string; raw: Buffer };
  /** 43 decoded as PXE sub-options when 60 names a PXE/HTTP client or server. */
  pxe?: PxeVendorOptions;
  /** 43 raw. */
  vendorSpecific?: Buffer;
  /** 175: iPXE encapsulated options (feature flags), present only in iPXE's requests. */
  ipxe?: DhcpOption[];
}

function exactLength(code: number, d: Buffer, n: number): void {
  if (d.length !== n) throw decodeError(`option ${code} length ${d.length}, expected ${n}`, { code, length: d.length });
}

/**
 * Read the typed options of a packet. Throws `ERR_DHCP_DECODE` naming the malformed option
 * (e.g. "option 93 length 1, expected even").
 */
export function readOptions(packet: DhcpPacket): TypedOptions {
  const t: TypedOptions = {};
  for (const { code, data: d } of packet.options) {
    switch (code) {
      case Opt.MESSAGE_TYPE:
        exactLength(code, d, 1);
        t.messageType = d[0]!;
        break;
      case Opt.SERVER_ID:
        exactLength(code, d, 4);
        t.serverId = readIp(d);
        break;
      case Opt.PARAMETER_LIST:
        t.parameterRequestList = [...d];
        break;
      case Opt.MAX_MESSAGE_SIZE:
        exactLength(code, d, 2);
        t.maxMessageSize = d.readUInt16BE(0);
        break;
      case Opt.VENDOR_CLASS:
        t.vendorClass = d.toString('latin1');
        break;
      case Opt.CLIENT_ID:
        // RFC 2132 section 9.14: type octet plus at least one octet of identifier.
        if (d.length < 2) throw decodeError(`option 61 length ${d.length}, expected at least 2`);
        t.clientId = d;
        break;
      case Opt.TFTP_SERVER:
        t.tftpServerName = cString(d);
        break;
      case Opt.BOOTFILE:
        t.bootfileName = cString(d);
        break;
      case Opt.USER_CLASS:
        t.userClass = decodeUserClass(d);
        break;
      case Opt.CLIENT_ARCH: {
        if (d.length === 0 || d.length % 2 !== 0) {
          throw decodeError(`option 93 length ${d.length}, expected even`, { code, length: d.length });
        }
        const arch: number[] = [];
        for (let i = 0; i < d.length; i += 2) arch.push(d.readUInt16BE(i));
        t.clientArch = arch;
        break;
      }
      case Opt.CLIENT_NDI:
        exactLength(code, d, 3);
        t.clientNdi = { type: d[0]!, major: d[1]!, minor: d[2]! };
        break;
      case Opt.CLIENT_UUID:
        exactLength(code, d, 17);
        if (d[0] !== 0) throw decodeError(`option 97 type ${d[0]}, expected 0 (guid)`);
        t.clientUuid = { type: 0, guid: d.subarray(1).toString('hex'), raw: d };
        break;
      case Opt.VENDOR:
        t.vendorSpecific = d;
        break;
      case Opt.IPXE_ENCAP:
        t.ipxe = decodeSubOptions(d, 175);
        break;
      default:
        break;
    }
  }
  // Option 43 is vendor-defined: only PXE clients/servers use the PXE sub-option layout.
  if (t.vendorSpecific !== undefined && t.vendorClass !== undefined && /^(PXEClient|PXEServer|HTTPClient)/.test(t.vendorClass)) {
    t.pxe = decodePxeVendorOptions(t.vendorSpecific);
  }
  return t;
}
