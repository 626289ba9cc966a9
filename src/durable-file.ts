/**
 * Crash-safe file replacement, shared by every writer of operator state (the database, the
 * lease file, fetched boot files): write a temp file beside the target, fsync it, rename it over
 * the target, fsync the directory. A crash or a failed write at any point leaves either the old
 * file or the new one, never a torn one.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { copyFile, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** Writes `data` to `tmpPath` (which must not exist) and fsyncs it; tests replace it to fail. */
export type WriteTempFile = (tmpPath: string, data: string | Uint8Array, mode: number) => Promise<void>;

/** The default temp-file writer: open exclusively, write, fsync, close. */
export const writeTempFileSynced: WriteTempFile = async (tmpPath, data, mode) => {
  const fh = await open(tmpPath, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
};

/**
 * The temp name used for `file`: hidden, in the same directory (so the rename is atomic), and
 * recognisable by {@link isTempFileOf} for clean-up after a crash.
 */
export function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** True when `name` (a directory entry) is a temp file left by a write of `file`. */
export function isTempFileOf(file: string, name: string): boolean {
  return name.startsWith(`.${path.basename(file)}.`) && /\.\d+\.[0-9a-f]{8}\.tmp$/.test(name);
}

/** Make a rename durable: POSIX persists it only once the directory is synced. Best effort. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory (EISDIR/EINVAL); the data itself is synced.
  }
}

/**
 * Replace `file` with `data` durably. On failure the temp file is removed, the previous `file`
 * is untouched, and the original error is rethrown for the caller to wrap with its own code.
 */
export async function writeFileDurable(file: string, data: string | Uint8Array, options: { mode?: number; writeTemp?: WriteTempFile } = {}): Promise<void> {
  const tmp = tempPathFor(file);
  try {
    await (options.writeTemp ?? writeTempFileSynced)(tmp, data, options.mode ?? 0o644);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncDir(path.dirname(file));
}

/**
 * Copy `source` over `dest` durably (temp beside `dest`, fsync, rename, fsync the directory), so
 * a TFTP or HTTP client never sees a half-copied boot file. On failure `dest` is untouched.
 */
export async function copyFileDurable(source: string, dest: string): Promise<void> {
  const tmp = tempPathFor(dest);
  try {
    await copyFile(source, tmp, fsConstants.COPYFILE_EXCL);
    const handle = await open(tmp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncDir(path.dirname(dest));
}
