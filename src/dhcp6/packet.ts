/**
 * DHCPv6 message codec (RFC 8415 sections 8 and 21; RFC 5970 network boot options 59-62; RFC
 * 3646 DNS options 23/24). Pure data in, data out: no sockets, no logging.
 *
 * A message is its type, transaction id and the option list in wire order, so every decoded
 * datagram re-encodes byte for byte. Typed views ({@link readClientMessage}) and option
 * builders sit on top. Anything malformed raises `ERR_DHCP6_DECODE` (a value that cannot be
 * encoded, `ERR_DHCP6_ENCODE`) and never anything else.
 */
import { ApplianceError } from '../errors.js';
import { formatIpv6, parseIpv6 } from './address.js';

/** Error code for a datagram that is not a well-formed DHCPv6 message. */
export const ERR_DHCP6_DECODE = 'ERR_DHCP6_DECODE';
/** Error code for a value that cannot be encoded. */
export const ERR_DHCP6_ENCODE = 'ERR_DHCP6_ENCODE';

/** RFC 8415 section 7.3 message types. */
export const Msg6 = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
  RELAY_FORW: 12,
  RELAY_REPL: 13,
} as const;

/** Names of the message types, for logs. */
export const MSG6_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(Msg6).map(([k, v]) => [v, k.toLowerCase().replace(/_/g, '-')]));

/** Option codes this project reads or writes. */
export const Opt6 = {
  CLIENT_ID: 1,
  SERVER_ID: 2,
  IA_NA: 3,
  IA_TA: 4,
  IAADDR: 5,
  ORO: 6,
  PREFERENCE: 7,
  ELAPSED_TIME: 8,
  STATUS_CODE: 13,
  RAPID_COMMIT: 14,
  USER_CLASS: 15,
  VENDOR_CLASS: 16,
  VENDOR_OPTS: 17,
  DNS_SERVERS: 23,
  DOMAIN_LIST: 24,
  BOOTFILE_URL: 59,
  BOOTFILE_PARAM: 60,
  CLIENT_ARCH: 61,
  NII: 62,
  CLIENT_LINKLAYER_ADDR: 79,
} as const;

/** RFC 8415 section 21.13 status codes. */
export const Status6 = {
  SUCCESS: 0,
  UNSPEC_FAIL: 1,
  NO_ADDRS_AVAIL: 2,
  NO_BINDING: 3,
  NOT_ON_LINK: 4,
  USE_MULTICAST: 5,
} as const;

/** IANA enterprise number of the PXE vendor class (Intel, RFC 5970 section 3.3 example). */
export const PXE_ENTERPRISE = 343;

/** One option as it is on the wire. */
export interface Option6 {
  code: number;
  data: Buffer;
}

/** A client/server message (types 1-11). */
export interface Message6 {
  type: number;
  /** 24 bits. */
  transactionId: number;
  options: Option6[];
}

function decodeError(message: string): ApplianceError {
  return new ApplianceError(ERR_DHCP6_DECODE, message);
}

/** The options of an option area (the message body, or the inside of IA_NA/IAADDR). */
export function decodeOptions(buf: Buffer, where = 'message'): Option6[] {
  const out: Option6[] = [];
  let off = 0;
  while (off < buf.length) {
    if (off + 4 > buf.length) throw decodeError(`${where}: option header truncated at octet ${off}`);
    const code = buf.readUInt16BE(off);
    const len = buf.readUInt16BE(off + 2);
    if (off + 4 + len > buf.length) throw decodeError(`${where}: option ${code} claims ${len} octets, ${buf.length - off - 4} left`);
    out.push({ code, data: Buffer.from(buf.subarray(off + 4, off + 4 + len)) });
    off += 4 + len;
  }
  return out;
}

