/**
 * `appliance fetch rancheros`: download a RancherOS release's `vmlinuz` and `initrd` into
 * `<assets>/rancheros/<version>/`, each verified against the release's `checksums.txt`.
 *
 * The mirror layout is `${mirror}/${version}/{checksums.txt,vmlinuz,initrd}`, as at the official
 * location https://releases.rancher.com/os (NETBOOT-FACTS §6); GitHub release assets
 * (https://github.com/rancher/os/releases/download) use the same `<version>/<file>` shape.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ApplianceError, ConfigError } from '../errors.js';
import { causeOf, importVerified, isUnreachable, offlineError, pathKind } from './offline.js';
import type { Logger } from '../log.js';
import { createProgressReporter, type ProgressReporter } from './progress.js';
import { downloadFile, fetchText, normalizeMirror, sha256File, type DownloadResult, type ProgressListener } from './download.js';

/** RancherOS v1.5.8 is the last 1.x release (Docker 19.03.15, Linux 4.14). */
export const DEFAULT_RANCHEROS_VERSION = 'v1.5.8';
/** The official release location. */
export const DEFAULT_RANCHEROS_MIRROR = 'https://releases.rancher.com/os';
/** The files a PXE boot of RancherOS needs. */
export const RANCHEROS_FILES = ['vmlinuz', 'initrd'] as const;

/** One of `RANCHEROS_FILES`. */
export type RancherOSFile = (typeof RANCHEROS_FILES)[number];

/** Options for `fetchRancherOS`. */
export interface FetchRancherOSOptions {
  /** Release tag, `v1.5.8` or `1.5.8` (a missing `v` is added: releases are tagged with it). */
  version?: string;
  /** `http:`/`https:` (or `file:`) base URL holding `<version>/` directories. */
  mirror?: string;
  /** Import from this local folder (vmlinuz, initrd, checksums.txt) or single file instead of downloading. */
  from?: string;
  /** The appliance's assets directory; files land in `<assetsDir>/rancheros/<version>/`. */
  assetsDir: string;
  log: Logger;
  /** Progress sink; default: a bar when stderr is a TTY, else periodic log lines. */
  onProgress?: ProgressListener;
  signal?: AbortSignal;
  /** Automatic resumes per file after a network error within this call (default 2). */
  retries?: number;
  /** Pause before an automatic resume, times the attempt number (default 1000 ms). */
  retryDelayMs?: number;
  /** Idle connection timeout (default 30 s). */
  idleTimeoutMs?: number;
}

/** What happened to one release file. */
export interface RancherOSFileResult {
  name: RancherOSFile;
  path: string;
  sha256: string;
  bytes: number;
  /** `present`: already there with the right hash, nothing downloaded; `imported`: copied from --from. */
  action: 'downloaded' | 'present' | 'imported';
  /** Bytes reused from an interrupted earlier run. */
  resumedFrom: number;
  url: string;
}

/** Summary of a `fetchRancherOS` run. */
export interface FetchRancherOSResult {
  version: string;
  dir: string;
  files: RancherOSFileResult[];
}

const VERSION_RE = /^v?\d+\.\d+\.\d+[\w.-]*$/;

/**
 * Check a release tag and return it with its `v` prefix.
 * Throws `ERR_FETCH_VERSION` for anything else, in particular path characters.
 */
export function normalizeRancherOSVersion(version: string): string {
  if (typeof version !== 'string' || !VERSION_RE.test(version)) {
    throw new ApplianceError('ERR_FETCH_VERSION', `rancheros version ${JSON.stringify(version)} is not a release tag; use the form v1.5.8`, { version });
  }
  return version.startsWith('v') ? version : `v${version}`;
}

/**
 * Parse a RancherOS `checksums.txt`: lines `sha256: <hash>  <file>` (md5 lines are ignored).
 * Plain `sha256sum` lines (`<hash>  <file>`) are accepted too. Returns file name -> lowercase
 * hex. Throws `ERR_FETCH_CHECKSUMS` when one name has two different hashes.
 */
