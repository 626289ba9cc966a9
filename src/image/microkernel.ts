/**
 * `appliance build microkernel`: the discovery image, built here from Debian packages with
 * mmdebstrap (no Docker daemon, no registry), as a `docker save` tarball under the assets
 * directory, with its sha256.
 *
 * Two layers: a Debian root filesystem holding the hardware tools (mmdebstrap, reproducible
 * under SOURCE_DATE_EPOCH: the same inputs and mirror state give the same bytes), and a small
 * layer with the agent (`agent/discover.sh`) and the `/host-proc`, `/host-sys`, `/host-dev`
 * mount points the Hanlon/RackHD pattern runs it with. The root filesystem is cached outside
 * the repository keyed by every input that shapes it, so a rebuild after an agent change takes
 * seconds; `--no-cache` builds it from scratch.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { APPLIANCE_HOME } from '../config.js';
import { tempPathFor, writeFileDurable } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';
import { writeDockerArchive, type DockerArchive } from './docker-archive.js';
import { encodeTar } from './tar.js';

/** Debian packages in the image: the tools the agent and an operator logged into it use. */
export const MICROKERNEL_PACKAGES: readonly string[] = ['curl', 'dmidecode', 'ethtool', 'iproute2', 'ipmitool', 'lldpd', 'lshw', 'pciutils', 'util-linux'];
/** Image reference the tarball loads as. */
export const MICROKERNEL_REF = 'netboot/discovery:1';
/** Where the tarball goes, relative to the assets directory (served as `/assets/...`). */
export const MICROKERNEL_ASSET = 'microkernel/discovery.tar';
export const DEFAULT_MICROKERNEL_SUITE = 'bookworm';
export const DEFAULT_MICROKERNEL_MIRROR = 'http://deb.debian.org/debian';
/** Fixed SOURCE_DATE_EPOCH (2026-01-01T00:00:00Z): file mtimes and the image's `created`. */
export const DEFAULT_MICROKERNEL_EPOCH = 1_767_225_600;
/** Default cache directory for built root filesystems (outside the repository). */
export const DEFAULT_IMAGE_CACHE = '/var/cache/netboot-appliance';

/** Inputs that decide the root filesystem's bytes (with the mirror's state). */
export interface RootfsInputs {
  suite: string;
  mirror: string;
  packages: readonly string[];
  epoch: number;
  /** `mmdebstrap --version`, so a different mmdebstrap does not reuse an old build. */
  mmdebstrap: string;
  /**
   * sha256 of the mirror's `dists/<suite>/InRelease`: the mirror's state. A point release or
   * security update changes it, so a cached root filesystem is never older than the mirror.
   */
  release: string;
}

/** sha256 of the mirror's signed release file for `suite` (http(s):// or file://). */
export async function mirrorReleaseDigest(mirror: string, suite: string, timeoutMs = 30_000): Promise<string> {
  const url = `${mirror.replace(/\/+$/, '')}/dists/${suite}/InRelease`;
  let body: Buffer;
  try {
    if (url.startsWith('file://')) body = await readFile(new URL(url));
    else {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      body = Buffer.from(await res.arrayBuffer());
    }
  } catch (err) {
    throw new ApplianceError(
      'ERR_IMAGE_BUILD',
      `cannot read ${url}: ${(err as Error).message}; the image is built from that Debian mirror (pass --mirror URL)`,
      { step: 'mirror' },
    );
  }
  return createHash('sha256').update(body).digest('hex');
}

