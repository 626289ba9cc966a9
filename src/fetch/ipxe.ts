/**
 * `appliance fetch ipxe`: put the iPXE network boot programs into the TFTP root.
 *
 * The project ships no third-party binaries. Each file is copied from the system iPXE package
 * (Debian/Ubuntu `ipxe`: /usr/lib/ipxe) or, when allowed and the system lacks it, downloaded
 * from the iPXE project's site. boot.ipxe.org publishes no checksums, so downloaded files are
 * only checked for the right shape (PE image of the right machine type, sane size).
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BOOT_FILE_CATALOGUE, IPXE_SYSTEM_DIRS, PE_MACHINE, type BootFileEntry, type Firmware } from '../boot-catalogue.js';
import { copyFileDurable } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';
import { causeOf, isUnreachable, offlineError } from './offline.js';
import { createProgressReporter, type ProgressReporter } from './progress.js';
import { downloadFile, normalizeMirror, sha256File, type DownloadResult, type ProgressListener } from './download.js';

/** Which firmware a boot file is for; decides how it is checked (the catalogue's vocabulary). */
export type IpxeArch = Firmware;

/** One iPXE boot file the appliance can serve: an entry of the boot-file catalogue. */
export type IpxeFileSpec = Pick<BootFileEntry, 'name' | 'required' | 'systemNames' | 'downloadPath'> & { arch: Firmware };

/** The boot files `fetch ipxe` installs: the whole catalogue (src/boot-catalogue.ts). */
export const IPXE_FILES: readonly IpxeFileSpec[] = BOOT_FILE_CATALOGUE.map((e) => ({
  name: e.name,
  arch: e.firmware,
  required: e.required,
  systemNames: e.systemNames,
  downloadPath: e.downloadPath,
}));

/** Default places the Debian/Ubuntu `ipxe` package installs to. */
export const DEFAULT_IPXE_SYSTEM_DIRS: readonly string[] = IPXE_SYSTEM_DIRS;
/** The iPXE project's site, serving current builds at the top level. */
export const DEFAULT_IPXE_MIRROR = 'https://boot.ipxe.org';

/** Options for `fetchIpxe`. */
export interface FetchIpxeOptions {
  tftpRoot: string;
  systemDirs?: readonly string[];
  mirror?: string;
  /** Allow downloading files the system lacks from `mirror`. */
  download: boolean;
  log: Logger;
  /** Progress sink; default: a bar when stderr is a TTY, else periodic log lines. */
  onProgress?: ProgressListener;
  signal?: AbortSignal;
  /** Automatic resumes per download after a network error (default 2). */
  retries?: number;
  idleTimeoutMs?: number;
}

/** What happened to one boot file. */
export interface IpxeFileResult {
  name: string;
  arch: IpxeArch;
  /** `system`: copied from `from`; `download`: fetched from `from`; `present`: already in the TFTP root and the system lacks it. */
  source: 'system' | 'download' | 'present';
  /** Source path or URL (for `present`, the file in the TFTP root). */
  from: string;
  path: string;
  sha256: string;
  bytes: number;
  /** False when the TFTP root already held identical content. */
  changed: boolean;
}

/** Smallest plausible undionly.kpxe: the real one is ~70 KiB; error pages and truncated files are smaller. */
export const KPXE_MIN_BYTES = 16 * 1024;
/** Largest plausible undionly.kpxe: it must fit in base memory, so a bigger file is not one. */
export const KPXE_MAX_BYTES = 2 * 1024 * 1024;

/**
 * Check that `data` looks like an iPXE binary for `arch`; returns a reason when it does not.
 * EFI: `MZ` DOS header whose e_lfanew (offset 0x3c) points at `PE\0\0` with the right machine
 * type. BIOS `.kpxe`: no magic number exists, so a size range and "not HTML, not a PE".
 */
