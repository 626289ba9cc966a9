/**
 * contrib/systemd/: the units scripts/install-systemd renders for this checkout pass
 * `systemd-analyze verify`, and the socket unit hands the DHCP ports over in the order the
 * service's --dhcp-fd/--proxy-fd expect.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { APPLIANCE_NODE_FLAGS } from '../../src/lab/appliance.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const UNITS = ['netboot-appliance.service', 'netboot-appliance-iface.socket', 'netboot-appliance-iface.service'];

function install(args: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-units-'));
  const r = spawnSync(join(ROOT, 'scripts', 'install-systemd'), ['--unit-dir', dir, '--no-user', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`install-systemd failed: ${r.stderr}`);
  return dir;
}

function verify(dir: string, units: string[]) {
  // A missing systemd-analyze is a failure (scripts/install installs systemd), not a skip.
  return spawnSync('systemd-analyze', ['verify', ...units.map((u) => join(dir, u))], { encoding: 'utf8', env: { ...process.env, SYSTEMD_LOG_COLOR: '0' } });
}

test('the rendered units pass systemd-analyze verify', (t) => {
  const dir = install(['--interface', 'lo']);
  const r = verify(dir, UNITS);
  t.is(r.error, undefined, 'systemd-analyze must be installed (scripts/install)');
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr.trim(), '');
});

test('bin/appliance run as a program, and both units, start node with the flags the benches use', (t) => {
  t.true(APPLIANCE_NODE_FLAGS.length > 0);
  const shebang = readFileSync(join(ROOT, 'bin', 'appliance'), 'utf8').split('\n')[0];
  t.is(shebang, `#!/usr/bin/env -S node ${APPLIANCE_NODE_FLAGS.join(' ')}`);
  const dir = install(['--interface', 'br7']);
  for (const unit of ['netboot-appliance.service', 'netboot-appliance-iface.service'])
    t.regex(readFileSync(join(dir, unit), 'utf8'), new RegExp(`^ExecStart=\\S+ ${APPLIANCE_NODE_FLAGS.join(' ')} \\S+/bin/appliance `, 'm'), unit);
  // The #! line works (env -S splits it), and node takes the flags.
  const r = spawnSync(join(ROOT, 'bin', 'appliance'), ['--help'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^usage: /);
});

test('systemd-analyze verify does fail a broken unit (the check can fail)', (t) => {
  const dir = install([]);
  const file = join(dir, 'netboot-appliance.service');
  writeFileSync(file, readFileSync(file, 'utf8').replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node'));
  const r = verify(dir, ['netboot-appliance.service']);
  t.not(r.status, 0);
  t.regex(r.stderr, /nonexistent/);
});

test('the socket unit binds 67 then 4011 to the interface; the service reads them as fd 3 and 4', (t) => {
  const dir = install(['--interface', 'br7']);
  const socket = readFileSync(join(dir, 'netboot-appliance-iface.socket'), 'utf8');
  const service = readFileSync(join(dir, 'netboot-appliance-iface.service'), 'utf8');
  t.deepEqual(
    [...socket.matchAll(/^ListenDatagram=(.*)$/gm)].map((m) => m[1]),
    ['0.0.0.0:67', '0.0.0.0:4011'],
  );
  t.regex(socket, /^BindToDevice=br7$/m);
  t.regex(
    service,
    new RegExp(
      `^ExecStart=\\S+ ${APPLIANCE_NODE_FLAGS.join(' ')} ${ROOT.replace(/[/.]/g, '\\$&')}/bin/appliance serve --interface br7 --dhcp-fd 3 --proxy-fd 4 `,
      'm',
    ),
  );
  for (const unit of [service, readFileSync(join(dir, 'netboot-appliance.service'), 'utf8')]) {
    t.regex(unit, /^Restart=on-failure$/m);
    t.regex(unit, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
    t.regex(unit, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
    t.regex(unit, /^ProtectSystem=strict$/m);
    // node (V8) calls pkey_alloc at start; @system-service alone kills it with SIGSYS (live test: test/e2e/systemd.test.ts).
    t.regex(unit, /^SystemCallFilter=.*\bpkey_alloc\b/m);
    t.regex(unit, /^SystemCallErrorNumber=EPERM$/m);
    t.regex(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    t.notRegex(unit, /^User=root$/m);
  }
  const bad = spawnSync(join(ROOT, 'scripts', 'install-systemd'), ['--unit-dir', dir, '--no-user', '--interface', 'br0; rm -rf /'], { encoding: 'utf8' });
  t.is(bad.status, 2);
});
