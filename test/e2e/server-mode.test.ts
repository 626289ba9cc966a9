/**
 * Issue 6, end to end: the appliance as the ONLY DHCP server of an isolated lab, and the choice
 * `--dhcp-mode auto` makes on a segment with and without another server.
 *
 * 1. A lab with no upstream DHCP server; the real appliance (`node bin/appliance`, built
 *    dist/) started with `--dhcp-mode auto` on the real ports 67/4011/69/8080 inside the lab
 *    namespace, a lease file in a temp dir and an explicit `--dhcp-range`. Its probe finds
 *    nobody, so it serves addresses itself. A SeaBIOS (iPXE ROM) VM and an OVMF (EDK2's own
 *    PXE) VM boot side by side: each gets an address in the range from the appliance, boots
 *    the test kernel+initrd through its TFTP/HTTP, prints the cloud-config and powers off.
 * 2. A lab WITH the plain upstream dnsmasq: `--dhcp-mode auto` chooses proxy and names it.
 * 3. Same kind of lab: `--dhcp-mode server` refuses to start (exit 1, names the other server
 *    and `--force`); with `--force` it starts, warning about that server.
 *
 * Every namespace, QEMU and appliance process is made here and removed in teardown; a missing
 * prerequisite (qemu, OVMF, iPXE, kernel, root, an unbuilt dist/) fails, never skips.
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  applianceLabArgs,
  assertApplianceBuilt,
  cleanApplianceEnv,
  startTestOsAppliance,
  testOsHomeArgs,
  writeTestOsHome,
  type LabAppliance,
} from '../../src/lab/appliance.js';
import { DEFAULT_CLOUD_CONFIG, type BootAssets } from '../../src/lab/baseline.js';
import { buildTestInitrd, MARKERS } from '../../src/lab/initrd.js';
import { cloudConfigBody } from './lab-suite.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import type { ManagedProcess, ProcessExit } from '../../src/lab/process.js';
import { startVm, type Firmware, type Vm } from '../../src/lab/qemu.js';
import { bootPhases } from '../../src/lab/scenario.js';
import type { BootEvent } from '../../src/events.js';
import { loadLeaseFileSync } from '../../src/dhcp/lease-file.js';
import type { Lease } from '../../src/dhcp/leases.js';

// Fixed MACs so a failure names a machine one can grep for in the appliance log.
const BIOS_MAC = '52:54:00:6a:01:01';
const UEFI_MAC = '52:54:00:6a:02:01';

// Without an IPv6 router iPXE waits ~16 s for a Router Advertisement (src/lab/README.md); the
// lab has no upstream server here, so no RA: the budget includes that wait.
const BOOT_TIMEOUT_MS = 180_000;
// The auto probe listens 5 s (probe.ts DEFAULT_PROBE_TIMEOUT_MS) after node has started.
const DHCP_READY_TIMEOUT_MS = 30_000;
const PROCESS_EXIT_TIMEOUT_MS = 40_000;

/** One pino JSON line of the appliance's stdout. */
interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

function readLogLines(path: string): LogLine[] {
  if (!existsSync(path)) return [];
  const lines: LogLine[] = [];
  for (const text of readFileSync(path, 'utf8').split('\n')) {
    if (!text.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      // A line still being written; the next poll reads it whole.
    }
  }
  return lines;
}

/**
 * Poll the appliance's log until a line satisfies `match`; reject with the log tail when the
 * process exits first or `timeoutMs` passes.
 */
