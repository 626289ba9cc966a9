/**
 * Fetching without the internet: recognise "the network is unreachable" and say plainly which
 * files to copy in by hand and where they go, and import such files from a local folder (or a
 * `file://` mirror) with the same sha256 check a download gets.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { copyFileDurable } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';
import { sha256File } from './download.js';

/** Error causes that mean "no route to the mirror" rather than "the mirror misbehaved". */
// A connection cut mid-transfer (ECONNRESET) is not here: that is resumable, not offline.
const UNREACHABLE = new Set(['EAI_AGAIN', 'EAI_FAIL', 'ENOTFOUND', 'ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'ETIMEDOUT']);

/**
 * True when `err` is a fetch error caused by an unreachable network (DNS, routing, refused).
 * `firstContact`: the first request of a run, where no answer at all (idle timeout) means offline too.
 */
export function isUnreachable(err: unknown, firstContact = false): boolean {
  if (!(err instanceof ApplianceError)) return false;
  if (err.code === 'ERR_FETCH_TIMEOUT') return firstContact;
  const cause = err.detail?.cause;
  return err.code === 'ERR_FETCH_NETWORK' && typeof cause === 'string' && UNREACHABLE.has(cause);
}

/**
 * The error for an offline fetch: names the host, the files to copy (their URLs), the folder
 * they go to, and the `--from` command that imports them.
 */
export function offlineError(args: { host: string; cause: string; urls: readonly string[]; folder: string; command: string; extra?: string }): ApplianceError {
  const message =
    `cannot reach ${args.host} (${args.cause}); this machine looks offline. ` +
    `On a machine with internet, download ${args.urls.join(' ')} into one folder, bring it here, then run: ${args.command} --from FOLDER ` +
    `(the files are checked and copied into ${args.folder})${args.extra ? `; ${args.extra}` : ''}`;
  return new ApplianceError('ERR_FETCH_OFFLINE', message, { host: args.host, urls: [...args.urls], folder: args.folder });
}

/** The cause of a fetch error, for messages (`getaddrinfo EAI_AGAIN`, `timeout`). */
export function causeOf(err: unknown): string {
  if (err instanceof ApplianceError) {
    if (err.code === 'ERR_FETCH_TIMEOUT') return 'no answer';
    const cause = err.detail?.cause;
    if (typeof cause === 'string') return cause;
  }
  return (err as Error).message;
}

/** What `kind` of path `p` is, or undefined when it does not exist. */
export async function pathKind(p: string): Promise<'file' | 'dir' | 'other' | undefined> {
  try {
    const st = await stat(p);
    return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Copy a local `source` to `dest` when its sha256 is `expected`; a mismatch throws
 * ERR_FETCH_CHECKSUM and leaves `dest` as it was.
 */
export async function importVerified(args: { source: string; dest: string; expected: string; log: Logger }): Promise<{ sha256: string; bytes: number }> {
  const actual = await sha256File(args.source);
  if (actual !== args.expected) {
    throw new ApplianceError(
      'ERR_FETCH_CHECKSUM',
      `${args.source} has sha256 ${actual}, but the release checksum is ${args.expected}: not the right file (or damaged); nothing was copied`,
      { source: args.source, expected: args.expected, actual },
    );
  }
  await mkdir(dirname(args.dest), { recursive: true });
  await copyFileDurable(args.source, args.dest);
  const bytes = (await stat(args.dest)).size;
  args.log.info({ from: args.source, path: args.dest, sha256: actual, bytes }, 'imported and verified');
  return { sha256: actual, bytes };
}