/** Wire form of an option list. */
export function encodeOptions(options: readonly Option6[]): Buffer {
  const parts: Buffer[] = [];
  for (const o of options) {
    if (!Number.isInteger(o.code) || o.code < 0 || o.code > 0xffff) throw new ApplianceError(ERR_DHCP6_ENCODE, `option code ${o.code} is not 0..65535`);
    if (o.data.length > 0xffff) throw new ApplianceError(ERR_DHCP6_ENCODE, `option ${o.code} is ${o.data.length} octets, more than 65535`);
    const h = Buffer.alloc(4);
    h.writeUInt16BE(o.code, 0);
    h.writeUInt16BE(o.data.length, 2);
    parts.push(h, o.data);
  }
  return Buffer.concat(parts);
}

/**
 * Decode a client/server message. Relay messages (12, 13) are rejected with a clear error: this
 * server answers clients on its own link only.
 */
export function decodeMessage(buf: Buffer): Message6 {
  if (buf.length < 4) throw decodeError(`datagram of ${buf.length} octets is shorter than a dhcpv6 header`);
  const type = buf[0]!;
  if (type === Msg6.RELAY_FORW || type === Msg6.RELAY_REPL) throw decodeError('relayed dhcpv6 messages are not served (no relay support)');
  if (type === 0 || type > Msg6.RELAY_REPL) throw decodeError(`message type ${type} is not a dhcpv6 message type`);
  return { type, transactionId: buf.readUIntBE(1, 3), options: decodeOptions(buf.subarray(4)) };
}

/** Encode a client/server message. */
export function encodeMessage(msg: Message6): Buffer {
  if (!Number.isInteger(msg.type) || msg.type < 1 || msg.type > 11) throw new ApplianceError(ERR_DHCP6_ENCODE, `message type ${msg.type} is not 1..11`);
  if (!Number.isInteger(msg.transactionId) || msg.transactionId < 0 || msg.transactionId > 0xffffff)
    throw new ApplianceError(ERR_DHCP6_ENCODE, `transaction id ${msg.transactionId} is not 24 bits`);
  const h = Buffer.alloc(4);
  h[0] = msg.type;
  h.writeUIntBE(msg.transactionId, 1, 3);
  return Buffer.concat([h, encodeOptions(msg.options)]);
}

/** The first option with `code`. */
export function findOption(options: readonly Option6[], code: number): Option6 | undefined {
  return options.find((o) => o.code === code);
}

// ---- Typed option values -------------------------------------------------------------------

/** RFC 8415 section 21.13. */
export interface StatusCode6 {
  code: number;
  message: string;
}

/** An IAADDR option (section 21.6). */
export interface IaAddr {
  address: string;
  preferredLifetime: number;
  validLifetime: number;
  status?: StatusCode6;
}

/** An IA_NA option (section 21.4). */
export interface IaNa {
  iaid: number;
  t1: number;
  t2: number;
  addresses: IaAddr[];
  status?: StatusCode6;
}

/** Vendor class (option 16, section 21.16): an enterprise number and opaque items. */
export interface VendorClass6 {
  enterprise: number;
  items: Buffer[];
}

/** Client network interface identifier (option 62, RFC 5970 section 3.4). */
export interface Nii6 {
  type: number;
  major: number;
  minor: number;
}

/** A DUID (section 11) and, where its type carries one, the Ethernet MAC inside. */
export interface Duid {
  raw: Buffer;
  /** 1 LLT, 2 EN, 3 LL, 4 UUID. */
  type: number;
  mac?: string;
}

export function decodeStatus(data: Buffer): StatusCode6 {
  if (data.length < 2) throw decodeError(`status code option of ${data.length} octets`);
  return { code: data.readUInt16BE(0), message: data.subarray(2).toString('utf8') };
}

export function encodeStatus(s: StatusCode6): Option6 {
  const h = Buffer.alloc(2);
  h.writeUInt16BE(s.code, 0);
  return { code: Opt6.STATUS_CODE, data: Buffer.concat([h, Buffer.from(s.message, 'utf8')]) };
}

function addressAt(data: Buffer, off: number): string {
  return formatIpv6(data.subarray(off, off + 16));
}

