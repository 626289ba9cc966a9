/** The appliance's version, from its package.json (what `--version` and `GET /api/version` report). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { APPLIANCE_HOME } from './config.js';

/** Name and version of this build, and the Node.js running it. */
export interface VersionInfo {
  name: string;
  version: string;
  node: string;
}

let cached: VersionInfo | undefined;

/** Read once from `<home>/package.json`. */
export function versionInfo(): VersionInfo {
  if (!cached) {
    const pkg = JSON.parse(readFileSync(join(APPLIANCE_HOME, 'package.json'), 'utf8')) as { name?: string; version?: string };
    cached = Object.freeze({ name: pkg.name ?? 'netboot-appliance', version: pkg.version ?? '0.0.0', node: process.version });
  }
  return cached;
}
