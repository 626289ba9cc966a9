/**
 * `appliance fetch secureboot`: put the signed boot chain into the TFTP root — Debian's shim
 * (`shim-signed`, signed by Microsoft) and Debian's signed network grub (`grub-efi-*-signed`'s
 * `grubnet*.efi.signed`, signed by Debian and trusted by shim) — as `fetch ipxe` does for iPXE.
 *
 * Files come from the installed packages when present, else from the packages downloaded with
 * `apt-get download` and unpacked with `dpkg-deb -x` into a cache: installing
 * grub-efi-amd64-signed would run grub-install on the appliance host, which is not wanted.
 * ARM64 packages need the arm64 architecture in dpkg for the download: it is added for the
 * download and removed again (docs/NETBOOT-FACTS.md section 7).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { peSignature } from '../boot/grub.js';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';
import { debianArchiveUri, hostAptSources, privateAptOptions, RELEASE_PATTERN, releaseSources } from './apt-release.js';

const run = promisify(execFile);

/** Debian architectures the signed chain is fetched for. */
export type SignedArch = 'amd64' | 'arm64';

/** Where downloaded packages are kept between runs. */
export const DEFAULT_DEB_CACHE = '/var/cache/netboot-appliance/debs';

/** One signed file: its TFTP name, where the package installs it, which package, PE machine. */
interface SignedFileSpec {
  name: string;
  packagePath: string;
  pkg: string;
  machine: number;
}

/** PE machine types (PE/COFF specification): x64 and ARM64. */
const PE_AMD64 = 0x8664;
const PE_ARM64 = 0xaa64;

/** The signed files per architecture; shim loads the grub of the same directory by this name. */
export const SIGNED_CHAIN: Readonly<Record<SignedArch, readonly SignedFileSpec[]>> = {
  amd64: [
    { name: 'shimx64.efi', packagePath: 'usr/lib/shim/shimx64.efi.signed', pkg: 'shim-signed', machine: PE_AMD64 },
    { name: 'grubx64.efi', packagePath: 'usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed', pkg: 'grub-efi-amd64-signed', machine: PE_AMD64 },
  ],
  arm64: [
    { name: 'shimaa64.efi', packagePath: 'usr/lib/shim/shimaa64.efi.signed', pkg: 'shim-signed:arm64', machine: PE_ARM64 },
    { name: 'grubaa64.efi', packagePath: 'usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed', pkg: 'grub-efi-arm64-signed', machine: PE_ARM64 },
  ],
};

/** Runs a program; a seam for tests. */
export type Runner = (cmd: string, args: readonly string[], options?: { cwd?: string }) => Promise<{ stdout: string }>;

const defaultRunner: Runner = async (cmd, args, options) => {
  const { stdout } = await run(cmd, [...args], { ...(options?.cwd ? { cwd: options.cwd } : {}), maxBuffer: 16 * 1024 * 1024, timeout: 600_000 });
  return { stdout };
};

/** The last lines of a failed command's stderr. */
function lastLines(err: unknown): string {
  return String((err as { stderr?: unknown }).stderr ?? (err as Error).message)
    .trim()
    .split('\n')
    .slice(-3)
    .join('; ');
}

function fetchError(message: string, cause?: unknown): ApplianceError {
  return new ApplianceError('ERR_FETCH_SECUREBOOT', message, {}, cause !== undefined ? { cause } : undefined);
}

/**
 * Download Debian packages into `cacheDir` (unless a .deb of that name is there already) and
 * unpack every .deb into `cacheDir/x`. Packages of `arch` arm64 on an amd64 host get the arm64
 * dpkg architecture for the download only. Returns the unpack directory.
 */
