/**
 * The real entry point, as a user runs it: `node bin/appliance ...` (built by `npm test`'s tsc
 * step into dist/). Exit codes, messages, and a non-root start that serves iPXE to curl.
 */
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const root = resolve(import.meta.dirname, '..');
const bin = join(root, 'bin', 'appliance');

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [bin, ...args], { cwd: root, env: { PATH: process.env.PATH, ...env }, encoding: 'utf8', timeout: 30_000 });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

test('--help lists the options and exits 0', (t) => {
  const r = run(['--help']);
  t.is(r.status, 0, r.stderr);
  for (const flag of [
    '--address',
    '--interface',
    '--http-port',
    '--tftp-port',
    '--dhcp-port',
    '--proxy-port',
    '--dhcp-mode',
    '--tftp-root',
    '--assets',
    '--templates',
    '--db',
    '--log-level',
    '--api-token',
  ]) {
    t.true(r.stdout.includes(flag), flag);
  }
});

const invalid: Array<[string, string[], NodeJS.ProcessEnv, RegExp]> = [
  ['bad port flag', ['--http-port', 'abc'], {}, /--http-port: "abc" is not a port/],
  ['unknown flag, with a guess', ['--htp-port', '1'], {}, /^appliance: serve: unknown option --htp-port; did you mean --http-port\? \(see serve --help\)$/m],
  ['bad env', ['--address', '127.0.0.1'], { APPLIANCE_TFTP_PORT: 'x' }, /APPLIANCE_TFTP_PORT: "x" is not a port/],
  [
    'missing directory',
    ['--address', '127.0.0.1', '--tftp-root', '/nonexistent/tftpboot'],
    {},
    /--tftp-root: directory \/nonexistent\/tftpboot does not exist/,
  ],
  ['unknown command, with a guess', ['statsu'], {}, /unknown command "statsu"; did you mean "status"\?/],
  ['unknown fetch target', ['fetch', 'foo'], {}, /unknown command "fetch foo" \(commands: fetch ipxe, fetch rancheros/],
  ['fetch target typo', ['fetch', 'ipx'], {}, /did you mean "fetch ipxe"\?/],
  ['unknown flag of a subcommand', ['fetch', 'ipxe', '--no-downlaod'], {}, /fetch ipxe: unknown option --no-downlaod; did you mean --no-download\?/],
  ['a setting the subcommand does not use', ['fetch', 'rancheros', '--http-port', '1'], {}, /--http-port does not apply to fetch rancheros/],
  ['flag without its value', ['--db'], {}, /serve: --db needs a value/],
  ['stray argument', ['version', 'x'], {}, /version: unexpected argument "x"/],
  ['bad log format', ['--log-format', 'xml'], {}, /--log-format: "xml" is not one of auto, human, json/],
  [
    'server mode on an address of no interface',
    ['--dhcp-mode', 'server', '--force', '--address', '192.0.2.1', '--http-port', '0', '--tftp-port', '0'],
    {},
    /--address 192\.0\.2\.1 is not an address of this host/,
  ],
  ['bad release tag', ['fetch', 'rancheros', '--version', 'latest'], {}, /rancheros version "latest" is not a release tag; use the form v1\.5\.8/],
  ['bad mirror', ['fetch', 'ipxe', '--mirror', 'ftp://example.invalid/'], {}, /must use http: or https:/],
  ['bad --url of a client command', ['status', '--url', 'ftp://x'], {}, /--url "ftp:\/\/x" must use http: or https:/],
];
for (const [name, args, env, message] of invalid) {
  test(`invalid usage or settings exit 2 with one clear line: ${name}`, (t) => {
    const r = run(args, env);
    t.is(r.status, 2, r.stdout + r.stderr);
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1, 'one line');
    t.notRegex(r.stderr, /--subnet|To specify a positional/, 'no advice about flags that do not exist');
    t.is(r.stdout, '', 'nothing started, nothing logged');
  });
}