export function parseChecksums(text: string): Map<string, string> {
  const sums = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const m = /^(?:sha256\s*:\s*)?([0-9a-fA-F]{64})\s+\*?(?:\.\/)?(\S+)$/i.exec(line);
    if (!m) continue;
    const hash = (m[1] ?? '').toLowerCase();
    const file = m[2] ?? '';
    const seen = sums.get(file);
    if (seen !== undefined && seen !== hash) {
      throw new ApplianceError('ERR_FETCH_CHECKSUMS', `checksums.txt lists two different sha256 values for ${file}`, { file });
    }
    sums.set(file, hash);
  }
  return sums;
}

/**
 * Download and verify RancherOS `vmlinuz` and `initrd` (see the module comment). Files already
 * present with the right hash are kept; an interrupted earlier run is resumed.
 */
export async function fetchRancherOS(options: FetchRancherOSOptions): Promise<FetchRancherOSResult> {
  const version = normalizeRancherOSVersion(options.version ?? DEFAULT_RANCHEROS_VERSION);
  const log = options.log.child({ subsystem: 'fetch', target: 'rancheros', version });
  const dir = join(options.assetsDir, 'rancheros', version);
  if (options.from !== undefined) return importRancherOS({ from: options.from, version, dir, log });
  if (options.mirror?.startsWith('file:')) return importRancherOS({ from: join(localMirrorPath(options.mirror), version), version, dir, log });
  const mirror = normalizeMirror(options.mirror ?? DEFAULT_RANCHEROS_MIRROR);
  const base = `${mirror}/${version}`;
  // Offline: name the files to copy in by hand, where they go, and how to import them.
  const offline = (err: unknown, firstContact = false): unknown =>
    isUnreachable(err, firstContact)
      ? offlineError({
          host: new URL(base).host,
          cause: causeOf(err),
          urls: [`${base}/checksums.txt`, ...RANCHEROS_FILES.map((f) => `${base}/${f}`)],
          folder: dir,
          command: `node bin/appliance fetch rancheros${version === DEFAULT_RANCHEROS_VERSION ? '' : ` --version ${version}`}`,
          extra: 'a partial download is kept and resumes when the network is back',
        })
      : err;
  const common = {
    log,
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
  };

  const checksumsUrl = `${base}/checksums.txt`;
  log.info({ url: checksumsUrl }, 'fetching release checksums');
  const sums = parseChecksums(await fetchText({ url: checksumsUrl, ...common }).catch((err: unknown) => Promise.reject(offline(err, true))));
  const missing = RANCHEROS_FILES.filter((name) => !sums.has(name));
  if (missing.length > 0) {
    throw new ApplianceError(
      'ERR_FETCH_CHECKSUMS',
      `${checksumsUrl} has no sha256 line for ${missing.join(', ')}; is ${version} a RancherOS release with PXE files?`,
      { url: checksumsUrl, missing },
    );
  }

  const files: RancherOSFileResult[] = [];
  for (const name of RANCHEROS_FILES) {
    const expected = sums.get(name) ?? '';
    const path = join(dir, name);
    const url = `${base}/${name}`;
    if (await isFile(path)) {
      const actual = await sha256File(path);
      if (actual === expected) {
        const bytes = (await stat(path)).size;
        log.info({ file: name, path, sha256: actual }, 'already present and verified');
        files.push({ name, path, sha256: actual, bytes, action: 'present', resumedFrom: 0, url });
        continue;
      }
      log.warn({ file: name, path, expected, actual }, 'existing file does not match the release checksum; downloading again');
    }
    const reporter = progressFor(options.onProgress, log);
    let result: DownloadResult;
    try {
      result = await downloadFile({
        url,
        dest: path,
        expectedSha256: expected,
        retries: options.retries ?? 2,
        ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {}),
        onProgress: reporter.onProgress,
        ...common,
      });
    } catch (err) {
      throw offline(err);
    } finally {
      // A bar left open by an error would garble the next line on the terminal.
      reporter.stop();
    }
    files.push({ name, path, sha256: result.sha256, bytes: result.bytes, action: 'downloaded', resumedFrom: result.resumedFrom, url });
  }
  log.info({ dir, files: files.map((f) => `${f.name}:${f.action}`) }, 'rancheros ready');
  return { version, dir, files };
}

