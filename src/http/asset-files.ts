/**
 * Files under the assets directory: resolving a `/assets/...` URL path to a real file that
 * stays inside the directory, and the sha256 of large files (microkernel tarballs) cached by
 * path, inode, size and mtime. Shared by the asset routes, compat routes, the microkernel
 * cloud-config part and the web console; depends on nothing else in src/http.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { trimOldest } from '../bounded-map.js';

/**
 * Resolve a URL path below /assets/ to a file inside `assetsDir`, following symlinks and
 * refusing anything whose real path leaves the directory (`..`, `%2e%2e`, NUL, symlinks out).
 * Returns the real path and its path relative to the real root, or undefined.
 */
export async function resolveAsset(assetsDir: string, urlPath: string): Promise<{ file: string; root: string; rel: string } | undefined> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return undefined;
  const segments = decoded.split('/').filter((s) => s !== '');
  if (segments.length === 0 || segments.some((s) => s === '..' || s === '.')) return undefined;
  let root: string;
  try {
    root = await realpath(path.resolve(assetsDir));
  } catch {
    return undefined;
  }
  try {
    const file = await realpath(path.join(root, ...segments));
    if (!file.startsWith(root + path.sep)) return undefined;
    if (!(await stat(file)).isFile()) return undefined;
    return { file, root, rel: path.relative(root, file) };
  } catch {
    return undefined;
  }
}

/** sha256 of files, cached by path + inode + size + mtime (tarballs are hundreds of MiB). */
export interface DigestCache {
  sha256(file: string): Promise<{ sha256: string; size: number }>;
  /** Files cached now (at most `max`). */
  readonly size: number;
}

/** Create a bounded digest cache (`max` files, the oldest dropped in batches: bounded-map.ts; concurrent requests for one file share the work). */
export function createDigestCache(max = 32): DigestCache {
  const cache = new Map<string, Promise<{ sha256: string; size: number }>>();
  return {
    async sha256(file) {
      const st = await stat(file);
      const key = `${file}\0${st.ino}\0${st.size}\0${st.mtimeMs}`;
      let entry = cache.get(key);
      if (!entry) {
        entry = new Promise((resolve, reject) => {
          const hash = createHash('sha256');
          let size = 0;
          createReadStream(file)
            .on('data', (chunk) => {
              size += chunk.length;
              hash.update(chunk);
            })
            .on('error', reject)
            .on('end', () => resolve({ sha256: hash.digest('hex'), size }));
        });
        // A failed read is not cached: the next request tries again.
        entry.catch(() => cache.delete(key));
        for (const k of cache.keys()) if (k.startsWith(`${file}\0`)) cache.delete(k);
        cache.set(key, entry);
        trimOldest(cache, max);
      }
      const result = await entry;
      // The file changed while it was being hashed: hash again rather than publish a wrong sum.
      const after = await stat(file);
      if (after.size !== st.size || after.mtimeMs !== st.mtimeMs || after.ino !== st.ino) {
        cache.delete(key);
        return this.sha256(file);
      }
      return result;
    },
    get size() {
      return cache.size;
    },
  };
}