const helps: Array<[string[], RegExp[], RegExp[]]> = [
  // [argv, must show, must not show]
  [['--help'], [/^commands:$/m, /^ {2}fetch {2}/m, /--http-port N/, /exit codes/], []],
  [['serve', '--help'], [/usage: node bin\/appliance serve/, /--dhcp-mode/, /SIGHUP/], [/^commands:$/m]],
  [['fetch', '--help'], [/usage: node bin\/appliance fetch COMMAND/, /^ {2}ipxe {2}/m, /^ {2}rancheros {2}/m], [/--http-port/]],
  [
    ['fetch', 'ipxe', '--help'],
    [/usage: node bin\/appliance fetch ipxe \[options\]/, /--no-download/, /--tftp-root DIR/, /--mirror URL/],
    [/--http-port/, /--db/, /--version/],
  ],
  [
    ['fetch', 'rancheros', '-h'],
    [/fetch rancheros/, /--version TAG/, /--assets DIR/],
    [/--tftp-root/, /--no-download/],
  ],
  [['status', '--help'], [/--url URL/, /--http-port N/], [/--tftp-root/]],
  [['machines', '--help'], [/--json/], [/--dhcp-mode/]],
  [['events', '--help'], [/--follow/, /--mac MAC/], [/--assets/]],
  [['version', '--help'], [/print the appliance version/], [/--http-port/]],
  [['lab', '--help'], [/usage: node bin\/appliance lab/, /--firmware/], []],
];
for (const [argv, shown, hidden] of helps) {
  test(`${argv.join(' ')} prints only what applies and exits 0`, (t) => {
    const r = run(argv);
    t.is(r.status, 0, r.stderr);
    t.is(r.stderr, '');
    for (const re of shown) t.regex(r.stdout, re);
    for (const re of hidden) t.notRegex(r.stdout, re);
  });
}

test('a group without its subcommand prints the group help on stderr and exits 2', (t) => {
  const r = run(['fetch']);
  t.is(r.status, 2);
  t.regex(r.stderr, /usage: node bin\/appliance fetch COMMAND/);
  t.is(r.stdout, '');
});

test('--version and version print the package version', (t) => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  for (const argv of [['--version'], ['version']]) {
    const r = run(argv);
    t.is(r.status, 0, r.stderr);
    t.is(r.stdout, `netboot-appliance ${version} (node ${process.version})\n`);
  }
});

test('fetch does not need the db directory (settings a command does not use are not validated)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-fetch-'));
  const r = run(['fetch', 'ipxe', '--no-download', '--tftp-root', dir], { APPLIANCE_DB: '/nonexistent/dir/db.json', APPLIANCE_HTTP_PORT: 'not a port' });
  t.is(r.status, 0, r.stderr);
});

test('a client command with no appliance running says so and exits 1', (t) => {
  const r = run(['status', '--url', 'http://127.0.0.1:9']);
  t.is(r.status, 1);
  t.regex(r.stderr, /^appliance: no appliance answers at http:\/\/127\.0\.0\.1:9 .*is it running\?/);
});

/** Start the appliance and resolve with its ports once it logs "ready". */
function startAppliance(args: string[], user?: string): Promise<{ child: ChildProcess; ports: Record<string, number>; lines: string[] }> {
  // setpriv execs in place (runuser would fork), so killing the child kills the appliance.
  const cmd = user ? 'setpriv' : process.execPath;
  const argv = user ? [`--reuid=${user}`, '--regid=nogroup', '--clear-groups', '--', process.execPath, bin, ...args] : [bin, ...args];
  const child = spawn(cmd, argv, { cwd: root, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolvePorts, reject) => {
    const timer = setTimeout(() => reject(new Error(`appliance not ready in 20 s: ${lines.join('\n')} ${stderr}`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      const entry = JSON.parse(line) as { msg: string; ports?: Record<string, number> };
      if (entry.msg === 'netboot appliance ready') {
        clearTimeout(timer);
        resolvePorts({ child, ports: entry.ports!, lines });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`appliance exited ${code}: ${stderr} ${lines.join('\n')}`));
    });
  });
}