/** The mmdebstrap command line for `inputs`, writing a tar to `out`. */
export function mmdebstrapArgs(inputs: RootfsInputs, out: string): string[] {
  return [
    '--variant=essential',
    // Explicit: mmdebstrap otherwise guesses the format from the output name's extension.
    '--format=tar',
    `--include=${[...inputs.packages].sort().join(',')}`,
    // Documentation and translations are dead weight in a RAM-booted agent image.
    '--dpkgopt=path-exclude=/usr/share/doc/*',
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/info/*',
    '--dpkgopt=path-exclude=/usr/share/locale/*',
    // No device nodes in the layer: a container runtime provides /dev, and unprivileged
    // runtimes cannot create device nodes while unpacking.
    '--skip=output/dev',
    inputs.suite,
    out,
    inputs.mirror,
  ];
}

/** Cache key of a root filesystem: sha256 of its inputs and the exact command line. */
export function rootfsKey(inputs: RootfsInputs): string {
  const canonical = JSON.stringify({ ...inputs, packages: [...inputs.packages].sort(), args: mmdebstrapArgs(inputs, 'OUT') });
  return createHash('sha256').update(canonical).digest('hex');
}

/** The agent layer: discover.sh as the entrypoint, the host mount points and /dev. */
export function agentLayer(agentScript: Buffer, epoch: number): Buffer {
  const dir = (name: string) => ({ entry: { name, type: 'directory' as const, mode: 0o755, mtime: epoch } });
  return encodeTar([
    // The base layer has no /dev (--skip=output/dev); runtimes mount their own over it.
    dir('dev/'),
    dir('host-dev/'),
    dir('host-proc/'),
    dir('host-sys/'),
    dir('usr/'),
    dir('usr/local/'),
    dir('usr/local/bin/'),
    { entry: { name: 'usr/local/bin/discover.sh', type: 'file', mode: 0o755, mtime: epoch }, data: agentScript },
  ]);
}

/** Options for {@link buildMicrokernel}. */
export interface BuildMicrokernelOptions {
  assetsDir: string;
  log: Logger;
  suite?: string;
  mirror?: string;
  epoch?: number;
  /** Root filesystem cache (default /var/cache/netboot-appliance); null disables caching. */
  cacheDir?: string | null | undefined;
  /** The agent script (default agent/discover.sh of this checkout). */
  agentScript?: string;
  /** Most time mmdebstrap may take (default 20 minutes). */
  timeoutMs?: number;
}

/** What a build produced (also written beside the tarball as `discovery.json`). */
export interface MicrokernelBuild extends DockerArchive {
  /** `/assets/...` path for `vars.microkernel.image`. */
  asset: string;
  ref: string;
  /** The root filesystem came from the cache. */
  cached: boolean;
  rootfsKey: string;
  inputs: RootfsInputs;
}

function mmdebstrapVersion(): string {
  const r = spawnSync('mmdebstrap', ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error || r.status !== 0) {
    throw new ApplianceError('ERR_IMAGE_BUILD', 'mmdebstrap is not installed; install it (apt-get install mmdebstrap, or scripts/install)', {
      step: 'mmdebstrap --version',
    });
  }
  return r.stdout.trim();
}

function runMmdebstrap(args: string[], epoch: number, timeoutMs: number, log: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    log.info({ args }, 'building the microkernel root filesystem with mmdebstrap (about a minute; needs the Debian mirror)');
    // As root mmdebstrap mounts /proc, /sys and /dev into its chroot in the caller's mount
    // namespace, and a killed build leaves them mounted. A private mount namespace of its own
    // (util-linux unshare) takes them down with the process, whatever ends it.
    const [cmd, argv] = process.getuid?.() === 0 ? ['unshare', ['--mount', '--propagation', 'private', 'mmdebstrap', ...args]] : ['mmdebstrap', args];
    const child = spawn(cmd, argv, { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) }, stdio: ['ignore', 'ignore', 'pipe'] });
    let tail = '';
    child.stderr.on('data', (c: Buffer) => {
      tail = (tail + c.toString('utf8')).slice(-4000);
    });
    // SIGTERM, not SIGKILL: mmdebstrap then unmounts what it mounted in the chroot.
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new ApplianceError('ERR_IMAGE_BUILD', `mmdebstrap could not start: ${err.message}`, { step: 'mmdebstrap' }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve();
      const last = tail.trim().split('\n').slice(-6).join(' | ');
      reject(new ApplianceError('ERR_IMAGE_BUILD', `mmdebstrap failed (${signal ? `killed by ${signal}` : `exit ${code}`}): ${last}`, { step: 'mmdebstrap' }));
    });
  });
}