async function waitForLogLine(path: string, match: (l: LogLine) => boolean, timeoutMs: number, proc?: ManagedProcess): Promise<LogLine> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = readLogLines(path).find(match);
    if (found) return found;
    const tail = () => (existsSync(path) ? readFileSync(path, 'utf8').slice(-3000) : '(no log)');
    if (proc?.exitStatus()) throw new Error(`the appliance exited (${JSON.stringify(proc.exitStatus())}) before the awaited log line:\n${tail()}`);
    if (Date.now() > deadline) throw new Error(`the awaited log line did not appear within ${timeoutMs} ms:\n${tail()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function ipNumber(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

function inRange(ip: string | undefined, range: { start: string; end: string }): boolean {
  if (ip === undefined || !/^\d+\.\d+\.\d+\.\d+$/.test(ip)) return false;
  return ipNumber(ip) >= ipNumber(range.start) && ipNumber(ip) <= ipNumber(range.end);
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The leases in the server's journal (src/dhcp/lease-file.ts reads its format). */
function readLeaseFile(path: string): Lease[] {
  return loadLeaseFileSync(path).leases;
}

/** The first three octets of the lab's /24: `10.99.X.1` -> `10.99.X`. */
function subnetBase(lab: Lab): string {
  return lab.serverAddress.split('.').slice(0, 3).join('.');
}

// ---------------------------------------------------------------------------------------------
// Shared state: the isolated lab (no upstream DHCP) and the appliance serving addresses in it.

let assets: BootAssets | undefined;
let isolated: Lab | undefined;
let appliance: (LabAppliance & { home: { dir: string } }) | undefined;
let range: { start: string; end: string } | undefined;
let leaseDir: string | undefined;
let leaseFile: string | undefined;
const labs: Lab[] = [];
const vms: Vm[] = [];
const spawned: ManagedProcess[] = [];

test.before(async () => {
  // Missing qemu/OVMF/iPXE/kernel/root or an unbuilt dist/ fails every test, loudly.
  assertLabPrerequisites('both');
  assertApplianceBuilt();
  const initrd = buildTestInitrd();
  assets = { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG };
  isolated = await createLab({ upstreamDhcp: false, keepWorkDir: process.env['NETBOOT_LAB_KEEP'] === '1' });
  labs.push(isolated);
  // A small range well away from the server's .1 and from the default (upper half): proves
  // --dhcp-range is what the server leases from.
  const base = subnetBase(isolated);
  range = { start: `${base}.60`, end: `${base}.69` };
  leaseDir = mkdtempSync(join(tmpdir(), 'netboot-server-mode-'));
  leaseFile = join(leaseDir, 'leases.json');
  appliance = await startTestOsAppliance(isolated, assets, {
    name: 'appliance-server',
    // Later flags win (node:util parseArgs): this overrides the lab's default --dhcp-mode proxy.
    args: ['--dhcp-mode', 'auto', '--dhcp-range', `${range.start}-${range.end}`, '--lease-file', leaseFile, '--lease-time', '600'],
  });
  // /healthz answers before the DHCP side exists (HTTP starts first, then the 5 s probe): wait
  // for the DHCP server itself, so the VMs' first DISCOVER is answered.
  await waitForLogLine(
    stdoutLog(appliance),
    (l) => l.msg === 'dhcp server listening' || l.msg === 'proxydhcp listening',
    DHCP_READY_TIMEOUT_MS,
    processOf(appliance),
  );
});

test.after.always(async () => {
  await Promise.all(vms.map((v) => v.kill()));
  await Promise.all(spawned.map((p) => p.stop(2000)));
  await appliance?.stop();
  await Promise.all(labs.map((l) => l.destroy()));
  if (leaseDir) rmSync(leaseDir, { recursive: true, force: true });
});

function ready() {
  if (!isolated || !appliance || !range || !leaseFile || !assets) throw new Error('the isolated lab or the appliance did not start (see test.before)');
  return { lab: isolated, appliance, range, leaseFile, assets };
}

/**
 * The appliance's process: startProcessBootServer() returns it, but LabAppliance does not
 * declare it; read it when present so a wait ends as soon as the appliance exits.
 */
function processOf(a: LabAppliance): ManagedProcess | undefined {
  return 'process' in a ? (a.process as ManagedProcess) : undefined;
}

function stdoutLog(a: LabAppliance): string {
  const p = a.logPaths?.['stdout'];
  if (!p) throw new Error(`${a.name} has no stdout log`);
  return p;
}

interface BootResult {
  vm: Vm;
  serial: string;
  /** The address udhcpc in the test OS bound, and from which server. */
  boundIp: string;
  boundFrom: string;
}

const boots = new Map<Firmware, Promise<BootResult>>();

/** Boot one VM (once per firmware; the tests of that firmware share it) to power-off. */
function bootVm(t: ExecutionContext, firmware: Firmware): Promise<BootResult> {
  let p = boots.get(firmware);
  if (!p) {
    p = (async () => {
      const vm = await startVm(ready().lab, { firmware, mac: firmware === 'bios' ? BIOS_MAC : UEFI_MAC, timeoutMs: BOOT_TIMEOUT_MS + 30_000 });
      vms.push(vm);
      const fetched = await vm.waitFor(new RegExp(escape(MARKERS.cloudConfigFetched)), BOOT_TIMEOUT_MS);
      await vm.waitFor(new RegExp(escape(MARKERS.done)), 30_000);
      const exit = await Promise.race([vm.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000).unref())]);
      if (exit?.code !== 0) throw new Error(`${vm.name} did not power off cleanly: ${JSON.stringify(exit)}`);
      const phases = Object.entries(bootPhases(vm))
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(', ');
      t.log(`${firmware} ${vm.mac}: VM start to cloud-config fetched ${(fetched.elapsedMs / 1000).toFixed(1)} s (${phases})`);
      const serial = vm.serial();
      const bound = new RegExp(`${escape(MARKERS.dhcpBound)} (\\S+) from (\\S+) ===`).exec(serial);
      if (!bound) throw new Error(`${vm.name}: the test OS printed no DHCP BOUND line`);
      return { vm, serial, boundIp: bound[1]!, boundFrom: bound[2]! };
    })();
    boots.set(firmware, p);
  }
  return p;
}

function ofType(events: readonly BootEvent[], type: BootEvent['type']): BootEvent[] {
  return events.filter((e) => e.type === type);
}

/** What both firmwares must show: address from the appliance in the range, lease on disk, OS booted. */
async function assertServedByAppliance(t: ExecutionContext, firmware: Firmware, mac: string): Promise<BootResult> {
  const { lab, appliance, range, leaseFile } = ready();
  const result = await bootVm(t, firmware);
  const { serial, boundIp, boundFrom } = result;

  // The test OS's udhcpc got its address from the appliance, inside --dhcp-range.
  t.is(boundFrom, lab.serverAddress, 'the address did not come from the appliance');
  t.true(inRange(boundIp, range), `${boundIp} is not in ${range.start}-${range.end}`);
  // It fetched and printed the cloud-config the appliance serves, then powered off.
  t.is(cloudConfigBody(serial), DEFAULT_CLOUD_CONFIG.trim());
  t.true(serial.includes(`netboot-appliance: booting lab-test-os on ${mac}`), 'the profile script did not run');
  t.true(serial.includes(MARKERS.done));

  // Events: the server mode (detail.server 'dhcp') offered and ACKed addresses in the range to
  // this MAC, among them the one the OS bound.
  const events = await appliance.events(mac);
  t.log(`${firmware} events: ${events.map((e) => `${e.type}${e.ip ? `(${e.ip})` : ''}`).join(' ')}`);
  const acks = ofType(events, 'dhcp-ack').filter((e) => e.detail?.['server'] === 'dhcp');
  t.true(acks.length > 0, 'no dhcp-ack from the server mode');
  for (const a of acks) t.true(inRange(a.ip, range), `dhcp-ack ip ${a.ip} is outside the range`);
  t.true(
    acks.some((a) => a.ip === boundIp),
    `no dhcp-ack for ${boundIp}`,
  );
  t.true(
    ofType(events, 'dhcp-offer').some((e) => e.detail?.['server'] === 'dhcp' && inRange(e.ip, range)),
    'no dhcp-offer in the range',
  );
  t.true(ofType(events, 'http-cloud-config').length > 0, 'the cloud-config was not fetched from the appliance');
  t.deepEqual(
    ofType(events, 'http-asset')
      .map((e) => e.detail?.['file'])
      .sort(),
    ['/assets/initrd.img', '/assets/vmlinuz'],
  );

  // The lease file (written before each ACK, RFC 2131 4.3.2) holds a bound lease for the MAC.
  const leases = readLeaseFile(leaseFile).filter((l) => l.mac === mac);
  t.true(
    leases.some((l) => l.ip === boundIp && l.state === 'bound'),
    `no bound lease for ${mac} at ${boundIp} in the lease file: ${JSON.stringify(leases)}`,
  );
  for (const l of leases) t.true(inRange(l.ip, range), `lease ${l.ip} outside the range`);
  return result;
}

test('auto mode with no other DHCP server on the segment chooses server mode and says why', (t) => {
  const { appliance, range } = ready();
  const lines = readLogLines(stdoutLog(appliance));
  t.like(
    lines.find((l) => l.msg === 'starting netboot appliance'),
    { dhcpMode: 'auto' },
  );
  const probe = lines.find((l) => l.msg === 'probing for another dhcp server');
  t.truthy(probe, 'the appliance did not probe');
  const chose = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('dhcp mode auto chose'));
  t.truthy(chose, 'no auto-mode decision in the log');
  t.is(chose?.['mode'], 'server');
  t.deepEqual(chose?.['servers'], []);
  t.regex(chose?.msg ?? '', /^dhcp mode auto chose server: no dhcp server answered within \d+ ms/);
  const listening = lines.find((l) => l.msg === 'dhcp server listening');
  t.like(listening, { mode: 'server', range: `${range.start}-${range.end}`, dhcpPort: 67, proxyPort: 4011, interface: 'br0' });
  // Only one decision: no proxy was started as well.
  t.false(lines.some((l) => l.msg === 'proxydhcp listening'));
});

test('SeaBIOS + iPXE ROM gets its address from the appliance as the only DHCP server and boots the test OS', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 90_000);
  const { appliance, range } = ready();
  const { serial } = await assertServedByAppliance(t, 'bios', BIOS_MAC);
  // The ROM is iPXE from its first packet: the OFFER/ACK carried the boot.ipxe URL directly.
  t.true(serial.includes(`${appliance.baseUrl}/boot.ipxe`), 'iPXE never got our boot.ipxe URL');
  // iPXE's own DHCP and the test OS's udhcpc were both ACKed by the server mode.
  const ipxeAcks = ofType(await appliance.events(BIOS_MAC), 'dhcp-ack').filter((e) => e.detail?.['server'] === 'dhcp' && inRange(e.ip, range));
  t.true(ipxeAcks.length >= 2, 'expected an ACK for iPXE and one for the test OS');
});

test('OVMF with EDK2 PXE gets its address and snponly.efi from the appliance as the only DHCP server and boots the test OS', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 90_000);
  const { appliance } = ready();
  const { serial } = await assertServedByAppliance(t, 'uefi', UEFI_MAC);
  let from = 0;
  for (const needle of ['Start PXE over IPv4', 'NBP file downloaded successfully', 'iPXE', MARKERS.initStarted, MARKERS.cloudConfigFetched, MARKERS.done]) {
    const at = serial.indexOf(needle, from);
    t.true(at >= 0, `serial console lacks ${needle} after offset ${from}`);
    if (at >= 0) from = at + needle.length;
  }
  const events = await appliance.events(UEFI_MAC);
  // A full server hands EDK2 the NBP in its own OFFER (no 4011 round needed).
  t.true(
    ofType(events, 'dhcp-offer').some((e) => e.detail?.['server'] === 'dhcp' && e.detail['file'] === 'snponly.efi'),
    'no OFFER naming snponly.efi',
  );
  t.true(
    ofType(events, 'tftp-file').some((e) => e.detail?.['file'] === 'snponly.efi'),
    'snponly.efi was not served by our TFTP',
  );
});

test('the two VMs get different addresses', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 90_000);
  const { leaseFile } = ready();
  const [bios, uefi] = await Promise.all([bootVm(t, 'bios'), bootVm(t, 'uefi')]);
  t.not(bios.boundIp, uefi.boundIp);
  // No address is leased to both MACs, at any stage of either boot.
  const leases = readLeaseFile(leaseFile);
  const biosIps = new Set(leases.filter((l) => l.mac === BIOS_MAC).map((l) => l.ip));
  const uefiIps = new Set(leases.filter((l) => l.mac === UEFI_MAC).map((l) => l.ip));
  t.true(biosIps.size > 0 && uefiIps.size > 0);
  t.deepEqual(
    [...biosIps].filter((ip) => uefiIps.has(ip)),
    [],
  );
  // And no address appears twice in the file.
  const all = leases.map((l) => l.ip);
  t.is(new Set(all).size, all.length, `duplicate address in the lease file: ${all.join(' ')}`);
});

// ---------------------------------------------------------------------------------------------
// Beside another DHCP server: each test has its own lab with the upstream dnsmasq, so the two
// appliances' probes and ports never meet.

async function upstreamLab(): Promise<Lab> {
  const lab = await createLab({ upstreamDhcp: true, keepWorkDir: process.env['NETBOOT_LAB_KEEP'] === '1' });
  labs.push(lab);
  return lab;
}

test('auto mode beside the upstream dnsmasq chooses proxy and names the server it found', async (t) => {
  t.timeout(90_000);
  const { assets } = ready();
  const lab = await upstreamLab();
  const dir = mkdtempSync(join(tmpdir(), 'netboot-server-mode-auto-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const proxy = await startTestOsAppliance(lab, assets, {
    name: 'appliance-auto',
    args: ['--dhcp-mode', 'auto', '--lease-file', join(dir, 'leases.json')],
  });
  t.teardown(() => proxy.stop());
  const log = stdoutLog(proxy);
  const chose = await waitForLogLine(
    log,
    (l) => typeof l.msg === 'string' && l.msg.startsWith('dhcp mode auto chose'),
    DHCP_READY_TIMEOUT_MS,
    processOf(proxy),
  );
  t.is(chose['mode'], 'proxy', chose.msg);
  t.deepEqual(chose['servers'], [lab.upstreamAddress]);
  t.is(chose.msg, `dhcp mode auto chose proxy: dhcp server ${lab.upstreamAddress} answered the probe: answering pxe clients beside it`);
  // It then runs as the ProxyDHCP (not as a server), and keeps running.
  await waitForLogLine(log, (l) => l.msg === 'proxydhcp listening', 10_000, processOf(proxy));
  const lines = readLogLines(log);
  t.false(
    lines.some((l) => l.msg === 'dhcp server listening'),
    'a dhcp server was started beside dnsmasq',
  );
  t.is(processOf(proxy)?.exitStatus(), undefined);
  t.truthy(processOf(proxy), 'cannot see the appliance process');
  // The probe took no lease from dnsmasq: it never REQUESTs (probe.ts).
  const leases = existsSync(join(lab.workDir, 'upstream.leases')) ? readFileSync(join(lab.workDir, 'upstream.leases'), 'utf8').trim() : '';
  t.is(leases, '', 'the probe left a lease in dnsmasq');
  t.false(existsSync(join(dir, 'leases.json')), 'proxy mode wrote a lease file');
});

test('server mode beside the upstream dnsmasq refuses to start: exit 1, names the server and --force', async (t) => {
  t.timeout(90_000);
  const { assets } = ready();
  const lab = await upstreamLab();
  const home = writeTestOsHome(join(lab.workDir, 'refused-home'), assets);
  const leases = join(home.dir, 'leases.json');
  const stdoutPath = join(lab.workDir, 'appliance-refused.stdout.log');
  const stderrPath = join(lab.workDir, 'appliance-refused.stderr.log');
  const proc = lab.spawn(
    process.execPath,
    // Started by hand, not by startTestOsAppliance: that one waits for a readiness this start never reaches.
    applianceLabArgs(lab, {
      name: 'appliance-refused',
      args: ['--dhcp-mode', 'server', '--dhcp-range', `${subnetBase(lab)}.60-${subnetBase(lab)}.69`, '--lease-file', leases, ...testOsHomeArgs(home)],
    }),
    { stdoutPath, stderrPath, label: 'appliance-refused', env: cleanApplianceEnv() },
  );
  spawned.push(proc);
  const exit = await Promise.race([proc.exited, new Promise<ProcessExit | undefined>((r) => setTimeout(() => r(undefined), PROCESS_EXIT_TIMEOUT_MS).unref())]);
  const out = existsSync(stdoutPath) ? readFileSync(stdoutPath, 'utf8') : '';
  const err = existsSync(stderrPath) ? readFileSync(stderrPath, 'utf8') : '';
  t.deepEqual(exit, { code: 1, signal: null }, `the appliance did not exit 1 within ${PROCESS_EXIT_TIMEOUT_MS} ms:\n${out.slice(-2000)}${err.slice(-1000)}`);
  const fatal = readLogLines(stdoutPath).find((l) => l.level === 60);
  t.truthy(fatal, `no fatal log line:\n${out.slice(-2000)}`);
  t.is(fatal?.['code'], 'ERR_DHCP_OTHER_SERVER');
  t.true(fatal?.msg.includes(lab.upstreamAddress), fatal?.msg);
  t.true(fatal?.msg.includes('--force'), fatal?.msg);
  t.regex(fatal?.msg ?? '', /another dhcp server \(.*\) answers on br0/);
  // Nothing was served and no lease file was written.
  t.false(readLogLines(stdoutPath).some((l) => l.msg === 'dhcp server listening'));
  t.false(existsSync(leases), 'a refused server wrote a lease file');
});

test('server mode beside the upstream dnsmasq with --force starts anyway, with a warning naming the server', async (t) => {
  t.timeout(90_000);
  const { assets } = ready();
  const lab = await upstreamLab();
  const dir = mkdtempSync(join(tmpdir(), 'netboot-server-mode-force-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const forced = await startTestOsAppliance(lab, assets, {
    name: 'appliance-forced',
    args: ['--dhcp-mode', 'server', '--force', '--dhcp-range', `${subnetBase(lab)}.60-${subnetBase(lab)}.69`, '--lease-file', join(dir, 'leases.json')],
  });
  t.teardown(() => forced.stop());
  const log = stdoutLog(forced);
  const warning = await waitForLogLine(
    log,
    (l) => l.level === 40 && typeof l.msg === 'string' && l.msg.includes('another dhcp server answers'),
    DHCP_READY_TIMEOUT_MS,
    processOf(forced),
  );
  t.is(warning['servers'], lab.upstreamAddress);
  t.true(warning.msg.includes('--force'), warning.msg);
  await waitForLogLine(log, (l) => l.msg === 'dhcp server listening', 10_000, processOf(forced));
  t.is(processOf(forced)?.exitStatus(), undefined);
});