export function downloadDebs(packages: readonly string[], cacheDir: string, options: DownloadDebsOptions): Promise<string> {
  // One download at a time in this process: two at once (the firmware matrix boots the arm64
  // chain in proxy and server mode side by side) would fight over apt's lists lock ("Could not
  // get lock /var/lib/apt/lists/lock"), and one could remove the foreign dpkg architecture while
  // the other still downloads with it. The second then finds the .debs the first left.
  const mine = debQueue.then(() => downloadDebsNow(packages, cacheDir, options));
  debQueue = mine.catch(() => undefined);
  return mine;
}

/** Options of downloadDebs. */
export interface DownloadDebsOptions {
  log: Logger;
  run?: Runner;
  foreignArch?: string;
  release?: { name: string; archiveUri: string };
}

let debQueue: Promise<unknown> = Promise.resolve();

async function downloadDebsNow(packages: readonly string[], cacheDir: string, options: DownloadDebsOptions): Promise<string> {
  const runner = options.run ?? defaultRunner;
  await mkdir(cacheDir, { recursive: true });
  const have = await readdir(cacheDir);
  // apt-get download names files NAME_VERSION_ARCH.deb; one per package is kept in the cache.
  const missing = packages.filter((p) => !have.some((f) => f.startsWith(`${p.split(':')[0]}_`) && f.endsWith('.deb')));
  if (missing.length > 0) {
    let added = false;
    const arch = options.foreignArch;
    // Another Debian release: apt with a private state under the cache (apt-release.ts).
    const apt = options.release ? privateAptOptions(join(cacheDir, 'apt')) : [];
    if (options.release) {
      const dir = join(cacheDir, 'apt');
      for (const d of ['sources.list.d', 'lists/partial', 'cache/archives/partial']) await mkdir(join(dir, d), { recursive: true });
      await writeFile(join(dir, 'sources.list.d', `${options.release.name}.sources`), releaseSources(options.release.archiveUri, options.release.name));
      options.log.info(
        { release: options.release.name, uri: options.release.archiveUri },
        'reading the package lists of another debian release (private apt state)',
      );
    }
    try {
      if (arch !== undefined) {
        const { stdout: native } = await runner('dpkg', ['--print-architecture']);
        const { stdout: foreign } = await runner('dpkg', ['--print-foreign-architectures']);
        if (native.trim() !== arch && !foreign.split(/\s+/).includes(arch)) {
          options.log.info({ arch }, 'adding the dpkg architecture for the download (removed again afterwards)');
          await runner('dpkg', ['--add-architecture', arch]);
          added = true;
        }
      }
      if (arch !== undefined || options.release) {
        try {
          await runner('apt-get', [...apt, 'update', '-qq']);
        } catch (err) {
          if (!options.release) throw err;
          throw fetchError(`apt-get update for ${options.release.name} at ${options.release.archiveUri} failed: ${lastLines(err)}`, err);
        }
      }
      options.log.info({ packages: missing, cacheDir }, 'downloading debian packages (apt-get download)');
      try {
        await runner('apt-get', [...apt, 'download', ...missing], { cwd: cacheDir });
      } catch (err) {
        throw fetchError(
          `apt-get download ${missing.join(' ')} failed: ${lastLines(err)}; run apt-get update, or check the apt sources reach deb.debian.org`,
          err,
        );
      }
    } finally {
      if (added && arch !== undefined) {
        await runner('dpkg', ['--remove-architecture', arch]).catch((err: unknown) =>
          options.log.warn({ err, arch }, `could not remove the dpkg architecture ${arch}; remove it with dpkg --remove-architecture ${arch}`),
        );
        await runner('apt-get', ['update', '-qq']).catch(() => undefined);
      }
    }
  }
  const x = join(cacheDir, 'x');
  await mkdir(x, { recursive: true });
  for (const f of await readdir(cacheDir)) {
    if (f.endsWith('.deb')) await runner('dpkg-deb', ['-x', join(cacheDir, f), x]);
  }
  return x;
}

/** What `fetchSecureBoot` did with one file. */
export interface SignedFileResult {
  name: string;
  arch: SignedArch;
  source: string;
  path: string;
}

