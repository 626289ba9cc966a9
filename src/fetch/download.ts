/**
 * A careful HTTP(S) downloader for release assets (RancherOS kernels, iPXE binaries).
 *
 * Guarantees: data is written to `dest + '.part'` and renamed into place only after it is
 * complete, fsynced and (when a checksum is given) verified, so `dest` never holds a
 * half-written or unverified file. An interrupted transfer keeps its `.part` (plus a small
 * `.part.json` with the URL and validator) and the next call resumes it with a Range request
 * (RFC 9110 §14.2); a checksum mismatch deletes the part so the next call starts clean.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { basename, dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { syncDir } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';

/** One progress report for one file; `done` is true exactly once, at the end (success or not). */
export interface DownloadProgress {
  /** Short name for display (the destination's base name). */
  file: string;
  url: string;
  /** Bytes of the file present so far, including a resumed prefix. */
  received: number;
  /** Full file size when the server told us, else undefined. */
  total: number | undefined;
  /** Bytes that were already on disk when this transfer started (resume). */
  resumedFrom: number;
  done: boolean;
}

/** Receives progress reports; injectable so tests need no TTY (see `progress.ts`). */
export type ProgressListener = (progress: DownloadProgress) => void;

/** Options for `downloadFile`. */
export interface DownloadOptions {
  /** `http:` or `https:` URL. */
  url: string;
  /** Final path; written only after the download is complete and verified. */
  dest: string;
  /** Hex sha256 of the whole file; when given, a mismatch throws `ERR_FETCH_CHECKSUM`. */
  expectedSha256?: string;
  onProgress?: ProgressListener;
  signal?: AbortSignal;
  log: Logger;
  /** Redirects followed before giving up (default 5). */
  maxRedirects?: number;
  /** A connection idle this long is dropped and counts as interrupted (default 30 s). */
  idleTimeoutMs?: number;
  /** Automatic resumes after a network error or 5xx within this call (default 0). */
  retries?: number;
  /** Pause before each automatic retry, multiplied by the attempt number (default 1000 ms). */
  retryDelayMs?: number;
  /**
   * Extra check of the complete file (e.g. "is this a PE image") run after the checksum and
   * before the rename; if it throws, the part is deleted and the error propagates.
   */
  check?: (path: string) => Promise<void>;
}

/** What `downloadFile` did. */
export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** Bytes reused from an earlier interrupted download (0 when none). */
  resumedFrom: number;
  /** The URL the file finally came from, after redirects. */
  finalUrl: string;
}

const DEFAULT_MAX_REDIRECTS = 5;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
const USER_AGENT = 'netboot-appliance';
const SHA256_RE = /^[0-9a-f]{64}$/;

/** Sidecar next to the `.part`: lets a later run check the part belongs to the same URL/entity. */
interface PartMeta {
  url: string;
  /** Strong ETag or Last-Modified of the entity the part was cut from, for If-Range. */
  validator?: string;
}

/** Thrown internally when the part file cannot be continued and the transfer must start at 0. */
class RestartFromZero extends Error {}

/**
 * Download `url` to `dest` atomically, resuming an earlier interrupted attempt.
 *
 * Errors (all `ApplianceError`): `ERR_FETCH_URL` bad URL, `ERR_FETCH_HTTP` non-success status,
 * `ERR_FETCH_REDIRECT` too many or broken redirects, `ERR_FETCH_NETWORK` connection failed or
 * was cut (the part is kept; run again to resume), `ERR_FETCH_TIMEOUT` idle connection,
 * `ERR_FETCH_ABORTED` signal fired, `ERR_FETCH_SIZE` body length disagrees with the headers,
 * `ERR_FETCH_CHECKSUM` sha256 mismatch (the part is deleted).
 */
