/**
 * Which bytes a read request reads: the mode check, the name check, then the virtual files, the
 * boot-file cache or a disk file in the root and fallback directories, wrapped for netascii.
 * transfer.ts asks this once per request and then only sends; this module sends nothing.
 *
 * Every await is followed by the caller's `aborted()` check: a transfer that is superseded,
 * reaped or stopped while its file is being resolved gets `{ kind: 'aborted' }` and nothing
 * stays open.
 */
import { definedFields } from '../defined.js';
import type { Logger } from '../log.js';
import type { FileCache } from './file-cache.js';
import {
  clip,
  createBufferReader,
  createFileReader,
  createNetasciiReader,
  locateFile,
  normalizeRequestName,
  openLocated,
  openSource,
  type BlockReader,
  type TftpSource,
} from './files.js';
import { negotiateOptions, type NegotiationLimits } from './negotiate.js';
import { TFTP_ERROR, type RequestPacket } from './packet.js';

/** Who asked for a virtual file. `name` is normalised (no leading slash, `/` separators). */
export interface VirtualFileRequest {
  name: string;
  /** The name exactly as the client sent it. */
  rawName: string;
  client: { address: string; port: number };
  /** The client's MAC when DHCP has seen it at this address (EventLog.macForIp). */
  mac?: string;
}

/**
 * Consulted before the disk for every read request: return content to serve it, undefined to
 * fall through to the root and fallback directories. A thrown error refuses the request
 * (TFTP error 0) and is logged.
 */
export type VirtualFiles = (request: VirtualFileRequest) => Promise<TftpSource | undefined>;

/** What resolving a request needs from the server. */
export interface ReadSourceContext {
  log: Logger;
  dirs: readonly string[];
  limits: NegotiationLimits;
  virtualFiles: VirtualFiles | undefined;
  cache: FileCache;
}

/** The outcome of resolving one read request. */
export type ReadSource =
  | {
      kind: 'ready';
      /** The normalised name. */
      name: string;
      reader: BlockReader;
      /** The size `tsize` reports; undefined for netascii (its converted size is unknown). */
      size: number | undefined;
      /** Where it came from: `virtual` or the directory it was found in. */
      label: string;
      /** The whole file, when it is an octet read of the boot-file cache (a transfer thread can send it). */
      content?: Buffer;
    }
  | { kind: 'refused'; code: number; message: string; reason: string; level: 'info' | 'warn' | 'error' }
  | { kind: 'aborted' };

/** Blocks per chunk read from a file too large for the cache (about 128 KiB, whole blocks). */
function chunkBytes(blksize: number): number {
  return blksize * Math.max(1, Math.ceil((128 * 1024) / blksize));
}

function refusal(code: number, reason: string, level: 'info' | 'warn'): ReadSource {
  return { kind: 'refused', code, message: code === TFTP_ERROR.ACCESS_VIOLATION ? 'access violation' : 'file not found', reason, level };
}

/**
 * Resolve `request` from `client` (whose MAC DHCP may know) to an open block reader, a refusal
 * (sent by the caller as a TFTP error) or `aborted` when `aborted()` became true on the way.
 */
export async function openReadSource(
  ctx: ReadSourceContext,
  request: RequestPacket,
  client: { address: string; port: number },
  mac: string | undefined,
  aborted: () => boolean,
): Promise<ReadSource> {
  const mode = request.mode.toLowerCase();
  if (mode !== 'octet' && mode !== 'netascii') {
    // RFC 1350 "mail" mode and anything else: not supported by a read-only boot server.
    return {
      kind: 'refused',
      code: TFTP_ERROR.ILLEGAL_OPERATION,
      message: `unsupported mode ${clip(request.mode, 32)}`,
      reason: 'unsupported-mode',
      level: 'info',
    };
  }
  const check = normalizeRequestName(request.filename);
  if (check.kind === 'refused') return refusal(check.code, check.reason, check.code === TFTP_ERROR.ACCESS_VIOLATION ? 'warn' : 'info');
  const name = check.name;

  let reader: BlockReader | undefined;
  let size: number | undefined;
  let label = '';
  let content: Buffer | undefined;
  if (ctx.virtualFiles) {
    let source: TftpSource | undefined;
    try {
      source = await ctx.virtualFiles({ name, rawName: request.filename, client: { ...client }, ...definedFields({ mac }) });
    } catch (err) {
      ctx.log.error({ err: (err as Error).message, file: name, mac }, 'tftp virtual file failed');
      return { kind: 'refused', code: TFTP_ERROR.NOT_DEFINED, message: 'internal error', reason: 'virtual-file-error', level: 'error' };
    }
    if (aborted()) return { kind: 'aborted' };
    if (source !== undefined) {
      ({ reader, size } = openSource(source));
      label = 'virtual';
    }
  }
  if (!reader) {
    const located = await locateFile(name, ctx.dirs);
    if (aborted()) return { kind: 'aborted' };
    if (located.kind === 'refused') return refusal(located.code, located.reason, located.code === TFTP_ERROR.ACCESS_VIOLATION ? 'warn' : 'info');
    label = located.dir;
    const cached = ctx.cache.get(located) ?? (await ctx.cache.loading(located)?.catch(() => undefined));
    if (aborted()) return { kind: 'aborted' };
    if (cached) {
      reader = createBufferReader(cached);
      size = cached.length;
      content = cached;
    } else {
      const opened = await openLocated(located);
      if (opened.kind === 'refused') {
        if (aborted()) return { kind: 'aborted' };
        return refusal(opened.code, opened.reason, 'warn');
      }
      if (ctx.cache.fits(opened.size)) {
        try {
          content = await ctx.cache.load({ ...located, size: opened.size }, opened.handle);
          reader = createBufferReader(content);
          size = content.length;
        } finally {
          await opened.handle.close().catch(() => undefined);
        }
      } else {
        size = opened.size;
        const blksize = negotiateOptions(request.options, ctx.limits, size).blksize;
        reader = createFileReader(opened.handle, chunkBytes(blksize));
      }
    }
  }
  if (aborted()) {
    // Aborted while resolving (server stopping, superseded, reaped).
    await reader.close().catch(() => undefined);
    return { kind: 'aborted' };
  }
  if (mode === 'netascii') return { kind: 'ready', name, reader: createNetasciiReader(reader), size: undefined, label };
  return { kind: 'ready', name, reader, size, label, ...definedFields({ content }) };
}