export function checkIpxeImage(data: Buffer, arch: IpxeArch): string | undefined {
  if (data.length === 0) return 'file is empty';
  if (arch === 'bios') {
    if (data.length < KPXE_MIN_BYTES || data.length > KPXE_MAX_BYTES) {
      return `size ${data.length} bytes is outside ${KPXE_MIN_BYTES}..${KPXE_MAX_BYTES} expected for undionly.kpxe`;
    }
    const head = data.subarray(0, 64).toString('latin1').trimStart().toLowerCase();
    if (head.startsWith('<')) return 'file is html/xml, not a pxe image';
    if (data[0] === 0x4d && data[1] === 0x5a) return 'file is a PE (EFI) image, not a BIOS pxe image';
    return undefined;
  }
  if (data.length < 0x40 || data[0] !== 0x4d || data[1] !== 0x5a) return 'no MZ header: not an EFI executable';
  const peOffset = data.readUInt32LE(0x3c);
  if (peOffset + 6 > data.length || data.readUInt32BE(peOffset) !== 0x50450000) return 'no PE signature at e_lfanew: not an EFI executable';
  const machine = data.readUInt16LE(peOffset + 4);
  const want = PE_MACHINE[arch];
  if (machine !== want) return `PE machine type 0x${machine.toString(16)} is not 0x${want.toString(16)} (${arch})`;
  return undefined;
}

/**
 * Copy (or download) the iPXE boot files into `tftpRoot`. Copies are atomic and durable
 * (src/durable-file.ts). Every file is shape-checked. Files still missing at the end make it throw
 * `ERR_FETCH_IPXE_MISSING` naming `apt-get install ipxe`, after the others were installed.
 */
export async function fetchIpxe(options: FetchIpxeOptions): Promise<IpxeFileResult[]> {
  const log = options.log.child({ subsystem: 'fetch', target: 'ipxe' });
  const systemDirs = options.systemDirs ?? DEFAULT_IPXE_SYSTEM_DIRS;
  const mirror = normalizeMirror(options.mirror ?? DEFAULT_IPXE_MIRROR);
  await mkdir(options.tftpRoot, { recursive: true });

  const results: IpxeFileResult[] = [];
  const missing: string[] = [];
  let warnedNoChecksums = false;
  for (const spec of IPXE_FILES) {
    const dest = join(options.tftpRoot, spec.name);
    const source = await findSystemFile(spec, systemDirs, log);
    if (source !== undefined) {
      results.push(await installCopy(spec, source, dest, log));
      continue;
    }
    const existing = await readValid(dest, spec.arch);
    if (existing !== undefined) {
      log.info({ file: spec.name, path: dest }, 'not in the system package; keeping the copy already in the tftp root');
      results.push({
        name: spec.name,
        arch: spec.arch,
        source: 'present',
        from: dest,
        path: dest,
        sha256: existing.sha256,
        bytes: existing.bytes,
        changed: false,
      });
      continue;
    }
    if (spec.downloadPath === undefined) {
      if (spec.required) missing.push(spec.name);
      else log.debug({ file: spec.name }, 'optional boot file not provided by the system; skipped');
      continue;
    }
    if (!options.download) {
      if (spec.required) missing.push(spec.name);
      continue;
    }
    const url = `${mirror}/${spec.downloadPath}`;
    if (!warnedNoChecksums) {
      log.warn({ mirror }, 'the iPXE site publishes no checksums; downloaded files are only checked for the right format');
      warnedNoChecksums = true;
    }
    const reporter = progressFor(options.onProgress, log);
    let result: DownloadResult;
    try {
      result = await downloadFile({
        url,
        dest,
        log,
        retries: options.retries ?? 2,
        check: async (path) => {
          const reason = checkIpxeImage(await readFile(path), spec.arch);
          if (reason !== undefined) {
            throw new ApplianceError('ERR_FETCH_IPXE_INVALID', `downloaded ${url} does not look like ${spec.name}: ${reason}`, { url, file: spec.name });
          }
        },
        onProgress: reporter.onProgress,
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
        ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      });
    } catch (err) {
      if (!isUnreachable(err)) throw err;
      const still = IPXE_FILES.filter((f) => f.required && f.downloadPath !== undefined && !results.some((r) => r.name === f.name));
      throw offlineError({
        host: new URL(mirror).host,
        cause: causeOf(err),
        urls: still.map((f) => `${mirror}/${f.downloadPath}`),
        folder: options.tftpRoot,
        command: 'node bin/appliance fetch ipxe',
        extra: "or install Debian's ipxe package (apt-get install ipxe), which has them all",
      });
    } finally {
      // A bar left open by an error would garble the next line on the terminal.
      reporter.stop();
    }
    log.info({ file: spec.name, url, sha256: result.sha256, bytes: result.bytes }, 'downloaded boot file (format checked, no published checksum)');
    results.push({
      name: spec.name,
      arch: spec.arch,
      source: 'download',
      from: result.finalUrl,
      path: dest,
      sha256: result.sha256,
      bytes: result.bytes,
      changed: true,
    });
  }

  if (missing.length > 0) {
    const how = options.download ? '' : `, or allow downloading them from ${mirror}`;
    throw new ApplianceError(
      'ERR_FETCH_IPXE_MISSING',
      `missing iPXE boot files ${missing.join(', ')} (looked in ${systemDirs.join(', ')}); install them with \`apt-get install ipxe\`${how}`,
      { missing, systemDirs: [...systemDirs], installed: results.map((r) => r.name) },
    );
  }
  return results;
}