/** The folder of a `file:///abs/path` mirror. */
function localMirrorPath(mirror: string): string {
  try {
    return fileURLToPath(mirror);
  } catch {
    throw new ConfigError(`--mirror ${mirror} is not a file:///absolute/path url`, { setting: 'mirror' });
  }
}

/**
 * `--from DIR|FILE` and `file://` mirrors: import vmlinuz and initrd (or the one FILE) from a local
 * folder holding the release's checksums.txt, each checked against it like a download.
 */
async function importRancherOS(args: { from: string; version: string; dir: string; log: Logger }): Promise<FetchRancherOSResult> {
  const { from, version, dir, log } = args;
  const kind = await pathKind(from);
  if (kind === undefined || kind === 'other')
    throw new ConfigError(`--from ${from} is not a file or folder; pass the folder holding vmlinuz, initrd and checksums.txt`, { setting: 'from' });
  let folder = from;
  let names: readonly RancherOSFile[] = RANCHEROS_FILES;
  if (kind === 'file') {
    const name = basename(from);
    if (!(RANCHEROS_FILES as readonly string[]).includes(name))
      throw new ConfigError(`--from ${from}: a single file must be named ${RANCHEROS_FILES.join(' or ')} (with checksums.txt beside it)`, { setting: 'from' });
    folder = dirname(from);
    names = [name as RancherOSFile];
  } else if ((await pathKind(join(from, 'checksums.txt'))) === undefined && (await pathKind(join(from, version))) === 'dir') {
    // A copy of the mirror's layout: FOLDER/v1.5.8/...
    folder = join(from, version);
  }
  const checksumsPath = join(folder, 'checksums.txt');
  let text: string;
  try {
    text = await readFile(checksumsPath, 'utf8');
  } catch {
    throw new ApplianceError(
      'ERR_FETCH_CHECKSUMS',
      `no checksums.txt in ${folder}: copy ${DEFAULT_RANCHEROS_MIRROR}/${version}/checksums.txt there too (files are imported only when their sha256 matches it)`,
      { folder },
    );
  }
  const sums = parseChecksums(text);
  const files: RancherOSFileResult[] = [];
  for (const name of names) {
    const expected = sums.get(name);
    if (expected === undefined) throw new ApplianceError('ERR_FETCH_CHECKSUMS', `${checksumsPath} has no sha256 line for ${name}`, { file: name });
    const source = join(folder, name);
    const path = join(dir, name);
    const url = pathToFileURL(source).href;
    if ((await isFile(path)) && (await sha256File(path)) === expected) {
      log.info({ file: name, path, sha256: expected }, 'already present and verified');
      files.push({ name, path, sha256: expected, bytes: (await stat(path)).size, action: 'present', resumedFrom: 0, url });
      continue;
    }
    if (!(await isFile(source))) {
      throw new ApplianceError('ERR_FETCH_FROM', `${source} is missing: copy ${DEFAULT_RANCHEROS_MIRROR}/${version}/${name} into ${folder}`, {
        file: name,
        folder,
      });
    }
    const { sha256, bytes } = await importVerified({ source, dest: path, expected, log });
    files.push({ name, path, sha256, bytes, action: 'imported', resumedFrom: 0, url });
  }
  log.info({ dir, files: files.map((f) => `${f.name}:${f.action}`) }, 'rancheros ready');
  return { version, dir, files };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** The caller's listener, or the default terminal/log reporter. */
function progressFor(onProgress: ProgressListener | undefined, log: Logger): ProgressReporter {
  return onProgress !== undefined ? { onProgress, stop: () => undefined } : createProgressReporter({ log });
}