export async function downloadFile(options: DownloadOptions): Promise<DownloadResult> {
  const url = parseHttpUrl(options.url, 'download url');
  let expected: string | undefined;
  if (options.expectedSha256 !== undefined) {
    expected = options.expectedSha256.trim().toLowerCase();
    if (!SHA256_RE.test(expected)) {
      throw new ApplianceError('ERR_FETCH_ARGS', `expected sha256 for ${url.href} is not 64 hex digits: ${JSON.stringify(options.expectedSha256)}`);
    }
  }
  const retries = options.retries ?? 0;
  const retryDelayMs = options.retryDelayMs ?? 1000;
  await mkdir(dirname(options.dest), { recursive: true });

  for (let attempt = 0; ; attempt++) {
    try {
      return await downloadOnce(url, expected, options);
    } catch (err) {
      if (attempt >= retries || !isRetryable(err)) throw err;
      options.log.warn({ url: url.href, attempt: attempt + 1, retries, err: (err as Error).message }, 'download interrupted, retrying (will resume)');
      await sleep(retryDelayMs * (attempt + 1), undefined, options.signal ? { signal: options.signal } : undefined).catch(() => {
        throw abortedError(url);
      });
    }
  }
}

/** Fetch a small text resource (for example `checksums.txt`) into memory, following redirects. */
export async function fetchText(options: {
  url: string;
  log: Logger;
  signal?: AbortSignal;
  /** Refuse bodies larger than this (default 1 MiB). */
  maxBytes?: number;
  maxRedirects?: number;
  idleTimeoutMs?: number;
}): Promise<string> {
  const url = parseHttpUrl(options.url, 'url');
  const maxBytes = options.maxBytes ?? 1024 * 1024;
  const { res, finalUrl } = await requestFollowingRedirects(url, {}, options);
  if (res.statusCode !== 200) {
    res.resume();
    throw httpError(finalUrl, res);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) {
        res.destroy();
        throw new ApplianceError('ERR_FETCH_SIZE', `${finalUrl.href} is larger than ${maxBytes} bytes; is the mirror right?`, { url: finalUrl.href });
      }
      chunks.push(chunk);
    }
  } catch (err) {
    throw mapTransferError(err, finalUrl, options.signal);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Hex sha256 of a file, streamed (kernels and initrds are too big to hold in memory). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/**
 * Parse and check an `http:`/`https:` URL; `what` names it in the error.
 * Throws `ERR_FETCH_URL` for anything else (file:, ftp:, garbage).
 */
export function parseHttpUrl(value: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ApplianceError('ERR_FETCH_URL', `${what} ${JSON.stringify(value)} is not a valid url; use http://host/path or https://host/path`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ApplianceError('ERR_FETCH_URL', `${what} ${JSON.stringify(value)} must use http: or https:, not ${url.protocol}`);
  }
  return url;
}

/**
 * Check a mirror base URL (http/https, no query or fragment) and return it without trailing
 * slashes, ready for `${mirror}/${path}`. Throws `ERR_FETCH_MIRROR`.
 */
export function normalizeMirror(mirror: string): string {
  let url: URL;
  try {
    url = parseHttpUrl(mirror, 'mirror');
  } catch (err) {
    throw new ApplianceError('ERR_FETCH_MIRROR', (err as Error).message, { mirror });
  }
  if (url.search !== '' || url.hash !== '') {
    throw new ApplianceError('ERR_FETCH_MIRROR', `mirror ${JSON.stringify(mirror)} must be a plain base url without ? or #`, { mirror });
  }
  return url.href.replace(/\/+$/, '');
}

async function downloadOnce(url: URL, expected: string | undefined, options: DownloadOptions): Promise<DownloadResult> {
  const part = `${options.dest}.part`;
  const metaPath = `${options.dest}.part.json`;
  const file = basename(options.dest);
  const log = options.log;

  // At most two passes: one trying to resume, one from zero if the server cannot continue.
  for (let pass = 0; pass < 2; pass++) {
    let offset = await fileSize(part);
    let meta = offset > 0 ? await readMeta(metaPath) : undefined;
    if (offset > 0 && (meta === undefined || meta.url !== url.href)) {
      // A part we did not write for this URL cannot be trusted as a prefix of this file.
      log.info({ url: url.href, part }, 'discarding partial file from another source');
      await discardPart(part, metaPath);
      offset = 0;
      meta = undefined;
    }

    const headers: Record<string, string> = {};
    if (offset > 0) {
      headers.range = `bytes=${offset}-`;
      // If-Range (RFC 9110 §13.1.5): if the file changed upstream, the server sends the whole
      // new file (200) instead of a range that would splice two versions together.
      if (meta?.validator !== undefined) headers['if-range'] = meta.validator;
    }

    const { res, finalUrl } = await requestFollowingRedirects(url, headers, options);
    const status = res.statusCode ?? 0;
    let total: number | undefined;
    let append = false;
    try {
      if (status === 200) {
        if (offset > 0) log.info({ url: finalUrl.href, offset }, 'server ignored the range request; restarting from zero');
        offset = 0;
        total = contentLength(res);
      } else if (status === 206 && offset > 0) {
        const range = parseContentRange(res.headers['content-range']);
        const length = contentLength(res);
        if (
          range === undefined ||
          range.start !== offset ||
          (length !== undefined && length !== range.end - range.start + 1) ||
          (range.total !== undefined && range.end + 1 !== range.total)
        ) {
          log.warn(
            { url: finalUrl.href, offset, contentRange: res.headers['content-range'] },
            'unusable Content-Range in reply to resume; restarting from zero',
          );
          throw new RestartFromZero();
        }
        total = range.total;
        append = true;
      } else if (status === 416 && offset > 0) {
        // Range Not Satisfiable: either the part is already whole (a previous run died between
        // the last byte and the rename) or the file upstream shrank.
        const range = parseUnsatisfiedRange(res.headers['content-range']);
        if (range !== offset) throw new RestartFromZero();
        res.resume();
        log.info({ url: finalUrl.href, bytes: offset }, 'partial file is already complete');
        return await finish({ part, metaPath, dest: options.dest, url: finalUrl, expected, resumedFrom: offset, log, check: options.check });
      } else {
        throw httpError(finalUrl, res);
      }
    } catch (err) {
      res.destroy();
      if (err instanceof RestartFromZero) {
        await discardPart(part, metaPath);
        if (pass === 0) continue;
        // Unreachable in practice: a fresh request sends no Range, so nothing can restart it.
        throw new ApplianceError('ERR_FETCH_HTTP', `${finalUrl.href} kept answering with an unusable range reply (status ${status})`, {
          url: finalUrl.href,
          status,
        });
      }
      throw err;
    }

    if (!append) {
      const validator = pickValidator(res);
      await writeFile(metaPath, JSON.stringify({ url: url.href, ...(validator !== undefined ? { validator } : {}) } satisfies PartMeta));
    }
    const resumedFrom = offset;
    if (resumedFrom > 0) log.info({ url: finalUrl.href, offset: resumedFrom, total }, 'resuming download');
    else log.info({ url: finalUrl.href, total }, 'downloading');

    let received = offset;
    const report = (done: boolean): void => {
      options.onProgress?.({ file, url: finalUrl.href, received, total, resumedFrom, done });
    };
    report(false);
    // Each chunk is awaited onto disk before the next is read, so whatever arrived before a
    // connection drop is in the part file and the next run resumes after it.
    try {
      const handle = await open(part, append ? 'a' : 'w');
      try {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          await handle.write(chunk);
          received += chunk.length;
          report(false);
        }
      } finally {
        await handle.close();
      }
    } catch (err) {
      report(true);
      const mapped = mapTransferError(err, finalUrl, options.signal);
      if (mapped.code === 'ERR_FETCH_NETWORK' || mapped.code === 'ERR_FETCH_TIMEOUT') {
        log.warn({ url: finalUrl.href, received, total, part }, 'download interrupted; partial file kept for resume');
      }
      throw mapped;
    }
    report(true);

    if (total !== undefined && received !== total) {
      // Node already rejects a body shorter than Content-Length; this catches the other cases.
      if (received > total) await discardPart(part, metaPath);
      throw new ApplianceError('ERR_FETCH_SIZE', `${finalUrl.href} sent ${received} bytes but announced ${total}`, { url: finalUrl.href, received, total });
    }
    return await finish({ part, metaPath, dest: options.dest, url: finalUrl, expected, resumedFrom, log, check: options.check });
  }
  throw new ApplianceError('ERR_FETCH_HTTP', `could not download ${url.href}`);
}

