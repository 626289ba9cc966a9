/**
 * `lab` as one entry of the command table: its help is generated from LAB_COMMAND (every
 * firmware of the one FIRMWARE_HELP list shown), unknown flags get "did you mean", bad values
 * exit 2 with one line before anything is built, and planLab turns flags into the VMs and the
 * appliance arguments. No VM starts here (test/e2e/lab-command.test.ts boots them).
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { join, resolve } from 'node:path';
import { parseCommandArgs } from '../../src/commands/command.js';
import { LAB_COMMAND, LAB_EXIT, LAB_USAGE } from '../../src/lab/command.js';
import { planLab } from '../../src/lab/plan.js';
import { FIRMWARE_HELP, FIRMWARES } from '../../src/lab/qemu.js';
import { runLab } from './run-command.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = runLab(argv, { cwd: '/srv/lab', env: {} });
  const code = await r.done;
  if (r.signals.listenerCount('SIGINT') + r.signals.listenerCount('SIGTERM') !== 0) throw new Error('signal handlers left behind');
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}

function plan(argv: string[]) {
  const args = parseCommandArgs(
    LAB_COMMAND,
    'lab',
    argv,
    { argv, env: {}, stdout: process.stdout, stderr: process.stderr, cwd: '/srv/lab' },
    new EventEmitter(),
  );
  if (args === 'help') throw new Error('help');
  return planLab(args.flags, '/srv/lab');
}

test('lab --help is generated from the command table and lists every firmware of the one list', async (t) => {
  const r = await run(['--help']);
  t.is(r.code, LAB_EXIT.ok);
  t.is(r.stdout, `${LAB_USAGE}\n`);
  t.regex(LAB_USAGE, /^usage: node bin\/appliance lab \[options\]$/m);
  for (const f of FIRMWARES) {
    const line = LAB_USAGE.split('\n').find((l) => l.startsWith(`${' '.repeat(36)}${f} `));
    t.truthy(line, `no line for firmware ${f}`);
    t.true(line!.endsWith(FIRMWARE_HELP[f]) || FIRMWARE_HELP[f].startsWith(line!.slice(line!.indexOf(f) + f.length).trim()), line);
  }
  for (const flag of LAB_COMMAND.flags!) t.true(LAB_USAGE.includes(`--${flag.name}`), flag.name);
  t.regex(LAB_USAGE, /^ {2}-h, --help/m);
  t.regex(LAB_USAGE, /^exit codes: 0 every VM powered off/m);
  for (const line of LAB_USAGE.split('\n')) {
    if (!line.startsWith('  ip netns exec')) t.true(line.length <= 100, `help line longer than 100 columns: ${line}`);
  }
  // The CLI prints the same text (the lab is an ordinary table entry, not a pass-through).
  const cli = spawnSync(process.execPath, [join(ROOT, 'bin', 'appliance'), 'lab', '-h'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  t.is(cli.status, 0, cli.stderr);
  t.is(cli.stdout, `${LAB_USAGE}\n`);
});

const bad: Array<[string[], RegExp]> = [
  [['--firmware', 'arm'], /--firmware must be one of bios, uefi, uefi-http, uefi-secureboot, arm64, uefi-ipv6, not "arm"/],
  [['--mac', 'nope'], /--mac "nope" is not a MAC address/],
  [['--vms', '99'], /--vms must be a whole number from 0 to 16/],
  [['--memory', '64'], /--memory must be a whole number from 128 to 16384, not "64"/],
  [['--mac', '52:54:00:00:00:01', '--mac', '52:54:00:00:00:01'], /--mac values must differ/],
  [['--vms', '1', '--uuid', '8f9a2b3c-1d2e-4f50-8a6b-7c8d9e0f1a2b', '--uuid', '8f9a2b3c-1d2e-4f50-8a6b-7c8d9e0f1a2c'], /2 --mac\/--uuid values for --vms 1/],
  [['--test-os', '--db', 'x.json'], /--test-os uses a private database/],
  [['--attach', 'eth0;rm'], /--attach "eth0;rm" is not an interface name/],
  [['--bogus'], /^appliance: lab: unknown option --bogus \(see lab --help\)$/],
  [['--vsm', '2'], /^appliance: lab: unknown option --vsm; did you mean --vms\? \(see lab --help\)$/],
  [['--firmwre', 'uefi'], /did you mean --firmware\?/],
  [['--dhcp-mode', 'server'], /^appliance: lab: --dhcp-mode does not apply to lab \(see lab --help\)$/],
  [['--quiet=yes'], /--quiet takes no value/],
  [['--vms'], /--vms needs a value \(N\)/],
  [['extra'], /lab: unexpected argument "extra" \(it takes none\)/],
];
for (const [argv, why] of bad) {
  test(`lab ${argv.join(' ')}: exit 2 with one line, nothing started`, async (t) => {
    const r = await run(argv);
    t.is(r.code, LAB_EXIT.usage);
    t.regex(r.stderr.trimEnd(), why);
    t.is(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    t.is(r.stdout, '');
  });
}

test('planLab: firmware repeats cyclically, MACs are lowercased, appliance paths made absolute, no upstream DHCP means server mode', (t) => {
  const p = plan(['--vms', '3', '--firmware', 'bios', '--firmware', 'uefi', '--mac', '52:54:00:AA:00:01', '--db', 'db.json', '--no-upstream-dhcp']);
  t.deepEqual(p.vms, [
    { name: 'vm0-bios', firmware: 'bios', mac: '52:54:00:aa:00:01' },
    { name: 'vm1-uefi', firmware: 'uefi' },
    { name: 'vm2-bios', firmware: 'bios' },
  ]);
  t.deepEqual(p.applianceArgs, ['--db', '/srv/lab/db.json', '--dhcp-mode', 'server']);
  t.false(p.upstreamDhcp);
  t.like(plan([]), { vms: [{ name: 'vm0-bios', firmware: 'bios' }], memoryMiB: 512, timeoutMs: 3_600_000, httpPort: 8080, ipv6Router: true, keep: false });
  t.is(plan(['--uuid', '8f9a2b3c-1d2e-4f50-8a6b-7c8d9e0f1a2b', '--uuid', '8f9a2b3c-1d2e-4f50-8a6b-7c8d9e0f1a2c']).vms.length, 2, 'as many VMs as UUIDs');
  t.is(plan(['--serial-log', 'logs']).serialLogDir, '/srv/lab/logs');
  for (const f of FIRMWARES) t.is(plan(['--firmware', f]).vms[0]!.firmware, f);
});
