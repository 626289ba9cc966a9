/**
 * The ARM64 test OS for the lab: Debian's arm64 cloud kernel and static busybox, downloaded as
 * packages (`apt-get download` with the arm64 dpkg architecture added for the download only, then
 * `dpkg-deb -x`, never installed) into a cache, and the same busybox initrd as on x86-64 built
 * from them (with the arm64 kernel's virtio-net modules).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ApplianceError } from '../errors.js';
import { DEFAULT_DEB_CACHE, downloadDebs } from '../fetch/secureboot.js';
import { createSilentLogger, type Logger } from '../log.js';
import { buildTestInitrd, type TestInitrd } from './initrd.js';

/** Kernel and initrd of the ARM64 test OS. */
export interface Arm64TestOs {
  kernelPath: string;
  initrdPath: string;
  version: string;
}

const META = 'linux-image-cloud-arm64';

/** The unpacked arm64 kernel in `x`, if there is one. */
function findKernel(x: string): { path: string; version: string } | undefined {
  const boot = join(x, 'boot');
  if (!existsSync(boot)) return undefined;
  const name = readdirSync(boot)
    .filter((n) => /^vmlinuz-.*-arm64$/.test(n))
    .sort((a, b) => b.localeCompare(a, 'en', { numeric: true }))[0];
  if (!name) return undefined;
  const version = name.slice('vmlinuz-'.length);
  return existsSync(join(x, 'lib', 'modules', version)) ? { path: join(boot, name), version } : undefined;
}

/**
 * Download (once; cached under `cacheDir/arm64-testos`) and build the ARM64 test OS. Throws
 * ERR_LAB_PREREQ with the reason when the packages cannot be fetched.
 */
export async function prepareArm64TestOs(options: { cacheDir?: string; log?: Logger } = {}): Promise<Arm64TestOs> {
  const log = options.log ?? createSilentLogger();
  const cache = join(options.cacheDir ?? DEFAULT_DEB_CACHE, 'arm64-testos');
  const x = join(cache, 'x');
  try {
    if (!findKernel(x) || !existsSync(join(x, 'bin', 'busybox'))) {
      // The meta package names the versioned kernel package it depends on.
      await downloadDebs([`${META}:arm64`, 'busybox-static:arm64'], cache, { log, foreignArch: 'arm64' });
      const meta = readdirSync(cache).find((f) => f.startsWith(`${META}_`) && f.endsWith('.deb'));
      if (!meta) throw new Error(`${META} was not downloaded`);
      const depends = execFileSync('dpkg-deb', ['-f', join(cache, meta), 'Depends'], { encoding: 'utf8' });
      const kernelPkg = /linux-image-[0-9][^\s,(]*-cloud-arm64/.exec(depends)?.[0];
      if (!kernelPkg) throw new Error(`${META} depends on no versioned kernel (${depends.trim()})`);
      await downloadDebs([`${kernelPkg}:arm64`], cache, { log, foreignArch: 'arm64' });
    }
  } catch (err) {
    throw new ApplianceError('ERR_LAB_PREREQ', `cannot get the arm64 test os packages: ${(err as Error).message}`, {}, { cause: err });
  }
  const kernel = findKernel(x);
  if (!kernel) throw new ApplianceError('ERR_LAB_PREREQ', `no arm64 kernel with modules unpacked in ${x}`);
  // modules.dep is made by the package's postinst, which dpkg-deb -x does not run; depmod reads
  // the arm64 modules fine from here (kmod).
  if (!existsSync(join(x, 'lib', 'modules', kernel.version, 'modules.dep'))) {
    try {
      execFileSync('depmod', ['-b', x, kernel.version], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      throw new ApplianceError('ERR_LAB_PREREQ', `depmod -b ${x} ${kernel.version} failed (install kmod): ${(err as Error).message}`, {}, { cause: err });
    }
  }
  const initrd: TestInitrd = buildTestInitrd({ kernel, busyboxPath: join(x, 'bin', 'busybox'), modulesRoot: join(x, 'lib', 'modules') });
  return { kernelPath: kernel.path, initrdPath: initrd.path, version: kernel.version };
}