async function exists(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/**
 * Build (or reuse the cached root filesystem and re-wrap) the discovery image into
 * `<assets>/microkernel/discovery.tar`, with `discovery.tar.sha256` (sha256sum format) and
 * `discovery.json` beside it. A failed build leaves an existing image untouched.
 */
export async function buildMicrokernel(options: BuildMicrokernelOptions): Promise<MicrokernelBuild> {
  const { log } = options;
  const epoch = options.epoch ?? DEFAULT_MICROKERNEL_EPOCH;
  const inputs: RootfsInputs = {
    suite: options.suite ?? DEFAULT_MICROKERNEL_SUITE,
    mirror: options.mirror ?? DEFAULT_MICROKERNEL_MIRROR,
    packages: MICROKERNEL_PACKAGES,
    epoch,
    mmdebstrap: mmdebstrapVersion(),
    release: '',
  };
  if (!/^[a-z][a-z0-9-]{1,31}$/.test(inputs.suite))
    throw new ApplianceError('ERR_IMAGE_BUILD', `suite ${JSON.stringify(inputs.suite)} is not a Debian suite name like bookworm`);
  if (!/^(https?|file):\/\/[^\s]+$/.test(inputs.mirror))
    throw new ApplianceError('ERR_IMAGE_BUILD', `mirror ${JSON.stringify(inputs.mirror)} must be an http(s):// or file:// URL`);
  inputs.release = await mirrorReleaseDigest(inputs.mirror, inputs.suite);
  const key = rootfsKey(inputs);
  const agentFile = options.agentScript ?? path.join(APPLIANCE_HOME, 'agent', 'discover.sh');
  const agent = await readFile(agentFile).catch((err: Error) => {
    throw new ApplianceError('ERR_IMAGE_BUILD', `cannot read the agent ${agentFile}: ${err.message}`, { step: 'agent' });
  });

  const cacheDir = options.cacheDir === null ? undefined : path.join(options.cacheDir ?? DEFAULT_IMAGE_CACHE, 'microkernel');
  const outDir = path.join(options.assetsDir, path.dirname(MICROKERNEL_ASSET));
  await mkdir(outDir, { recursive: true });
  let rootfs: string;
  let cached = false;
  let scratch: string | undefined;
  if (cacheDir !== undefined) {
    await mkdir(cacheDir, { recursive: true }).catch((err: Error) => {
      throw new ApplianceError('ERR_IMAGE_BUILD', `cannot create the image cache ${cacheDir}: ${err.message}; pass --cache-dir DIR or --no-cache`, {
        step: 'cache',
      });
    });
    rootfs = path.join(cacheDir, `rootfs-${key}.tar`);
    cached = await exists(rootfs);
  } else {
    rootfs = scratch = path.join(outDir, `.rootfs-${process.pid}.tar`);
  }
  try {
    if (!cached) {
      const tmp = scratch ?? `${tempPathFor(rootfs)}.tar`;
      try {
        await runMmdebstrap(mmdebstrapArgs(inputs, tmp), epoch, options.timeoutMs ?? 20 * 60_000, log);
        if (tmp !== rootfs) await rename(tmp, rootfs);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
    } else {
      log.info({ rootfs }, 'reusing the cached microkernel root filesystem (--no-cache builds it again)');
    }
    const out = path.join(options.assetsDir, MICROKERNEL_ASSET);
    const archive = await writeDockerArchive(out, [{ file: rootfs }, { data: agentLayer(agent, epoch) }], {
      ref: MICROKERNEL_REF,
      created: epoch,
      entrypoint: ['/bin/sh', '/usr/local/bin/discover.sh'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      labels: {
        'org.opencontainers.image.title': 'netboot-appliance discovery microkernel',
        'org.opencontainers.image.description': `agent/discover.sh on Debian ${inputs.suite} with ${[...inputs.packages].sort().join(' ')}`,
        'netboot-appliance.rootfs-key': key,
      },
      history: [`mmdebstrap ${mmdebstrapArgs(inputs, 'rootfs.tar').join(' ')}`, 'agent/discover.sh and /host-{proc,sys,dev}'],
    });
    const build: MicrokernelBuild = { ...archive, asset: `/assets/${MICROKERNEL_ASSET}`, ref: MICROKERNEL_REF, cached, rootfsKey: key, inputs };
    await writeFileDurable(`${out}.sha256`, `${archive.sha256}  ${path.basename(out)}\n`);
    await writeFileDurable(path.join(outDir, 'discovery.json'), `${JSON.stringify({ ...build, file: undefined }, null, 2)}\n`);
    log.info({ file: out, sha256: archive.sha256, size: archive.size, cached }, 'microkernel image written');
    return build;
  } finally {
    if (scratch) await rm(scratch, { force: true });
  }
}