/** fsync, verify, rename into place, fsync the directory. */
async function finish(args: {
  part: string;
  metaPath: string;
  dest: string;
  url: URL;
  expected: string | undefined;
  resumedFrom: number;
  log: Logger;
  check: ((path: string) => Promise<void>) | undefined;
}): Promise<DownloadResult> {
  const handle = await open(args.part, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  // Hash the whole file, not just what this run received, so a resumed prefix is checked too.
  const actual = await sha256File(args.part);
  const bytes = await fileSize(args.part);
  if (args.expected !== undefined && actual !== args.expected) {
    await discardPart(args.part, args.metaPath);
    throw new ApplianceError(
      'ERR_FETCH_CHECKSUM',
      `checksum mismatch for ${args.url.href}: expected sha256 ${args.expected}, got ${actual}; the download was deleted`,
      { url: args.url.href, expected: args.expected, actual },
    );
  }
  if (args.check !== undefined) {
    try {
      await args.check(args.part);
    } catch (err) {
      await discardPart(args.part, args.metaPath);
      throw err;
    }
  }
  await rename(args.part, args.dest);
  await rm(args.metaPath, { force: true });
  await syncDir(dirname(args.dest));
  args.log.info({ url: args.url.href, dest: args.dest, bytes, sha256: actual, verified: args.expected !== undefined }, 'download complete');
  return { path: args.dest, bytes, sha256: actual, resumedFrom: args.resumedFrom, finalUrl: args.url.href };
}

interface RequestOptions {
  signal?: AbortSignal;
  maxRedirects?: number;
  idleTimeoutMs?: number;
}

/** GET `url`, following 301/302/303/307/308 up to `maxRedirects`; returns the final response. */
async function requestFollowingRedirects(url: URL, headers: Record<string, string>, options: RequestOptions): Promise<{ res: IncomingMessage; finalUrl: URL }> {
  const maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  let current = url;
  for (let hop = 0; ; hop++) {
    const res = await requestOnce(current, headers, options);
    const status = res.statusCode ?? 0;
    if (![301, 302, 303, 307, 308].includes(status)) return { res, finalUrl: current };
    res.resume();
    const location = res.headers.location;
    if (location === undefined || location === '') {
      throw new ApplianceError('ERR_FETCH_REDIRECT', `${current.href} redirected (status ${status}) without a Location header`, { url: current.href, status });
    }
    if (hop >= maxRedirects) {
      throw new ApplianceError('ERR_FETCH_REDIRECT', `too many redirects (more than ${maxRedirects}) starting at ${url.href}`, { url: url.href });
    }
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw new ApplianceError('ERR_FETCH_REDIRECT', `${current.href} redirected to an invalid location ${JSON.stringify(location)}`, { url: current.href });
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new ApplianceError('ERR_FETCH_REDIRECT', `${current.href} redirected to unsupported ${next.protocol} url`, { url: current.href });
    }
    current = next;
  }
}

