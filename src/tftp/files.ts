/**
 * What a requested TFTP name resolves to: name normalisation and containment (no way out of the
 * served directories), disk lookup in the root and the fallback directories, and the sequential
 * block readers a transfer pulls its data from (file handle, in-memory/virtual content, netascii).
 */
import { constants as fsConstants, read as readAt } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { TFTP_ERROR } from './packet.js';

/**
 * Where names not found under the TFTP root are looked up. The appliance ships no iPXE binaries;
 * Debian's `ipxe` package installs them in /usr/lib/ipxe (older releases: /usr/share/ipxe).
 */
export const DEFAULT_FALLBACK_DIRS: readonly string[] = ['/usr/lib/ipxe', '/usr/share/ipxe'];

/**
 * Content served instead of (or before) a disk file, e.g. a per-client iPXE script.
 * Either the whole content in memory, or a factory opened once per transfer (a Node Readable
 * fits: it is an AsyncIterable; it is ended early when the transfer aborts). `size` is what the
 * `tsize` option reports (RFC 2349); leave it undefined when unknown and `tsize` is not answered.
 */
export type TftpSource =
  | Uint8Array
  | {
      size?: number;
      open(): AsyncIterable<Uint8Array | string>;
    };

/** A client-supplied string cut to a loggable length (a request may carry a 64 KiB name). */
export function clip(value: string, max = 256): string {
  return value.length > max ? `${value.slice(0, max)}...` : value;
}

/** Why a request name was refused, as TFTP error code plus a short machine-readable reason. */
export interface Refusal {
  kind: 'refused';
  code: typeof TFTP_ERROR.FILE_NOT_FOUND | typeof TFTP_ERROR.ACCESS_VIOLATION;
  reason: string;
}

/** The outcome of normalising a requested name. */
export type NameCheck = { kind: 'ok'; name: string } | Refusal;

/**
 * Normalise a requested file name into a relative POSIX path, or refuse it.
 *
 * - Backslashes become slashes: Windows-derived PXE clients (and WDS-style configs) send
 *   `boot\x64\file`; tftp-hpa setups usually add a remap rule `rg \\ /` for exactly this.
 * - Leading slashes are stripped, so `/undionly.kpxe` is the file in the root, like tftpd-hpa `-s`.
 * - Empty and `.` segments are dropped; any `..` segment refuses the name (access violation),
 *   even one that would stay inside the root: no legitimate boot client needs it.
 * - A NUL byte refuses the name (it cannot come from a decoded packet, but virtual names might).
 */
export function normalizeRequestName(raw: string): NameCheck {
  if (raw.includes('\0')) return { kind: 'refused', code: TFTP_ERROR.ACCESS_VIOLATION, reason: 'nul-in-name' };
  const segments = raw
    .replace(/\\/g, '/')
    .split('/')
    .filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) return { kind: 'refused', code: TFTP_ERROR.ACCESS_VIOLATION, reason: 'parent-segment' };
  if (segments.length === 0) return { kind: 'refused', code: TFTP_ERROR.FILE_NOT_FOUND, reason: 'empty-name' };
  return { kind: 'ok', name: segments.join('/') };
}

/** True when `child` is `parent` or lies below it (both absolute, already resolved). */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** A disk file that may be served, opened and checked. */
export interface FoundFile {
  kind: 'found';
  /** The real path (symlinks resolved) that was opened. */
  path: string;
  /** The served directory it was found in (as configured). */
  dir: string;
  size: number;
  handle: FileHandle;
}

/** The outcome of looking a normalised name up on disk. */
export type Resolution = FoundFile | Refusal;

/**
 * A disk file that may be served, found and checked but not opened: what the boot-file cache
 * is keyed by (a changed file has another size, mtime, ctime or inode).
 */
export interface LocatedFile {
  kind: 'located';
  /** The real path (symlinks resolved). */
  path: string;
  /** The served directory it was found in (as configured). */
  dir: string;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  dev: number;
}

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/**
 * A fallback (system) directory whose symlinks are trusted: owned by root or by this process and
 * not writable by group or others, i.e. laid out by the package manager. Debian's `ipxe` package
 * ships /usr/lib/ipxe/ipxe.efi as a symlink to /boot/ipxe.efi, so strict containment there would
 * refuse a file the appliance relies on. The TFTP root never gets this trust.
 */
export function isTrustedSystemDir(mode: number, uid: number): boolean {
  const ownUid = typeof process.getuid === 'function' ? process.getuid() : -1;
  return (uid === 0 || uid === ownUid) && (mode & 0o022) === 0;
}

/**
 * Look a normalised name up in `dirs` in order (root first, then fallbacks) without opening it.
 * The first directory holding the name decides: a name found there that escapes it through a
 * symlink is refused (access violation), not looked up further. Directories that do not exist
 * are skipped. The first directory (the TFTP root) always gets the strict realpath containment
 * check; later (fallback) directories get it unless isTrustedSystemDir says their symlinks are
 * the package's. Anything but a regular file (directory, FIFO, device) is refused.
 */
