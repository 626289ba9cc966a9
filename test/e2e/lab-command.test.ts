/**
 * `node bin/appliance lab` (runLabCommand, run in-process with captured streams and a private
 * signal emitter): a BIOS VM boots the test OS through the real appliance and the command
 * exits 0 once it powered off; signals tear the lab down; nothing is left behind. Its flags,
 * help and usage errors (no VM needed) are test/lab/command.test.ts.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertApplianceBuilt } from '../../src/lab/appliance.js';
import { LAB_EXIT } from '../../src/lab/command.js';
import { MARKERS } from '../../src/lab/initrd.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import { runLab } from '../lab/run-command.js';

test.before(() => {
  // Missing packages or an unbuilt dist/ fail loudly, never skip.
  assertLabPrerequisites('bios');
  assertApplianceBuilt();
});

const run = (argv: string[]) => runLab(argv);

async function waitForText(get: () => string, re: RegExp, ms: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = re.exec(get());
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`no ${re} within ${ms} ms in:\n${get().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}

/** PIDs of running (not zombie) processes whose command line mentions `needle`. */
function processesWith(needle: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (cmd.includes(needle) && !/^\d+ \(.*\) [ZX] /.test(stat)) pids.push(Number(d));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}

function labId(stderr: string): string {
  const id = /in netns lab-([0-9a-f]+)/.exec(stderr)?.[1];
  if (!id) throw new Error(`the command did not name its lab:\n${stderr}`);
  return id;
}

test('one BIOS VM boots the test OS through the appliance, which is the only DHCP server with --no-upstream-dhcp; exit 0 after it powers off; nothing left behind', async (t) => {
  t.timeout(240_000);
  const logDir = mkdtempSync(join(tmpdir(), 'lab-command-logs-'));
  t.teardown(() => rmSync(logDir, { recursive: true, force: true }));
  const mac = '52:54:00:1a:bc:01';
  const r = run([
    '--test-os',
    '--no-upstream-dhcp',
    '--firmware',
    'bios',
    '--vms',
    '1',
    '--mac',
    mac,
    '--memory',
    '384',
    '--timeout',
    '200',
    '--serial-log',
    logDir,
  ]);
  const code = await r.done;
  t.log(r.stderr());
  t.is(code, LAB_EXIT.ok);
  // The console was shown live, prefixed with the VM's name, control sequences stripped.
  const out = r.stdout();
  for (const m of [MARKERS.initStarted, MARKERS.cloudConfigFetched, MARKERS.factsPosted, MARKERS.done]) {
    t.true(out.includes(`[vm0-bios] ${m}`), `stdout lacks [vm0-bios] ${m}`);
  }
  t.notRegex(out, /\x1b/);
  t.regex(out, new RegExp(`\\[vm0-bios\\] kernel \\S+ cmdline: .*cloud-config\\?mac=${mac}`));
  t.regex(r.stderr(), /vm0-bios started: bios, mac 52:54:00:1a:bc:01/);
  t.regex(r.stderr(), /vm0-bios powered off/);
  // Serial and appliance logs were written to --serial-log.
  t.true(readFileSync(join(logDir, 'vm0-bios.serial.log'), 'utf8').includes(MARKERS.cloudConfigFetched));
  const applianceLog = readFileSync(join(logDir, 'appliance.log'), 'utf8');
  t.regex(applianceLog, new RegExp(`"mac":"${mac}".*"msg":"sent cloud-config"`));
  // No upstream DHCP server: the appliance leased the address itself.
  t.regex(applianceLog, /"msg":"dhcp server listening"/);
  t.notRegex(r.stderr(), /plain DHCP from/);
  // Torn down: both namespaces and every process of the lab are gone.
  const id = labId(r.stderr());
  t.false(namespaces().includes(`lab-${id}`));
  t.false(namespaces().includes(`upstream-${id}`));
  t.deepEqual(processesWith(mac), [], 'qemu is still running');
  t.deepEqual(processesWith(`netboot-lab-${id}`), [], 'a lab process is still running');
  t.regex(r.stderr(), new RegExp(`lab lab-${id} removed`));
});

test('SIGINT while a VM boots: everything is torn down and the exit code says interrupted', async (t) => {
  t.timeout(120_000);
  const mac = '52:54:00:1a:bc:02';
  const r = run(['--test-os', '--vms', '1', '--mac', mac, '--quiet']);
  await waitForText(r.stderr, /vm0-bios started/, 60_000);
  const id = labId(r.stderr());
  t.true(namespaces().includes(`lab-${id}`));
  t.true(processesWith(mac).length > 0, 'qemu should be running');
  r.signals.emit('SIGINT', 'SIGINT');
  t.is(await r.done, LAB_EXIT.interrupted);
  t.is(r.stdout(), '', '--quiet shows no console');
  // QEMU exits 0 on SIGTERM as on a poweroff; the command tells them apart.
  t.regex(r.stderr(), /vm0-bios stopped \(killed by the lab\)/);
  t.notRegex(r.stderr(), /powered off/);
  t.false(namespaces().includes(`lab-${id}`));
  t.false(namespaces().includes(`upstream-${id}`));
  t.deepEqual(processesWith(mac), []);
  t.deepEqual(processesWith(`netboot-lab-${id}`), []);
  // The handlers were removed: the emitter holds no listener of ours.
  t.is(r.signals.listenerCount('SIGINT') + r.signals.listenerCount('SIGTERM'), 0);
});

test('--vms 0 runs the lab until SIGTERM, then exits 0', async (t) => {
  t.timeout(60_000);
  const r = run(['--test-os', '--vms', '0']);
  await waitForText(r.stderr, /lab running; Ctrl-C or SIGTERM stops it/, 45_000);
  const id = labId(r.stderr());
  const workDir = /\(log (\/\S+)\/appliance\.stdout\.log\)/.exec(r.stderr())?.[1];
  t.truthy(workDir);
  r.signals.emit('SIGTERM', 'SIGTERM');
  t.is(await r.done, LAB_EXIT.ok);
  t.false(namespaces().includes(`lab-${id}`));
  t.false(existsSync(workDir ?? '/nonexistent-lab-dir'), 'the work directory was not removed');
  t.deepEqual(processesWith(`netboot-lab-${id}`), []);
});

test('a VM still running at --timeout is killed and the command exits 1', async (t) => {
  t.timeout(90_000);
  const mac = '52:54:00:1a:bc:03';
  // Without an IPv6 router iPXE alone waits ~16 s for a Router Advertisement: no test OS
  // can power off within 10 s.
  const r = run(['--test-os', '--vms', '1', '--mac', mac, '--timeout', '10', '--no-ipv6-router', '--quiet']);
  t.is(await r.done, LAB_EXIT.failure);
  t.regex(r.stderr(), /vm0-bios stopped \(still running after --timeout 10 s\)/);
  t.notRegex(r.stderr(), /powered off/);
  const id = labId(r.stderr());
  t.false(namespaces().includes(`lab-${id}`));
  t.deepEqual(processesWith(mac), []);
});