/**
 * One GET. A keep-alive socket the server closed just as it was reused resets before any
 * response (Node's documented `reusedSocket` race); that request is sent once more on a new
 * socket, since nothing of it reached the server's application.
 */
async function requestOnce(url: URL, headers: Record<string, string>, options: RequestOptions): Promise<IncomingMessage> {
  try {
    return await requestOnSocket(url, headers, options);
  } catch (err) {
    if (!(err instanceof StaleSocketError)) throw err;
    return requestOnSocket(url, headers, { ...options, agent: false });
  }
}

/** The reused keep-alive socket was reset before a response (retried once by requestOnce). */
class StaleSocketError extends Error {}

function requestOnSocket(url: URL, headers: Record<string, string>, options: RequestOptions & { agent?: false }): Promise<IncomingMessage> {
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(abortedError(url));
      return;
    }
    const client = url.protocol === 'https:' ? https : http;
    const req = client.request(url, {
      method: 'GET',
      headers: {
        'user-agent': USER_AGENT,
        // Byte ranges must count bytes of the file itself, not of a compressed encoding.
        'accept-encoding': 'identity',
        ...headers,
      },
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
      ...(options.agent === false ? { agent: false } : {}),
    });
    let response: IncomingMessage | undefined;
    req.setTimeout(idleTimeoutMs, () => {
      const err = new ApplianceError('ERR_FETCH_TIMEOUT', `no data from ${url.href} for ${idleTimeoutMs} ms; run again to resume`, { url: url.href });
      // The socket timeout also governs the body; once the response exists, fail its stream.
      if (response !== undefined) response.destroy(err);
      else req.destroy(err);
    });
    req.once('response', (res) => {
      response = res;
      resolve(res);
    });
    // Kept for the life of the request: a late socket error must not become an uncaught one.
    req.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (response === undefined && req.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE') && !options.signal?.aborted)
        reject(new StaleSocketError(code));
      else reject(mapTransferError(err, url, options.signal));
    });
    req.end();
  });
}