function exitCode(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

test('as a non-root user it serves the iPXE binaries over TFTP to curl, and SIGTERM exits 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-cli-'));
  chmodSync(dir, 0o777);
  // An empty TFTP root of its own: the files come from the system package whatever `fetch ipxe`
  // (a README step) put into the repository's tftpboot/.
  const tftpRoot = join(dir, 'tftpboot');
  mkdirSync(tftpRoot, { mode: 0o755 });
  const { child, ports, lines } = await startAppliance(
    ['--dhcp-mode', 'off', '--tftp-port', '16969', '--http-port', '0', '--address', '127.0.0.1', '--db', join(dir, 'db.json'), '--tftp-root', tftpRoot],
    'nobody',
  );
  t.teardown(() => child.kill('SIGKILL'));
  t.is(ports.tftp, 16969);
  t.true(ports.http! > 0);
  for (const name of ['undionly.kpxe', 'snponly.efi', 'ipxe.efi']) {
    const r = spawnSync('curl', ['-sS', '--fail', '--max-time', '20', `tftp://127.0.0.1:${ports.tftp}/${name}`], { maxBuffer: 16 << 20, timeout: 30_000 });
    t.is(r.status, 0, `curl ${name}: ${r.stderr}`);
    t.is(sha256(r.stdout), sha256(readFileSync(join('/usr/lib/ipxe', name))), name);
  }
  const script = spawnSync('curl', ['-sS', '--fail', '--max-time', '10', `http://127.0.0.1:${ports.http}/boot.ipxe`], { encoding: 'utf8', timeout: 15_000 });
  t.is(script.status, 0, script.stderr);
  t.true(script.stdout.startsWith('#!ipxe'));
  // The start-up log names, per firmware, which file is served and from where.
  t.true(lines.some((l) => l.includes('"msg":"boot file"') && l.includes('undionly.kpxe') && l.includes('/usr/lib/ipxe')));
  const exited = exitCode(child);
  child.kill('SIGTERM');
  t.is(await exited, 0);
});

test('a port that cannot be bound fails start with exit 1 and a message with the fix', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-cli-'));
  chmodSync(dir, 0o777);
  // As nobody, port 69 needs cap_net_bind_service.
  const r = spawnSync(
    'setpriv',
    [
      '--reuid=nobody',
      '--regid=nogroup',
      '--clear-groups',
      '--',
      process.execPath,
      bin,
      '--dhcp-mode',
      'off',
      '--tftp-port',
      '69',
      '--http-port',
      '0',
      '--address',
      '127.0.0.1',
      '--db',
      join(dir, 'db.json'),
    ],
    {
      cwd: root,
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  t.is(r.status, 1, r.stdout + r.stderr);
  t.regex(r.stdout + r.stderr, /tftp.*:69\b.*cap_net_bind_service/i);
});

test('fetch ipxe copies the system iPXE binaries into --tftp-root, byte for byte', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-fetch-'));
  const r = run(['fetch', 'ipxe', '--no-download', '--tftp-root', dir]);
  t.is(r.status, 0, r.stderr);
  const results = JSON.parse(r.stdout) as Array<{ name: string; source: string }>;
  for (const name of ['undionly.kpxe', 'snponly.efi', 'ipxe.efi']) {
    t.is(results.find((x) => x.name === name)?.source, 'system', name);
    t.is(sha256(readFileSync(join(dir, name))), sha256(readFileSync(join('/usr/lib/ipxe', name))), name);
  }
});

test('fetch with an unknown target exits 2', (t) => {
  const r = run(['fetch', 'windows']);
  t.is(r.status, 2);
  t.regex(r.stderr, /fetch ipxe/);
});
