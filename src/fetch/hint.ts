/**
 * Which `fetch` command puts a missing asset in place: the boot routes and the web console
 * name it on the machine's console and in the profile check, so the layouts the fetch commands
 * write (`rancheros/<version>/`, `debian-installer/12/amd64/`) are known only here and in the
 * commands themselves.
 */
import path from 'node:path';
import { DEBIAN_INSTALLER_ASSET_DIR } from './debian-installer.js';
import { DEFAULT_RANCHEROS_VERSION } from './rancheros.js';

/**
 * The command line that fetches `source` (a `/assets/...` path) into `assetsDir`, with
 * `--version` / `--assets` only where they differ from the command's defaults; undefined when
 * no fetch command writes that path.
 */
export function fetchCommandFor(source: string, assetsDir: string): string | undefined {
  const assets = path.resolve(assetsDir);
  const assetsFlag = assets === path.resolve('assets') ? '' : ` --assets ${assets}`;
  if (source.startsWith(`/assets/${DEBIAN_INSTALLER_ASSET_DIR}/`)) return `node bin/appliance fetch debian-installer${assetsFlag}`;
  const rancheros = /^\/assets\/rancheros\/([^/]+)\/[^/]+$/.exec(source);
  if (rancheros) {
    const version = rancheros[1]!;
    return `node bin/appliance fetch rancheros${version === DEFAULT_RANCHEROS_VERSION ? '' : ` --version ${version}`}${assetsFlag}`;
  }
  return undefined;
}
