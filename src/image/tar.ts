/**
 * A small POSIX ustar codec (IEEE 1003.1-1988 "ustar" headers), enough to write image archives
 * byte for byte reproducibly: regular files and directories, fixed owner 0:0, a fixed mtime,
 * entries in the order given. `decodeTarHeader` is its inverse, used by tests and to read
 * names back; GNU tar, skopeo and docker are the independent readers.
 */
import { ApplianceError } from '../errors.js';

/** Size of a tar block; headers are one block, data is padded to a multiple. */
export const TAR_BLOCK = 512;

/** One archive member's header fields. */
export interface TarEntry {
  /** Path inside the archive, `/`-separated, no leading `/`; directories end with `/`. */
  name: string;
  type: 'file' | 'directory';
  /** Permission bits, e.g. 0o755. */
  mode: number;
  /** Data length in bytes (0 for directories). */
  size: number;
  /** Modification time, seconds since the epoch. */
  mtime: number;
}

function octal(value: number, width: number): string {
  // width-1 octal digits then NUL, as GNU tar writes them.
  const digits = Math.trunc(value).toString(8);
  if (digits.length > width - 1) throw new ApplianceError('ERR_TAR_FIELD', `value ${value} does not fit a ${width}-byte tar field`);
  return digits.padStart(width - 1, '0') + '\0';
}

function splitName(name: string): { prefix: string; name: string } {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', name };
  // ustar: prefix (<= 155 bytes) + '/' + name (<= 100 bytes), split at a slash.
  for (let i = name.lastIndexOf('/', name.length - 2); i > 0; i = name.lastIndexOf('/', i - 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100) return { prefix, name: rest };
  }
  throw new ApplianceError('ERR_TAR_FIELD', `path ${JSON.stringify(name.slice(0, 60))}... is too long for a ustar header`);
}

/** Encode one 512-byte ustar header. */
export function encodeTarHeader(entry: TarEntry): Buffer {
  if (entry.name === '' || entry.name.startsWith('/') || entry.name.split('/').includes('..')) {
    throw new ApplianceError('ERR_TAR_FIELD', `tar member name ${JSON.stringify(entry.name)} must be relative without ".."`);
  }
  if (entry.type === 'directory' && !entry.name.endsWith('/')) throw new ApplianceError('ERR_TAR_FIELD', `directory ${entry.name} must end with "/"`);
  const h = Buffer.alloc(TAR_BLOCK, 0);
  const { prefix, name } = splitName(entry.name);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(entry.mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(entry.type === 'directory' ? 0 : entry.size, 12), 124, 'ascii');
  h.write(octal(entry.mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(entry.type === 'directory' ? '5' : '0', 156, 'ascii');
  h.write('ustar\u000000', 257, 'ascii');
  h.write('root', 265, 'ascii');
  h.write('root', 297, 'ascii');
  h.write(octal(0, 8), 329, 'ascii');
  h.write(octal(0, 8), 337, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

function field(h: Buffer, start: number, len: number): string {
  const raw = h.subarray(start, start + len);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? len : end).toString('utf8');
}

/** Decode a ustar header (undefined for the zero block that ends an archive). */
export function decodeTarHeader(h: Buffer): TarEntry | undefined {
  if (h.length !== TAR_BLOCK) throw new ApplianceError('ERR_TAR_DECODE', `a tar header is ${TAR_BLOCK} bytes, got ${h.length}`);
  if (h.every((b) => b === 0)) return undefined;
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  const stored = parseInt(field(h, 148, 8).trim(), 8);
  if (stored !== sum) throw new ApplianceError('ERR_TAR_DECODE', `tar header checksum ${stored} does not match ${sum}`);
  const prefix = field(h, 345, 155);
  const name = field(h, 0, 100);
  const type = String.fromCharCode(h[156]!);
  return {
    name: prefix ? `${prefix}/${name}` : name,
    type: type === '5' ? 'directory' : 'file',
    mode: parseInt(field(h, 100, 8), 8),
    size: parseInt(field(h, 124, 12), 8),
    mtime: parseInt(field(h, 136, 12), 8),
  };
}

/** Zero bytes that pad `size` bytes of data to a whole block. */
export function tarPadding(size: number): Buffer {
  const rest = size % TAR_BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : TAR_BLOCK - rest, 0);
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = Buffer.alloc(TAR_BLOCK * 2, 0);

/** A whole in-memory archive of small files (directories first as given). */
export function encodeTar(entries: ReadonlyArray<{ entry: Omit<TarEntry, 'size'>; data?: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  for (const { entry, data } of entries) {
    const body = data ?? Buffer.alloc(0);
    parts.push(encodeTarHeader({ ...entry, size: body.length }), body, tarPadding(body.length));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}
