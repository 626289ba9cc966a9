/**
 * The real entry point, as a user runs it: `node bin/appliance ...` (built by `npm test`'s tsc
 * step into dist/). Exit codes, messages, and a non-root start that serves iPXE to curl.
 */
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
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
  for (const flag of ['--address', '--interface', '--http-port', '--tftp-port', '--dhcp-port', '--proxy-port', '--dhcp-mode', '--tftp-root', '--assets', '--templates', '--db', '--log-level', '--api-token']) {
    t.true(r.stdout.includes(flag), flag);
  }
});

const invalid: Array<[string, string[], NodeJS.ProcessEnv, RegExp]> = [
  ['bad port flag', ['--http-port', 'abc'], {}, /--http-port: "abc" is not a port/],
  ['unknown flag', ['--htp-port', '1'], {}, /unknown option '--htp-port'/],
  ['bad env', ['--address', '127.0.0.1'], { APPLIANCE_TFTP_PORT: 'x' }, /APPLIANCE_TFTP_PORT: "x" is not a port/],
  ['missing directory', ['--address', '127.0.0.1', '--tftp-root', '/nonexistent/tftpboot'], {}, /--tftp-root: directory \/nonexistent\/tftpboot does not exist/],
  ['unknown command', ['serve'], {}, /unknown command "serve"/],
];
for (const [name, args, env, message] of invalid) {
  test(`invalid configuration exits 2 with one clear message: ${name}`, (t) => {
    const r = run(args, env);
    t.is(r.status, 2, r.stdout + r.stderr);
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1, 'one line');
    t.is(r.stdout, '', 'nothing started, nothing logged');
  });
}

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
  const { child, ports, lines } = await startAppliance(
    ['--dhcp-mode', 'off', '--tftp-port', '16969', '--http-port', '0', '--address', '127.0.0.1', '--db', join(dir, 'db.json')],
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
  const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', process.execPath, bin, '--dhcp-mode', 'off', '--tftp-port', '69', '--http-port', '0', '--address', '127.0.0.1', '--db', join(dir, 'db.json')], {
    cwd: root,
    encoding: 'utf8',
    timeout: 30_000,
  });
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