/** Options for `fetchSecureBoot`. */
export interface FetchSecureBootOptions {
  tftpRoot: string;
  /** Architectures to fetch (default amd64). */
  arches?: readonly SignedArch[];
  /** Package cache (default DEFAULT_DEB_CACHE). */
  cacheDir?: string;
  /** Root under which installed packages are looked for (default '/'). */
  systemRoot?: string;
  /**
   * Another Debian release's packages (e.g. `trixie`: its grub reads the ProxyDHCP offer),
   * downloaded from the host's Debian mirror; installed packages are then not used.
   */
  release?: string;
  /** The host's apt sources texts (default: read from /etc/apt); a seam for tests. */
  aptSources?: readonly string[];
  log: Logger;
  run?: Runner;
}

async function checkSigned(path: string, spec: SignedFileSpec): Promise<void> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const pe = peSignature(head.subarray(0, bytesRead));
    if (!pe || pe.machine !== spec.machine || !pe.signed) {
      throw fetchError(`${path} is not a signed ${spec.machine === PE_ARM64 ? 'arm64' : 'x86-64'} efi image; refusing to install it as ${spec.name}`);
    }
  } finally {
    await handle.close();
  }
}

/**
 * Copy shim and signed grub for each architecture into the TFTP root (each written to a
 * temporary name, checked to be a signed PE image of the right machine, then renamed).
 */
export async function fetchSecureBoot(options: FetchSecureBootOptions): Promise<SignedFileResult[]> {
  const arches = options.arches ?? ['amd64'];
  const cacheDir = options.cacheDir ?? DEFAULT_DEB_CACHE;
  const systemRoot = options.systemRoot ?? '/';
  await mkdir(options.tftpRoot, { recursive: true });
  const results: SignedFileResult[] = [];
  let release: { name: string; archiveUri: string } | undefined;
  if (options.release !== undefined) {
    if (!RELEASE_PATTERN.test(options.release)) throw fetchError(`--release ${JSON.stringify(options.release)} is not a debian release name (trixie)`);
    const archiveUri = debianArchiveUri(options.aptSources ?? hostAptSources());
    if (archiveUri === undefined) throw fetchError('no debian archive in the apt sources of this host (/etc/apt): cannot fetch another release');
    release = { name: options.release, archiveUri };
  }
  for (const arch of arches) {
    const specs = SIGNED_CHAIN[arch];
    const fromSystem = !release && specs.every((s) => existsSync(join(systemRoot, s.packagePath)));
    let base = systemRoot;
    let source = 'system package';
    if (!fromSystem) {
      const cache = join(cacheDir, release ? `${arch}-${release.name}` : arch);
      const x = join(cache, 'x');
      if (!specs.every((s) => existsSync(join(x, s.packagePath)))) {
        await downloadDebs(
          specs.map((s) => s.pkg),
          cache,
          {
            log: options.log,
            ...(options.run ? { run: options.run } : {}),
            ...(arch === 'arm64' ? { foreignArch: 'arm64' } : {}),
            ...(release ? { release } : {}),
          },
        );
      }
      base = x;
      source = `downloaded package (${cache})`;
    }
    for (const spec of specs) {
      const from = join(base, spec.packagePath);
      if (!existsSync(from)) throw fetchError(`${spec.pkg} did not provide ${spec.packagePath}`);
      await checkSigned(from, spec);
      const to = join(options.tftpRoot, spec.name);
      const tmp = `${to}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        await copyFile(from, tmp);
        await rename(tmp, to);
      } catch (err) {
        await rm(tmp, { force: true });
        throw fetchError(`cannot write ${to}: ${(err as Error).message}`, err);
      }
      options.log.info({ file: spec.name, arch, from, source }, 'installed signed boot file');
      results.push({ name: spec.name, arch, source, path: to });
    }
  }
  return results;
}