export async function locateFile(name: string, dirs: readonly string[]): Promise<LocatedFile | Refusal> {
  for (const [index, dir] of dirs.entries()) {
    let dirReal: string;
    let trusted = false;
    try {
      dirReal = await realpath(dir);
      if (index > 0) {
        const info = await stat(dirReal);
        trusted = isTrustedSystemDir(info.mode, info.uid);
      }
    } catch {
      continue;
    }
    let real: string;
    try {
      real = await realpath(path.join(dirReal, name));
    } catch (err) {
      const code = errCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      // ELOOP (symlink loop), EACCES and the like: the name exists but cannot be served.
      return { kind: 'refused', code: TFTP_ERROR.ACCESS_VIOLATION, reason: `resolve-${(code ?? 'error').toLowerCase()}` };
    }
    if (!trusted && !isInside(dirReal, real)) return { kind: 'refused', code: TFTP_ERROR.ACCESS_VIOLATION, reason: 'symlink-escapes-root' };
    try {
      const info = await stat(real);
      if (!info.isFile()) return { kind: 'refused', code: TFTP_ERROR.ACCESS_VIOLATION, reason: 'not-a-regular-file' };
      return { kind: 'located', path: real, dir, size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino, dev: info.dev };
    } catch (err) {
      const code = errCode(err);
      if (code === 'ENOENT') continue;
      return { kind: 'refused', code: TFTP_ERROR.ACCESS_VIOLATION, reason: `stat-${(code ?? 'error').toLowerCase()}` };
    }
  }
  return { kind: 'refused', code: TFTP_ERROR.FILE_NOT_FOUND, reason: 'not-found' };
}

/**
 * Open a located file. O_NOFOLLOW refuses a symlink swapped in at the last component after the
 * realpath check; O_NONBLOCK keeps a FIFO swapped in from blocking the server; fstat checks the
 * opened file is a regular file (its size is what is served).
 */
export async function openLocated(file: LocatedFile): Promise<FoundFile | Refusal> {
  let handle: FileHandle;
  try {
    handle = await open(file.path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT') return { kind: 'refused', code: TFTP_ERROR.FILE_NOT_FOUND, reason: 'not-found' };
    return { kind: 'refused', code: TFTP_ERROR.ACCESS_VIOLATION, reason: `open-${(code ?? 'error').toLowerCase()}` };
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      await handle.close();
      return { kind: 'refused', code: TFTP_ERROR.ACCESS_VIOLATION, reason: 'not-a-regular-file' };
    }
    return { kind: 'found', path: file.path, dir: file.dir, size: info.size, handle };
  } catch (err) {
    await handle.close().catch(() => undefined);
    return { kind: 'refused', code: TFTP_ERROR.ACCESS_VIOLATION, reason: `stat-${(errCode(err) ?? 'error').toLowerCase()}` };
  }
}

/** Look a name up (locateFile) and open it (openLocated): the file handle is the caller's to close. */
export async function resolveFile(name: string, dirs: readonly string[]): Promise<Resolution> {
  const located = await locateFile(name, dirs);
  return located.kind === 'refused' ? located : openLocated(located);
}

/**
 * A sequential source of bytes a transfer cuts into blocks. `read(n)` returns exactly n bytes
 * unless the content ends first (then fewer, and 0 bytes at the end). Only the current window
 * is ever held by the transfer; readers hold at most one chunk (plus one read ahead).
 *
 * `readSync(n)`, when a reader has it, returns the next block without waiting when it is
 * already in memory and undefined when `read` must be awaited: a transfer then sends a whole
 * window from one call, with no promise per block.
 */
export interface BlockReader {
  read(size: number): Promise<Buffer>;
  readSync?(size: number): Buffer | undefined;
  close(): Promise<void>;
}

/**
 * Read a file handle sequentially with positional reads, `chunkSize` bytes at a time (one
 * syscall per chunk instead of per block), reading the next chunk ahead while the current one
 * is sent. Blocks are views into a chunk (no copy) unless a block spans two chunks; pass a
 * multiple of the block size to avoid that. Closing the reader closes the handle.
 *
 * `readSync` also takes the read-ahead chunk once it has arrived, so a transfer awaits only
 * when the disk is slower than the client: the reads are callbacks, with one promise per chunk
 * (not per block) for the rare wait (async functions per chunk showed in the lock-step profile).
 */
