/**
 * TFTP packet codec (RFC 1350, RFC 2347 OACK). Pure: bytes in, values out, no sockets.
 *
 * Strings (file names, modes, option names and values, error messages) are decoded as latin1 so
 * every byte maps to one character and encode(decode(x)) reproduces the original bytes.
 */
import { ApplianceError } from '../errors.js';

/** Opcodes from RFC 1350 section 5 and RFC 2347 (OACK). */
export const OPCODE = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;

/** Error codes from RFC 1350 appendix and RFC 2347 (8 = option negotiation refused). */
export const TFTP_ERROR = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  OPTION_NEGOTIATION: 8,
} as const;

/** One of the error codes above (other 16-bit values may arrive from peers). */
export type TftpErrorCode = (typeof TFTP_ERROR)[keyof typeof TFTP_ERROR];

/** Option name/value pairs in wire order, names as sent (compare case-insensitively, RFC 2347). */
export type TftpOptions = Array<[name: string, value: string]>;

/** A read or write request. */
export interface RequestPacket {
  op: 'rrq' | 'wrq';
  filename: string;
  mode: string;
  options: TftpOptions;
}
/** A data block; `block` is the 16-bit wire number. */
export interface DataPacket {
  op: 'data';
  block: number;
  data: Buffer;
}
/** An acknowledgement of a 16-bit block number (0 acknowledges an OACK). */
export interface AckPacket {
  op: 'ack';
  block: number;
}
/** An error; any 16-bit code may arrive from a peer. */
export interface ErrorPacket {
  op: 'error';
  code: number;
  message: string;
}
/** Option acknowledgement (RFC 2347). */
export interface OackPacket {
  op: 'oack';
  options: TftpOptions;
}

/** Every TFTP packet, discriminated by `op`. */
export type TftpPacket = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

/** Why a datagram could not be decoded. */
export type DecodeFailure = 'short' | 'unknown-opcode' | 'unterminated' | 'odd-options' | 'empty-option-name';

/** A datagram that is not a TFTP packet. `reason` tells the server how to answer. */
export class TftpDecodeError extends ApplianceError {
  readonly reason: DecodeFailure;
  readonly opcode: number | undefined;

  constructor(reason: DecodeFailure, message: string, opcode?: number) {
    super('ERR_TFTP_DECODE', message, { reason, opcode });
    this.reason = reason;
    this.opcode = opcode;
  }
}

/** A value that cannot be put on the wire (block out of range, NUL inside a string). */
export class TftpEncodeError extends ApplianceError {
  constructor(message: string, detail?: Record<string, unknown>) {
    super('ERR_TFTP_ENCODE', message, detail);
  }
}

/** Read NUL-terminated latin1 strings from `buf` starting at `offset` up to the end. */
function readStrings(buf: Buffer, offset: number, opcode: number): string[] {
  const out: string[] = [];
  let at = offset;
  while (at < buf.length) {
    const end = buf.indexOf(0, at);
    if (end === -1) throw new TftpDecodeError('unterminated', 'tftp string is not nul-terminated', opcode);
    out.push(buf.toString('latin1', at, end));
    at = end + 1;
  }
  return out;
}

/** Turn a flat [name, value, name, value ...] list into pairs. */
function pairOptions(strings: string[], opcode: number): TftpOptions {
  // Some PXE ROMs pad requests with NUL bytes after the last option; tftp-hpa stops at the first
  // empty option name, and so do we, provided that nothing but padding follows it.
  const firstEmpty = strings.indexOf('');
  if (firstEmpty !== -1) {
    if (strings.slice(firstEmpty).some((s) => s !== '')) {
      throw new TftpDecodeError('empty-option-name', 'tftp option with an empty name', opcode);
    }
    strings = strings.slice(0, firstEmpty);
  }
  if (strings.length % 2 !== 0) throw new TftpDecodeError('odd-options', 'tftp option without a value', opcode);
  const options: TftpOptions = [];
  for (let i = 0; i < strings.length; i += 2) options.push([strings[i]!, strings[i + 1]!]);
  return options;
}

/**
 * Decode one datagram. Throws TftpDecodeError (code ERR_TFTP_DECODE) for anything that is not a
 * TFTP packet; never any other exception.
 */