/** First valid candidate in the system directories; invalid ones are warned about and skipped. */
async function findSystemFile(spec: IpxeFileSpec, systemDirs: readonly string[], log: Logger): Promise<string | undefined> {
  for (const dir of systemDirs) {
    for (const rel of spec.systemNames) {
      const path = join(dir, rel);
      let data: Buffer;
      try {
        // readFile follows symlinks: Debian links /usr/lib/ipxe/ipxe.efi to /boot/ipxe.efi.
        data = await readFile(path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        log.warn({ file: spec.name, path, err: (err as Error).message }, 'cannot read system iPXE file; skipped');
        continue;
      }
      const reason = checkIpxeImage(data, spec.arch);
      if (reason !== undefined) {
        log.warn({ file: spec.name, path, reason }, 'system iPXE file looks wrong; skipped');
        continue;
      }
      return path;
    }
  }
  return undefined;
}

async function installCopy(spec: IpxeFileSpec, source: string, dest: string, log: Logger): Promise<IpxeFileResult> {
  const sha256 = await sha256File(source);
  const bytes = (await stat(source)).size;
  const base = { name: spec.name, arch: spec.arch, source: 'system' as const, from: source, path: dest, sha256, bytes };
  if ((await hashIfFile(dest)) === sha256) {
    log.info({ file: spec.name, from: source, path: dest }, 'boot file already up to date');
    return { ...base, changed: false };
  }
  await mkdir(dirname(dest), { recursive: true });
  try {
    await copyFileDurable(source, dest);
  } catch (err) {
    throw new ApplianceError('ERR_FETCH_IPXE_COPY', `cannot copy ${source} to ${dest}: ${(err as Error).message}`, { source, dest }, { cause: err });
  }
  log.info({ file: spec.name, from: source, path: dest, sha256 }, 'copied boot file from the system package');
  return { ...base, changed: true };
}

async function readValid(path: string, arch: IpxeArch): Promise<{ sha256: string; bytes: number } | undefined> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch {
    return undefined;
  }
  if (checkIpxeImage(data, arch) !== undefined) return undefined;
  return { sha256: await sha256File(path), bytes: data.length };
}

async function hashIfFile(path: string): Promise<string | undefined> {
  try {
    if (!(await stat(path)).isFile()) return undefined;
  } catch {
    return undefined;
  }
  return sha256File(path);
}

/** The caller's listener, or the default terminal/log reporter. */
function progressFor(onProgress: ProgressListener | undefined, log: Logger): ProgressReporter {
  return onProgress !== undefined ? { onProgress, stop: () => undefined } : createProgressReporter({ log });
}