export function createFileReader(handle: FileHandle, chunkSize = 64 * 1024): BlockReader {
  let position = 0;
  // The current chunk and how much of it was handed out.
  let chunk: Buffer = Buffer.alloc(0);
  let used = 0;
  let eof = false;
  let closed = false;
  // The read-ahead: its result once it arrived (a failure is kept as a value and thrown to the
  // reader that takes it), and a promise that settles when it arrives (never rejects).
  type Chunk = { data: Buffer; full: boolean } | { error: unknown };
  let arrived: Chunk | undefined;
  let reading: Promise<void> | undefined;
  const readAhead = (min: number): void => {
    // A fresh buffer per chunk: blocks handed out earlier are views into old chunks and must stay
    // intact while they wait in the retransmission window.
    const buf = Buffer.allocUnsafe(Math.max(chunkSize, min));
    const at = position;
    position += buf.length;
    reading = new Promise<void>((resolve) => {
      readAt(handle.fd, buf, 0, buf.length, at, (error, bytesRead) => {
        arrived = error ? { error } : { data: buf.subarray(0, bytesRead), full: bytesRead === buf.length };
        reading = undefined;
        resolve();
      });
    });
  };
  /** Append the arrived chunk to what is left of the current one; start the next read. */
  const take = (next: Chunk): void => {
    arrived = undefined;
    if ('error' in next) throw next.error;
    const rest = chunk.length - used;
    if (next.data.length > 0) chunk = rest > 0 ? Buffer.concat([chunk.subarray(used), next.data]) : next.data;
    else chunk = chunk.subarray(used);
    used = 0;
    if (!next.full) eof = true;
    else if (!closed) readAhead(chunkSize);
  };
  const slice = (size: number): Buffer => {
    const end = Math.min(used + size, chunk.length);
    const out = chunk.subarray(used, end);
    used = end;
    return out;
  };
  return {
    readSync(size) {
      if (chunk.length - used >= size || eof) return slice(size);
      // The read-ahead already arrived: take it now (a failure is left for read() to throw).
      if (arrived !== undefined && !('error' in arrived)) {
        take(arrived);
        if (chunk.length - used >= size || eof) return slice(size);
      }
      if (arrived === undefined && reading === undefined && !closed) readAhead(size);
      return undefined;
    },
    async read(size) {
      while (chunk.length - used < size && !eof) {
        if (arrived === undefined && reading === undefined) readAhead(size);
        if (reading !== undefined) await reading;
        if (arrived !== undefined) take(arrived);
      }
      return slice(size);
    },
    async close() {
      if (closed) return;
      closed = true;
      await reading;
      await handle.close();
    },
  };
}

/** Read an async iterable (a virtual file, a stream) sequentially; close() ends the iterator. */
export function createIterableReader(iterable: AsyncIterable<Uint8Array | string>): BlockReader {
  const iterator = iterable[Symbol.asyncIterator]();
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let done = false;
  let closed = false;
  return {
    async read(size) {
      while (pendingBytes < size && !done) {
        const next = await iterator.next();
        if (next.done) {
          done = true;
          break;
        }
        const value = next.value;
        const buf = typeof value === 'string' ? Buffer.from(value) : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        if (buf.length === 0) continue;
        pending.push(buf);
        pendingBytes += buf.length;
      }
      const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      const out = all.subarray(0, Math.min(size, all.length));
      const rest = all.subarray(out.length);
      pending = rest.length > 0 ? [rest] : [];
      pendingBytes = rest.length;
      return out;
    },
    async close() {
      if (closed) return;
      closed = true;
      if (!done) await iterator.return?.();
    },
  };
}

/** A reader over content held in memory. */
export function createBufferReader(content: Uint8Array): BlockReader {
  const buf = Buffer.isBuffer(content) ? content : Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  let position = 0;
  const readSync = (size: number): Buffer => {
    const out = buf.subarray(position, Math.min(buf.length, position + size));
    position += out.length;
    return out;
  };
  return {
    readSync,
    async read(size) {
      return readSync(size);
    },
    async close() {},
  };
}

/**
 * Convert a Unix file to netascii on the fly (RFC 764 as referenced by RFC 1350): LF becomes
 * CR LF and a bare CR becomes CR NUL, like tftp-hpa does. The size of the converted content is
 * not known in advance, so netascii transfers do not answer `tsize`.
 */
export function createNetasciiReader(inner: BlockReader, chunkSize = 16 * 1024): BlockReader {
  let pending: Buffer = Buffer.alloc(0);
  let innerDone = false;
  return {
    async read(size) {
      while (pending.length < size && !innerDone) {
        const raw = await inner.read(chunkSize);
        if (raw.length < chunkSize) innerDone = true;
        if (raw.length === 0) break;
        const out = Buffer.allocUnsafe(raw.length * 2);
        let o = 0;
        for (const byte of raw) {
          if (byte === 0x0a) {
            out[o++] = 0x0d;
            out[o++] = 0x0a;
          } else if (byte === 0x0d) {
            out[o++] = 0x0d;
            out[o++] = 0x00;
          } else {
            out[o++] = byte;
          }
        }
        pending = pending.length > 0 ? Buffer.concat([pending, out.subarray(0, o)]) : out.subarray(0, o);
      }
      const result = pending.subarray(0, Math.min(size, pending.length));
      pending = pending.subarray(result.length);
      return result;
    },
    close: () => inner.close(),
  };
}

/** Open a reader for a virtual source; `size` is its declared size (undefined when unknown). */
export function openSource(source: TftpSource): { reader: BlockReader; size: number | undefined } {
  if (source instanceof Uint8Array) return { reader: createBufferReader(source), size: source.length };
  return { reader: createIterableReader(source.open()), size: source.size };
}