function mapTransferError(err: unknown, url: URL, signal: AbortSignal | undefined): ApplianceError {
  if (err instanceof ApplianceError) return err;
  if (signal?.aborted || (err as { name?: string }).name === 'AbortError') return abortedError(url);
  const code = (err as NodeJS.ErrnoException).code;
  return new ApplianceError(
    'ERR_FETCH_NETWORK',
    `download of ${url.href} failed: ${(err as Error).message}${code !== undefined ? ` (${code})` : ''}; run again to resume`,
    { url: url.href, ...(code !== undefined ? { cause: code } : {}) },
    { cause: err },
  );
}

function abortedError(url: URL): ApplianceError {
  return new ApplianceError('ERR_FETCH_ABORTED', `download of ${url.href} was aborted`, { url: url.href });
}

function httpError(url: URL, res: IncomingMessage): ApplianceError {
  const status = res.statusCode ?? 0;
  const hint = status === 404 ? '; check the version and the mirror' : '';
  return new ApplianceError('ERR_FETCH_HTTP', `${url.href} answered http ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}${hint}`, {
    url: url.href,
    status,
  });
}

function isRetryable(err: unknown): boolean {
  if (!(err instanceof ApplianceError)) return false;
  if (err.code === 'ERR_FETCH_NETWORK' || err.code === 'ERR_FETCH_TIMEOUT') return true;
  const status = err.detail?.status;
  return err.code === 'ERR_FETCH_HTTP' && typeof status === 'number' && (status >= 500 || status === 429);
}

function contentLength(res: IncomingMessage): number | undefined {
  const value = res.headers['content-length'];
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}

/** `bytes 100-199/1000` or `bytes 100-199/*` (RFC 9110 §14.4). */
export function parseContentRange(value: string | undefined): { start: number; end: number; total: number | undefined } | undefined {
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value ?? '');
  if (!m) return undefined;
  const start = Number(m[1]);
  const end = Number(m[2]);
  const total = m[3] === '*' ? undefined : Number(m[3]);
  if (end < start || (total !== undefined && end >= total)) return undefined;
  return { start, end, total };
}

/** The complete length from a 416's `bytes * /1000`, if present. */
function parseUnsatisfiedRange(value: string | undefined): number | undefined {
  const m = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(value ?? '');
  return m ? Number(m[1]) : undefined;
}

/** Only strong validators are allowed in If-Range (RFC 9110 §13.1.5); else Last-Modified. */
function pickValidator(res: IncomingMessage): string | undefined {
  const etag = res.headers.etag;
  if (etag !== undefined && !etag.startsWith('W/')) return etag;
  return res.headers['last-modified'];
}

async function readMeta(path: string): Promise<PartMeta | undefined> {
  try {
    const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
    if (typeof parsed === 'object' && parsed !== null && typeof (parsed as PartMeta).url === 'string') {
      const validator = (parsed as PartMeta).validator;
      return { url: (parsed as PartMeta).url, ...(typeof validator === 'string' ? { validator } : {}) };
    }
  } catch {
    // Missing or unreadable sidecar: treat the part as foreign.
  }
  return undefined;
}

async function discardPart(part: string, metaPath: string): Promise<void> {
  await rm(part, { force: true });
  await rm(metaPath, { force: true });
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}
