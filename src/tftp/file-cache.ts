/**
 * The boot-file cache of the TFTP server: files up to a bound (8 MiB by default; iPXE binaries
 * are 70 KiB to 1.1 MiB) are read once and served from memory to every transfer of a boot storm,
 * as views into one buffer (no read and no copy per block).
 *
 * An entry is keyed by real path, size, mtime, ctime and inode, so a file the operator replaces
 * (in place or by rename) is read again on the next request; content that changed while it was
 * being read (the fstat after the read differs) is served to that transfer but not kept.
 * Concurrent misses for the same file share one read, including a miss whose open raced a read
 * that has just finished. Least recently used entries go first
 * once the total bound (64 MiB by default) is reached.
 */
import type { FileHandle } from 'node:fs/promises';
import type { LocatedFile } from './files.js';

/** Bounds of the cache. */
export interface FileCacheOptions {
  /** Largest file kept in memory; larger files are streamed from disk. Default 8 MiB. */
  maxFileBytes?: number;
  /** Total bytes kept. Default 64 MiB. */
  maxTotalBytes?: number;
}

/** Counters for logs, tests and the benchmark. */
export interface FileCacheStats {
  hits: number;
  misses: number;
  /** Whole-file reads from disk (concurrent misses share one). */
  loads: number;
  entries: number;
  bytes: number;
}

/** The cache; `load` reads a whole opened file (the caller opened and checked it). */
export interface FileCache {
  /** True when a file of `size` bytes may be cached at all. */
  fits(size: number): boolean;
  /** The cached content of `file`, if any (counts a hit or a miss). */
  get(file: LocatedFile): Buffer | undefined;
  /** A read of `file` already under way (a concurrent miss waits for it instead of opening). */
  loading(file: LocatedFile): Promise<Buffer> | undefined;
  /**
   * Read `handle` (opened for `file`) whole and keep it; resolves with the content. A read of the
   * same key already under way is shared, and one already kept is returned unread. The handle is left open for the caller to close.
   */
  load(file: LocatedFile, handle: FileHandle): Promise<Buffer>;
  stats(): FileCacheStats;
  clear(): void;
}

function keyOf(file: LocatedFile): string {
  return `${file.dev}:${file.ino}:${file.size}:${file.mtimeMs}:${file.ctimeMs}:${file.path}`;
}

/**
 * Read exactly `size` bytes from the start of `handle` (fewer if the file shrank meanwhile), into
 * shared memory: a transfer thread sends from the same bytes without a copy (transfer-threads.ts).
 */
async function readWhole(handle: FileHandle, size: number): Promise<Buffer> {
  const buf = Buffer.from(new SharedArrayBuffer(size));
  let at = 0;
  while (at < size) {
    const { bytesRead } = await handle.read(buf, at, size - at, at);
    if (bytesRead === 0) break;
    at += bytesRead;
  }
  return at === size ? buf : buf.subarray(0, at);
}

/** Create a boot-file cache. */
export function createFileCache(options: FileCacheOptions = {}): FileCache {
  const maxFileBytes = options.maxFileBytes ?? 8 * 1024 * 1024;
  const maxTotalBytes = options.maxTotalBytes ?? 64 * 1024 * 1024;
  // Map iteration order is insertion order: re-inserting on a hit makes the first entry the LRU.
  const entries = new Map<string, Buffer>();
  const loading = new Map<string, Promise<Buffer>>();
  let bytes = 0;
  let hits = 0;
  let misses = 0;
  let loads = 0;

  /** Real path -> the key of its cached version (one version per path). */
  const keyOfPath = new Map<string, string>();

  function drop(key: string): void {
    const content = entries.get(key);
    if (content === undefined) return;
    entries.delete(key);
    bytes -= content.length;
    const path = key.slice(key.indexOf('/'));
    if (keyOfPath.get(path) === key) keyOfPath.delete(path);
  }

  function remember(file: LocatedFile, key: string, content: Buffer): void {
    if (!(content.length <= maxFileBytes && content.length <= maxTotalBytes)) return;
    // An older version of the same file is dropped at once.
    const previous = keyOfPath.get(file.path);
    if (previous !== undefined) drop(previous);
    while (bytes + content.length > maxTotalBytes && entries.size > 0) drop(entries.keys().next().value as string);
    entries.set(key, content);
    keyOfPath.set(file.path, key);
    bytes += content.length;
  }

  return {
    fits: (size) => size <= maxFileBytes && size <= maxTotalBytes,
    get(file) {
      const key = keyOf(file);
      const content = entries.get(key);
      if (content === undefined) {
        misses += 1;
        return undefined;
      }
      hits += 1;
      entries.delete(key);
      entries.set(key, content);
      return content;
    },
    loading: (file) => loading.get(keyOf(file)),
    load(file, handle) {
      const key = keyOf(file);
      const pending = loading.get(key);
      if (pending) return pending;
      // A miss that opened the file while another request's read of it finished: already kept.
      const kept = entries.get(key);
      if (kept !== undefined) return Promise.resolve(kept);
      loads += 1;
      const promise = (async () => {
        const content = await readWhole(handle, file.size);
        const after = await handle.stat();
        // Changed while being read: serve what was read, keep nothing.
        if (content.length === file.size && after.size === file.size && after.mtimeMs === file.mtimeMs && after.ino === file.ino) remember(file, key, content);
        return content;
      })().finally(() => loading.delete(key));
      loading.set(key, promise);
      return promise;
    },
    stats: () => ({ hits, misses, loads, entries: entries.size, bytes }),
    clear() {
      entries.clear();
      keyOfPath.clear();
      bytes = 0;
    },
  };
}
