/**
 * `fetch secureboot --release trixie` (src/fetch/apt-release.ts, secureboot.ts): the host's
 * Debian mirror is found in its apt sources, apt runs with a private state under the package
 * cache (the host's lists and sources untouched), the installed packages are not used, and the
 * files land in the TFTP root as for the host's release. apt itself is a recorded stand-in here;
 * the real download and boot are in test/e2e/firmware-matrix.test.ts.
 */
import test from 'ava';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readdirSync } from 'node:fs';
import { debianArchiveUri, privateAptOptions, releaseSources } from '../../src/fetch/apt-release.js';
import { fetchSecureBoot, SIGNED_CHAIN, type Runner } from '../../src/fetch/secureboot.js';
import { createSilentLogger } from '../../src/log.js';
import { tempDir } from '../store/helpers.js';

const SIGNED_X64 = join('/boot', readdirSync('/boot').find((n) => /^vmlinuz-.*-amd64$/.test(n)) ?? 'missing-kernel');

test('the Debian archive of the host apt sources: deb822 and one-line forms, never the security or updates suite', (t) => {
  const deb822 = [
    'Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n',
    'Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n',
  ].join('\n');
  t.is(debianArchiveUri([deb822]), 'http://mirror.example/debian');
  t.is(
    debianArchiveUri(['deb http://a.example/debian-security bookworm-security main\ndeb [arch=amd64] http://b.example/debian bookworm main\n']),
    'http://b.example/debian',
  );
  t.is(
    debianArchiveUri(['deb-src http://a.example/debian bookworm main\n', 'Types: deb\nURIs: http://c.example/x\nSuites: stable\nComponents: contrib\n']),
    undefined,
  );
  t.regex(
    releaseSources('http://mirror.example/debian', 'trixie'),
    /^Types: deb\nURIs: http:\/\/mirror.example\/debian\nSuites: trixie\nComponents: main\nSigned-By: /,
  );
  t.deepEqual(privateAptOptions('/c').slice(0, 2), ['-o', 'Dir::Etc::sourcelist=/dev/null']);
});

test('--release trixie: private apt state under the cache, the installed packages are not used, signed files installed', async (t) => {
  const { dir, cleanup } = await tempDir('netboot-sb-release-');
  t.teardown(cleanup);
  // Installed (the host's release): must not be taken.
  for (const spec of SIGNED_CHAIN.amd64) {
    mkdirSync(dirname(join(dir, 'sys', spec.packagePath)), { recursive: true });
    writeFileSync(join(dir, 'sys', spec.packagePath), 'the host release');
  }
  const calls: string[] = [];
  const run: Runner = async (cmd, args, options) => {
    calls.push([cmd, ...args].join(' '));
    const verb = args.find((a) => a === 'update' || a === 'download');
    if (cmd === 'apt-get' && verb === 'download')
      for (const p of args.slice(args.indexOf('download') + 1)) writeFileSync(join(options!.cwd!, `${p}_2.12_amd64.deb`), '');
    if (cmd === 'dpkg-deb') {
      const pkg = SIGNED_CHAIN.amd64.find((s) => args[1]!.includes(`/${s.pkg}_`))!;
      mkdirSync(dirname(join(args[2]!, pkg.packagePath)), { recursive: true });
      copyFileSync(SIGNED_X64, join(args[2]!, pkg.packagePath));
    }
    return { stdout: '' };
  };
  const cache = join(dir, 'cache');
  const out = await fetchSecureBoot({
    tftpRoot: join(dir, 'tftp'),
    systemRoot: join(dir, 'sys'),
    cacheDir: cache,
    release: 'trixie',
    aptSources: ['Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n'],
    log: createSilentLogger(),
    run,
  });
  t.deepEqual(
    out.map((r) => [r.name, r.source]),
    [
      ['shimx64.efi', `downloaded package (${join(cache, 'amd64-trixie')})`],
      ['grubx64.efi', `downloaded package (${join(cache, 'amd64-trixie')})`],
    ],
  );
  const apt = privateAptOptions(join(cache, 'amd64-trixie', 'apt')).join(' ');
  t.deepEqual(
    calls.filter((c) => c.startsWith('apt-get')),
    [`apt-get ${apt} update -qq`, `apt-get ${apt} download shim-signed grub-efi-amd64-signed`],
  );
  t.is(readFileSync(join(cache, 'amd64-trixie', 'apt', 'sources.list.d', 'trixie.sources'), 'utf8'), releaseSources('http://mirror.example/debian', 'trixie'));
  t.true(readFileSync(join(dir, 'tftp', 'grubx64.efi')).equals(readFileSync(SIGNED_X64)), 'the downloaded grub, not the installed one');
  t.true(existsSync(join(dir, 'tftp', 'shimx64.efi')));
  await t.throwsAsync(fetchSecureBoot({ tftpRoot: join(dir, 'tftp'), release: 'trixie; rm', log: createSilentLogger(), run }), {
    message: /not a debian release name/,
  });
  await t.throwsAsync(
    fetchSecureBoot({ tftpRoot: join(dir, 'tftp'), release: 'sid', cacheDir: join(dir, 'c2'), aptSources: [], log: createSilentLogger(), run }),
    {
      message: /no debian archive in the apt sources/,
    },
  );
});
