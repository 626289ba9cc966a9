/**
 * `appliance fetch rancheros`: download a RancherOS release's `vmlinuz` and `initrd` into
 * `<assets>/rancheros/<version>/`, each verified against the release's `checksums.txt`.
 *
 * The mirror layout is `${mirror}/${version}/{checksums.txt,vmlinuz,initrd}`, as at the official
 * location https://releases.rancher.com/os (NETBOOT-FACTS §6); GitHub release assets
 * (https://github.com/rancher/os/releases/download) use the same `<version>/<file>` shape.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ApplianceError } from '../errors.js';
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
  /** `http:`/`https:` base URL holding `<version>/` directories. */
  mirror?: string;
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
  /** `present`: already there with the right hash, nothing downloaded. */
  action: 'downloaded' | 'present';
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
    throw new ApplianceError(
      'ERR_FETCH_VERSION',
      `rancheros version ${JSON.stringify(version)} is not a release tag; use the form v1.5.8`,
      { version },
    );
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
  const mirror = normalizeMirror(options.mirror ?? DEFAULT_RANCHEROS_MIRROR);
  const log = options.log.child({ subsystem: 'fetch', target: 'rancheros', version });
  const dir = join(options.assetsDir, 'rancheros', version);
  const base = `${mirror}/${version}`;
  const common = {
    log,
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
  };

  const checksumsUrl = `${base}/checksums.txt`;
  log.info({ url: checksumsUrl }, 'fetching release checksums');
  const sums = parseChecksums(await fetchText({ url: checksumsUrl, ...common }));
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
    } finally {
      // A bar left open by an error would garble the next line on the terminal.
      reporter.stop();
    }
    files.push({ name, path, sha256: result.sha256, bytes: result.bytes, action: 'downloaded', resumedFrom: result.resumedFrom, url });
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
