/**
 * `appliance fetch debian-installer`: Debian 12's network installer kernel and initrd into the
 * assets directory, offline, from the Debian package `debian-installer-12-netboot-amd64`
 * (installed by apt, or a .deb unpacked with `dpkg-deb -x` and named with --from). Each file is
 * checked against the package's own md5sums list (dpkg's `*.md5sums`, or the package's
 * `DEBIAN/md5sums` in an unpacked .deb) before it is put in place, atomically.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { syncDir, tempPathFor } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';

/** The Debian package the files come from. */
export const DEBIAN_INSTALLER_PACKAGE = 'debian-installer-12-netboot-amd64';
/** Where the package puts the netboot tree for the text installer, relative to its root. */
export const DEBIAN_INSTALLER_TREE = 'usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64';
/** The files copied (kernel, initrd). */
export const DEBIAN_INSTALLER_FILES = ['linux', 'initrd.gz'] as const;
/** Where they go, relative to the assets directory (the shipped `debian-installer` profile's paths). */
export const DEBIAN_INSTALLER_ASSET_DIR = 'debian-installer/12/amd64';

/** Options for {@link fetchDebianInstaller}. */
export interface FetchDebianInstallerOptions {
  assetsDir: string;
  log: Logger;
  /** Root the package was unpacked into (default `/`, the installed package). */
  from?: string;
}

/** What happened to one file. */
export interface DebianInstallerFileResult {
  file: string;
  asset: string;
  size: number;
  md5: string;
  sha256: string;
  action: 'copied' | 'present';
}

async function digests(file: string): Promise<{ md5: string; sha256: string; size: number }> {
  const data = await readFile(file);
  return { md5: createHash('md5').update(data).digest('hex'), sha256: createHash('sha256').update(data).digest('hex'), size: data.length };
}

/** Parse an md5sums list (`<hex>  <path>` per line) into path -> md5. */
export function parseMd5sums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{32})\s+\*?(.+)$/.exec(line.trim());
    if (m) out.set(m[2]!.replace(/^\.?\//, ''), m[1]!);
  }
  return out;
}

async function md5List(root: string): Promise<Map<string, string>> {
  const candidates = [path.join(root, 'DEBIAN', 'md5sums'), path.join(root, 'var', 'lib', 'dpkg', 'info', `${DEBIAN_INSTALLER_PACKAGE}.md5sums`)];
  for (const c of candidates) {
    const text = await readFile(c, 'utf8').catch(() => undefined);
    if (text !== undefined) return parseMd5sums(text);
  }
  throw new ApplianceError(
    'ERR_FETCH_SOURCE',
    root === '/'
      ? `the Debian package ${DEBIAN_INSTALLER_PACKAGE} is not installed; apt-get install ${DEBIAN_INSTALLER_PACKAGE} (or unpack its .deb with dpkg-deb -R and pass --from DIR)`
      : `${root} holds no md5sums of ${DEBIAN_INSTALLER_PACKAGE} (DEBIAN/md5sums); unpack the .deb with dpkg-deb -R PACKAGE.deb DIR`,
    { from: root },
  );
}

/** Copy the installer kernel and initrd into `<assets>/debian-installer/12/amd64/`. */
export async function fetchDebianInstaller(options: FetchDebianInstallerOptions): Promise<DebianInstallerFileResult[]> {
  const root = path.resolve(options.from ?? '/');
  const sums = await md5List(root);
  const outDir = path.join(options.assetsDir, DEBIAN_INSTALLER_ASSET_DIR);
  await mkdir(outDir, { recursive: true });
  const results: DebianInstallerFileResult[] = [];
  for (const name of DEBIAN_INSTALLER_FILES) {
    const rel = `${DEBIAN_INSTALLER_TREE}/${name}`;
    const src = path.join(root, rel);
    const want = sums.get(rel);
    if (!want) throw new ApplianceError('ERR_FETCH_SOURCE', `the md5sums of ${DEBIAN_INSTALLER_PACKAGE} do not list ${rel}`, { file: rel });
    const st = await stat(src).catch(() => undefined);
    if (!st?.isFile()) throw new ApplianceError('ERR_FETCH_SOURCE', `${src} is missing; reinstall ${DEBIAN_INSTALLER_PACKAGE}`, { file: src });
    const out = path.join(outDir, name);
    const existing = await digests(out).catch(() => undefined);
    if (existing?.md5 === want) {
      results.push({ file: out, asset: `/assets/${DEBIAN_INSTALLER_ASSET_DIR}/${name}`, ...existing, action: 'present' });
      continue;
    }
    const tmp = tempPathFor(out);
    try {
      await copyFile(src, tmp);
      const got = await digests(tmp);
      if (got.md5 !== want)
        throw new ApplianceError(
          'ERR_CHECKSUM',
          `${src} has md5 ${got.md5}, but ${DEBIAN_INSTALLER_PACKAGE} lists ${want}: the file is damaged; reinstall the package`,
          { file: src },
        );
      await rename(tmp, out);
      await syncDir(outDir);
      results.push({ file: out, asset: `/assets/${DEBIAN_INSTALLER_ASSET_DIR}/${name}`, ...got, action: 'copied' });
      options.log.info({ file: out, size: got.size }, 'debian installer file copied');
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
  return results;
}
