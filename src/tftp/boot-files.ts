/**
 * Where the boot files of the catalogue (boot-catalogue.ts) are found: the TFTP root first, then
 * the system directories of Debian's `ipxe` package.
 */
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_BOOT_FILES } from '../boot-catalogue.js';
import { DEFAULT_FALLBACK_DIRS, isInside, isTrustedSystemDir } from './files.js';

/** Where one boot file was found; `path` is `dir/name` (as configured, symlinks not resolved). */
export interface BootFileStatus {
  firmware: string;
  name: string;
  path?: string;
  source: 'tftp-root' | 'system' | 'missing';
}

/**
 * `dir/name` when it is a regular file the TFTP server would serve from `dir`
 * (same containment rule as resolveFile: strict for the root, package symlinks allowed in a
 * trusted system directory), else undefined.
 */
function findIn(dir: string, name: string, isRoot: boolean): string | undefined {
  try {
    const dirReal = realpathSync(dir);
    const real = realpathSync(path.join(dirReal, name));
    const info = statSync(dirReal);
    const trusted = !isRoot && isTrustedSystemDir(info.mode, info.uid);
    if (!trusted && !isInside(dirReal, real)) return undefined;
    return statSync(real).isFile() ? path.join(dir, name) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Look every entry of `table` (firmware -> file name; default the catalogue's DHCP defaults, so
 * the log names exactly what DHCP hands out) up in the TFTP root, then in `fallbackDirs` (the
 * directories the TFTP server falls back to). The appliance logs the result at start and warns on 'missing'.
 */
export function findBootFiles(
  root: string,
  fallbackDirs: readonly string[] = DEFAULT_FALLBACK_DIRS,
  table: Readonly<Record<string, string>> = DEFAULT_BOOT_FILES,
): BootFileStatus[] {
  return Object.keys(table).map((firmware) => {
    const name = table[firmware]!;
    const inRoot = findIn(root, name, true);
    if (inRoot) return { firmware, name, path: inRoot, source: 'tftp-root' };
    for (const dir of fallbackDirs) {
      const found = findIn(dir, name, false);
      if (found) return { firmware, name, path: found, source: 'system' };
    }
    return { firmware, name, source: 'missing' };
  });
}