function addressBytes(text: string): Buffer {
  const b = parseIpv6(text);
  if (!b) throw new ApplianceError(ERR_DHCP6_ENCODE, `${JSON.stringify(text)} is not an ipv6 address`);
  return b;
}

export function decodeIaAddr(data: Buffer): IaAddr {
  if (data.length < 24) throw decodeError(`iaaddr option of ${data.length} octets, needs 24`);
  const inner = decodeOptions(data.subarray(24), 'iaaddr');
  const status = findOption(inner, Opt6.STATUS_CODE);
  return {
    address: addressAt(data, 0),
    preferredLifetime: data.readUInt32BE(16),
    validLifetime: data.readUInt32BE(20),
    ...(status ? { status: decodeStatus(status.data) } : {}),
  };
}

export function encodeIaAddr(a: IaAddr): Option6 {
  const h = Buffer.alloc(24);
  addressBytes(a.address).copy(h, 0);
  h.writeUInt32BE(a.preferredLifetime >>> 0, 16);
  h.writeUInt32BE(a.validLifetime >>> 0, 20);
  return { code: Opt6.IAADDR, data: Buffer.concat([h, a.status ? encodeOptions([encodeStatus(a.status)]) : Buffer.alloc(0)]) };
}

export function decodeIaNa(data: Buffer): IaNa {
  if (data.length < 12) throw decodeError(`ia_na option of ${data.length} octets, needs 12`);
  const inner = decodeOptions(data.subarray(12), 'ia_na');
  const status = findOption(inner, Opt6.STATUS_CODE);
  return {
    iaid: data.readUInt32BE(0),
    t1: data.readUInt32BE(4),
    t2: data.readUInt32BE(8),
    addresses: inner.filter((o) => o.code === Opt6.IAADDR).map((o) => decodeIaAddr(o.data)),
    ...(status ? { status: decodeStatus(status.data) } : {}),
  };
}

export function encodeIaNa(ia: IaNa): Option6 {
  const h = Buffer.alloc(12);
  h.writeUInt32BE(ia.iaid >>> 0, 0);
  h.writeUInt32BE(ia.t1 >>> 0, 4);
  h.writeUInt32BE(ia.t2 >>> 0, 8);
  const inner = [...ia.addresses.map(encodeIaAddr), ...(ia.status ? [encodeStatus(ia.status)] : [])];
  return { code: Opt6.IA_NA, data: Buffer.concat([h, encodeOptions(inner)]) };
}

/** A list of u16s (ORO, client arch). */
function decodeU16List(data: Buffer, what: string): number[] {
  if (data.length % 2 !== 0) throw decodeError(`${what} option of odd length ${data.length}`);
  return Array.from({ length: data.length / 2 }, (_, i) => data.readUInt16BE(i * 2));
}

function encodeU16List(code: number, values: readonly number[]): Option6 {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16BE(v, i * 2));
  return { code, data: b };
}

export const decodeOro = (data: Buffer): number[] => decodeU16List(data, 'oro');
export const encodeOro = (codes: readonly number[]): Option6 => encodeU16List(Opt6.ORO, codes);
export const decodeArch = (data: Buffer): number[] => decodeU16List(data, 'client arch');
export const encodeArch = (arches: readonly number[]): Option6 => encodeU16List(Opt6.CLIENT_ARCH, arches);

/** Items of 2-octet length + data (user class, vendor class, boot file params). */
function decodeItems(data: Buffer, what: string): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < data.length) {
    if (off + 2 > data.length) throw decodeError(`${what}: item length truncated`);
    const len = data.readUInt16BE(off);
    if (off + 2 + len > data.length) throw decodeError(`${what}: item of ${len} octets overruns the option`);
    out.push(Buffer.from(data.subarray(off + 2, off + 2 + len)));
    off += 2 + len;
  }
  return out;
}

function encodeItems(items: readonly Buffer[]): Buffer {
  return Buffer.concat(
    items.flatMap((i) => {
      const h = Buffer.alloc(2);
      h.writeUInt16BE(i.length, 0);
      return [h, i];
    }),
  );
}

