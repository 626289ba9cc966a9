/**
 * Packages of another Debian release than the host's, for `fetch secureboot --release trixie`:
 * Debian 13's signed network grub (2.12) reads the ProxyDHCP offer, Debian 12's does not
 * (docs/NETBOOT-FACTS.md section 7, README "Firmware paths"). apt gets a private state beside
 * the package cache (its own sources, lists and caches): the host's apt configuration, lists
 * and installed packages are untouched. The archive is the host's own Debian mirror (from its
 * apt sources), with the other suite; the signing keys are the host's debian-archive-keyring.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Debian release names apt is asked for (a suite or codename). */
export const RELEASE_PATTERN = /^[a-z][a-z0-9-]{1,30}$/;

/** The keyring Debian's archive is signed with (package debian-archive-keyring). */
export const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/**
 * The URI of the main Debian archive in apt sources texts (deb822 `.sources` and one-line
 * `sources.list`): the first `deb` entry with a suite that is a plain release (no -security,
 * -updates, -backports) and the main component. Pure.
 */
export function debianArchiveUri(texts: readonly string[]): string | undefined {
  const plain = (suite: string) => /^[a-z]+$/.test(suite);
  for (const text of texts) {
    for (const block of text.split(/\n\s*\n/)) {
      const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'mi').exec(block)?.[1]?.trim().split(/\s+/) ?? [];
      if (field('URIs').length > 0 && field('Types').includes('deb') && field('Components').includes('main') && field('Suites').some(plain))
        return field('URIs')[0];
    }
    for (const line of text.split('\n')) {
      const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$/.exec(line);
      if (m && plain(m[2]!) && m[3]!.split(/\s+/).includes('main')) return m[1];
    }
  }
  return undefined;
}

/** The host's apt sources texts (sources.list and sources.list.d/*.list, *.sources). */
export function hostAptSources(etc = '/etc/apt'): string[] {
  const out: string[] = [];
  const read = (f: string) => {
    try {
      out.push(readFileSync(f, 'utf8'));
    } catch {
      // absent
    }
  };
  read(join(etc, 'sources.list'));
  try {
    for (const f of readdirSync(join(etc, 'sources.list.d')).sort()) if (f.endsWith('.sources') || f.endsWith('.list')) read(join(etc, 'sources.list.d', f));
  } catch {
    // no directory
  }
  return out;
}

/** The deb822 sources entry of `release` at `uri`. */
export function releaseSources(uri: string, release: string): string {
  return `Types: deb\nURIs: ${uri}\nSuites: ${release}\nComponents: main\nSigned-By: ${DEBIAN_KEYRING}\n`;
}

/** apt-get options that give apt the private state under `dir` (sources in `dir/sources.list.d`). */
export function privateAptOptions(dir: string): string[] {
  return [
    ['Dir::Etc::sourcelist', '/dev/null'],
    ['Dir::Etc::sourceparts', join(dir, 'sources.list.d')],
    ['Dir::State::Lists', join(dir, 'lists')],
    ['Dir::Cache', join(dir, 'cache')],
  ].flatMap(([k, v]) => ['-o', `${k}=${v}`]);
}