export function decodePacket(input: Uint8Array): TftpPacket {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length < 2) throw new TftpDecodeError('short', `tftp datagram of ${buf.length} bytes is too short`);
  const opcode = buf.readUInt16BE(0);
  switch (opcode) {
    case OPCODE.RRQ:
    case OPCODE.WRQ: {
      const strings = readStrings(buf, 2, opcode);
      if (strings.length < 2) throw new TftpDecodeError('unterminated', 'tftp request without file name and mode', opcode);
      const [filename, mode, ...rest] = strings as [string, string, ...string[]];
      return { op: opcode === OPCODE.RRQ ? 'rrq' : 'wrq', filename, mode, options: pairOptions(rest, opcode) };
    }
    case OPCODE.DATA:
      if (buf.length < 4) throw new TftpDecodeError('short', 'tftp data packet shorter than 4 bytes', opcode);
      return { op: 'data', block: buf.readUInt16BE(2), data: Buffer.from(buf.subarray(4)) };
    case OPCODE.ACK:
      // Trailing bytes after the block number are ignored, as tftp-hpa does.
      if (buf.length < 4) throw new TftpDecodeError('short', 'tftp ack shorter than 4 bytes', opcode);
      return { op: 'ack', block: buf.readUInt16BE(2) };
    case OPCODE.ERROR: {
      if (buf.length < 4) throw new TftpDecodeError('short', 'tftp error shorter than 4 bytes', opcode);
      // Lenient: some clients omit the final NUL of the message.
      const end = buf.indexOf(0, 4);
      return { op: 'error', code: buf.readUInt16BE(2), message: buf.toString('latin1', 4, end === -1 ? buf.length : end) };
    }
    case OPCODE.OACK:
      return { op: 'oack', options: pairOptions(readStrings(buf, 2, opcode), opcode) };
    default:
      throw new TftpDecodeError('unknown-opcode', `unknown tftp opcode ${opcode}`, opcode);
  }
}

function checkString(value: string, field: string): void {
  if (value.includes('\0')) throw new TftpEncodeError(`tftp ${field} contains a nul byte`, { field });
  // latin1 only: a character above 0xff would be silently truncated by Buffer.from(_, 'latin1').
  if (/[^\x00-\xff]/.test(value)) throw new TftpEncodeError(`tftp ${field} has characters outside latin1`, { field });
}

function checkU16(value: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new TftpEncodeError(`tftp ${field} ${value} is not a 16-bit unsigned integer`, { field, value });
  }
}

function encodeStrings(opcode: number, strings: string[]): Buffer {
  const parts: Buffer[] = [Buffer.from([opcode >> 8, opcode & 0xff])];
  for (const s of strings) parts.push(Buffer.from(s, 'latin1'), Buffer.alloc(1));
  return Buffer.concat(parts);
}

function flattenOptions(options: TftpOptions): string[] {
  const out: string[] = [];
  for (const [name, value] of options) {
    checkString(name, 'option name');
    checkString(value, 'option value');
    if (name === '') throw new TftpEncodeError('tftp option name is empty');
    out.push(name, value);
  }
  return out;
}

/** Encode one packet. Throws TftpEncodeError (ERR_TFTP_ENCODE) for values the wire cannot carry. */
export function encodePacket(packet: TftpPacket): Buffer {
  switch (packet.op) {
    case 'rrq':
    case 'wrq':
      checkString(packet.filename, 'file name');
      checkString(packet.mode, 'mode');
      return encodeStrings(packet.op === 'rrq' ? OPCODE.RRQ : OPCODE.WRQ, [packet.filename, packet.mode, ...flattenOptions(packet.options)]);
    case 'data': {
      checkU16(packet.block, 'block');
      const out = Buffer.allocUnsafe(4 + packet.data.length);
      out.writeUInt16BE(OPCODE.DATA, 0);
      out.writeUInt16BE(packet.block, 2);
      out.set(packet.data, 4);
      return out;
    }
    case 'ack': {
      checkU16(packet.block, 'block');
      const out = Buffer.alloc(4);
      out.writeUInt16BE(OPCODE.ACK, 0);
      out.writeUInt16BE(packet.block, 2);
      return out;
    }
    case 'error': {
      checkU16(packet.code, 'error code');
      checkString(packet.message, 'error message');
      const message = Buffer.from(packet.message, 'latin1');
      const out = Buffer.alloc(5 + message.length); // the last byte stays 0: the terminating NUL
      out.writeUInt16BE(OPCODE.ERROR, 0);
      out.writeUInt16BE(packet.code, 2);
      out.set(message, 4);
      return out;
    }
    case 'oack':
      return encodeStrings(OPCODE.OACK, flattenOptions(packet.options));
    default: {
      const never: never = packet;
      throw new TftpEncodeError('unknown tftp packet kind', { packet: String((never as { op?: unknown }).op) });
    }
  }
}

/** The value of option `name` (case-insensitive, first occurrence wins), or undefined. */
export function getOption(options: TftpOptions, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [n, v] of options) if (n.toLowerCase() === lower) return v;
  return undefined;
}