export const decodeUserClass = (data: Buffer): Buffer[] => decodeItems(data, 'user class');
export const encodeUserClass = (items: readonly Buffer[]): Option6 => ({ code: Opt6.USER_CLASS, data: encodeItems(items) });

export function decodeVendorClass(data: Buffer): VendorClass6 {
  if (data.length < 4) throw decodeError(`vendor class option of ${data.length} octets`);
  return { enterprise: data.readUInt32BE(0), items: decodeItems(data.subarray(4), 'vendor class') };
}

export function encodeVendorClass(v: VendorClass6): Option6 {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(v.enterprise >>> 0, 0);
  return { code: Opt6.VENDOR_CLASS, data: Buffer.concat([h, encodeItems(v.items)]) };
}

export function decodeNii(data: Buffer): Nii6 {
  if (data.length !== 3) throw decodeError(`network interface identifier option of ${data.length} octets, needs 3`);
  return { type: data[0]!, major: data[1]!, minor: data[2]! };
}

export function encodeNii(n: Nii6): Option6 {
  return { code: Opt6.NII, data: Buffer.from([n.type, n.major, n.minor]) };
}

export function decodeElapsed(data: Buffer): number {
  if (data.length !== 2) throw decodeError(`elapsed time option of ${data.length} octets, needs 2`);
  return data.readUInt16BE(0);
}

export function encodeElapsed(centiseconds: number): Option6 {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(Math.min(0xffff, Math.max(0, Math.round(centiseconds))), 0);
  return { code: Opt6.ELAPSED_TIME, data: b };
}

export function decodeAddressList(data: Buffer): string[] {
  if (data.length % 16 !== 0) throw decodeError(`address list option of ${data.length} octets, not a multiple of 16`);
  return Array.from({ length: data.length / 16 }, (_, i) => addressAt(data, i * 16));
}

export function encodeDnsServers(addresses: readonly string[]): Option6 {
  return { code: Opt6.DNS_SERVERS, data: Buffer.concat(addresses.map(addressBytes)) };
}

/** RFC 1035 section 3.1 names (no compression), as option 24 carries them. */
export function decodeDomainList(data: Buffer): string[] {
  const names: string[] = [];
  let off = 0;
  while (off < data.length) {
    const labels: string[] = [];
    for (;;) {
      if (off >= data.length) throw decodeError('domain list: name not terminated');
      const len = data[off]!;
      off += 1;
      if (len === 0) break;
      if (len > 63 || off + len > data.length) throw decodeError('domain list: bad label length');
      labels.push(data.subarray(off, off + len).toString('latin1'));
      off += len;
    }
    names.push(labels.join('.'));
  }
  return names;
}

export function encodeDomainList(names: readonly string[]): Option6 {
  const parts: Buffer[] = [];
  for (const name of names) {
    for (const label of name.split('.').filter(Boolean)) {
      if (label.length > 63) throw new ApplianceError(ERR_DHCP6_ENCODE, `domain label ${label} is longer than 63`);
      parts.push(Buffer.from([label.length]), Buffer.from(label, 'latin1'));
    }
    parts.push(Buffer.from([0]));
  }
  return { code: Opt6.DOMAIN_LIST, data: Buffer.concat(parts) };
}

export function encodeBootFileUrl(url: string): Option6 {
  return { code: Opt6.BOOTFILE_URL, data: Buffer.from(url, 'utf8') };
}

export const decodeBootFileParams = (data: Buffer): string[] => decodeItems(data, 'boot file params').map((b) => b.toString('utf8'));
export const encodeBootFileParams = (params: readonly string[]): Option6 => ({
  code: Opt6.BOOTFILE_PARAM,
  data: encodeItems(params.map((p) => Buffer.from(p, 'utf8'))),
});

/** Parse a DUID; the MAC of DUID-LLT (1) and DUID-LL (3) with hardware type 1 (Ethernet). */
export function decodeDuid(raw: Buffer): Duid {
  if (raw.length < 2 || raw.length > 130) throw decodeError(`duid of ${raw.length} octets (2..130)`);
  const type = raw.readUInt16BE(0);
  const hw = raw.length >= 4 ? raw.readUInt16BE(2) : -1;
  const macAt = type === 1 ? 8 : type === 3 ? 4 : -1;
  const mac =
    macAt > 0 && hw === 1 && raw.length === macAt + 6 ? [...raw.subarray(macAt, macAt + 6)].map((b) => b.toString(16).padStart(2, '0')).join(':') : undefined;
  return { raw: Buffer.from(raw), type, ...(mac ? { mac } : {}) };
}

/** DUID-LL (type 3, hardware type 1) of an Ethernet MAC. */
export function duidLl(mac: string): Buffer {
  const bytes = Buffer.from(mac.replace(/[:-]/g, ''), 'hex');
  if (bytes.length !== 6) throw new ApplianceError(ERR_DHCP6_ENCODE, `${mac} is not a mac address`);
  return Buffer.concat([Buffer.from([0, 3, 0, 1]), bytes]);
}

/** DUID-UUID (type 4, RFC 6355) of 16 octets. */
export function duidUuid(uuid: Buffer): Buffer {
  if (uuid.length !== 16) throw new ApplianceError(ERR_DHCP6_ENCODE, 'a duid-uuid holds 16 octets');
  return Buffer.concat([Buffer.from([0, 4]), uuid]);
}

/** What a client message says, each known option decoded (malformed ones raise ERR_DHCP6_DECODE). */
export interface ClientMessage {
  type: number;
  transactionId: number;
  clientId?: Duid;
  serverId?: Buffer;
  iaNa: IaNa[];
  oro: number[];
  elapsedCentiseconds?: number;
  userClasses: Buffer[];
  vendorClass?: VendorClass6;
  arches: number[];
  nii?: Nii6;
  rapidCommit: boolean;
  /** RFC 6939 client link-layer address (hardware type 1): set by relays, rarely by clients. */
  linkLayerMac?: string;
}

/** The typed view of a message a client sent. */
export function readClientMessage(msg: Message6): ClientMessage {
  const get = (code: number) => findOption(msg.options, code);
  const cid = get(Opt6.CLIENT_ID);
  const sid = get(Opt6.SERVER_ID);
  const oro = get(Opt6.ORO);
  const elapsed = get(Opt6.ELAPSED_TIME);
  const vc = get(Opt6.VENDOR_CLASS);
  const arch = get(Opt6.CLIENT_ARCH);
  const nii = get(Opt6.NII);
  const ll = get(Opt6.CLIENT_LINKLAYER_ADDR);
  if (sid && (sid.data.length < 2 || sid.data.length > 130)) throw decodeError(`server id of ${sid.data.length} octets`);
  const llMac =
    ll && ll.data.length === 8 && ll.data.readUInt16BE(0) === 1 ? [...ll.data.subarray(2)].map((b) => b.toString(16).padStart(2, '0')).join(':') : undefined;
  return {
    type: msg.type,
    transactionId: msg.transactionId,
    ...(cid ? { clientId: decodeDuid(cid.data) } : {}),
    ...(sid ? { serverId: sid.data } : {}),
    iaNa: msg.options.filter((o) => o.code === Opt6.IA_NA).map((o) => decodeIaNa(o.data)),
    oro: oro ? decodeOro(oro.data) : [],
    ...(elapsed ? { elapsedCentiseconds: decodeElapsed(elapsed.data) } : {}),
    userClasses: msg.options.filter((o) => o.code === Opt6.USER_CLASS).flatMap((o) => decodeUserClass(o.data)),
    ...(vc ? { vendorClass: decodeVendorClass(vc.data) } : {}),
    arches: arch ? decodeArch(arch.data) : [],
    ...(nii ? { nii: decodeNii(nii.data) } : {}),
    rapidCommit: get(Opt6.RAPID_COMMIT) !== undefined,
    ...(llMac ? { linkLayerMac: llMac } : {}),
  };
}
