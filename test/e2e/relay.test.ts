/**
 * PXE through a DHCP relay with real firmware, in proxy and in server mode. The VM sits on a
 * far bridge in a router namespace; `dnsmasq --dhcp-relay` there forwards its broadcasts from
 * giaddr (the router's far address) to the servers on the lab bridge, which answer unicast to
 * the relay at giaddr:67 (RFC 2131 section 4.1); the far network reaches the appliance's TFTP
 * and HTTP through the router.
 *
 *   lab netns: br0 10.99.X.1/24 (appliance)  --veth--  rtr netns: near 10.99.X.126/24
 *   upstream netns: 10.99.X.2 (plain dnsmasq, proxy case)  rtr: br1 10.98.X.1/24 + the VM's tap
 *
 * 1. proxy mode, UEFI (OVMF's own PXE): addresses from the plain dnsmasq, boot data from the
 *    appliance through the relay; EDK2 then asks the boot server on 4011 directly from the far
 *    network (no relay in that leg).
 * 2. server mode, BIOS (SeaBIOS iPXE ROM): the appliance leases from --dhcp-relay-network.
 * Everything is made here and removed in teardown; missing prerequisites fail, never skip.
 * Runs under the machine-wide QEMU lock (one VM at a time).
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BootEvent } from '../../src/events.js';
import { assertApplianceBuilt, startTestOsAppliance, type LabAppliance } from '../../src/lab/appliance.js';
import { DEFAULT_CLOUD_CONFIG, type BootAssets } from '../../src/lab/baseline.js';
import { buildTestInitrd, MARKERS } from '../../src/lab/initrd.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import { runCommand, spawnManaged, type ManagedProcess } from '../../src/lab/process.js';
import { startVm, type Firmware } from '../../src/lab/qemu.js';

const BOOT_TIMEOUT_MS = 200_000;

interface RelayLab {
  lab: Lab;
  /** A Lab view whose netns/bridge are the router's far side: startVm puts the VM there. */
  far: Lab;
  farBase: string;
  giaddr: string;
  relayLog: string;
}

let assets: BootAssets | undefined;
const cleanups: Array<() => Promise<void>> = [];

test.before(() => {
  assertLabPrerequisites('both');
  assertApplianceBuilt();
  const initrd = buildTestInitrd();
  assets = { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG };
});

test.after.always(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function ipn(ns: string, ...args: string[]): Promise<void> {
  await runCommand('ip', ['-n', ns, ...args]);
}

/** Spawn in a namespace; stopped in teardown. */
function spawnIn(ns: string, cmd: string, args: string[], label: string, stdoutPath?: string): ManagedProcess {
  const p = spawnManaged('ip', ['netns', 'exec', ns, cmd, ...args], { label, ...(stdoutPath ? { stdoutPath } : {}) });
  cleanups.push(async () => {
    await p.stop(2000);
  });
  return p;
}

async function waitForFile(file: string, re: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(existsSync(file) && re.test(readFileSync(file, 'utf8')))) {
    if (Date.now() > deadline) throw new Error(`${file}: no ${re} within ${timeoutMs} ms:\n${existsSync(file) ? readFileSync(file, 'utf8').slice(-2000) : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The lab plus a router namespace with a far bridge and a dnsmasq relay forwarding to `servers`. */
async function relayLab(servers: (lab: Lab) => string[]): Promise<RelayLab> {
  const lab = await createLab({ upstreamDhcp: false, keepWorkDir: process.env['NETBOOT_LAB_KEEP'] === '1' });
  cleanups.push(() => lab.destroy());
  const base = lab.serverAddress.split('.').slice(0, 3).join('.');
  const farBase = `10.98.${base.split('.')[2]}`;
  const giaddr = `${farBase}.1`;
  const rtr = `rtr-${lab.id}`;
  await runCommand('ip', ['netns', 'add', rtr]);
  cleanups.push(async () => {
    const pids = (await runCommand('ip', ['netns', 'pids', rtr]).catch(() => ({ stdout: '' }))).stdout.split(/\s+/).filter(Boolean);
    for (const p of pids) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        // gone
      }
    }
    await runCommand('ip', ['netns', 'del', rtr]).catch(() => undefined);
  });
  await ipn(rtr, 'link', 'set', 'lo', 'up');
  await runCommand('ip', ['netns', 'exec', rtr, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  await ipn(lab.netns, 'link', 'add', 'rnear', 'type', 'veth', 'peer', 'name', 'near', 'netns', rtr);
  await ipn(lab.netns, 'link', 'set', 'rnear', 'master', 'br0', 'up');
  await ipn(rtr, 'addr', 'add', `${base}.126/24`, 'dev', 'near');
  await ipn(rtr, 'link', 'set', 'near', 'up');
  await ipn(rtr, 'link', 'add', 'br1', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
  await ipn(rtr, 'addr', 'add', `${giaddr}/24`, 'dev', 'br1');
  await ipn(rtr, 'link', 'set', 'br1', 'up');
  for (const ns of [lab.netns, lab.upstreamNetns]) await ipn(ns, 'route', 'add', `${farBase}.0/24`, 'via', `${base}.126`);
  const relayLog = join(lab.workDir, 'relay.log');
  spawnIn(
    rtr,
    'dnsmasq',
    [
      '--no-daemon',
      '--conf-file=/dev/null',
      '--port=0',
      '--user=root',
      '--log-dhcp',
      `--log-facility=${relayLog}`,
      `--pid-file=${join(lab.workDir, 'relay.pid')}`,
      // Requests arrive on br1; the servers' replies to giaddr:67 arrive through near.
      '--interface=br1',
      '--interface=near',
      ...servers(lab).map((s) => `--dhcp-relay=${giaddr},${s}`),
    ],
    'dnsmasq (relay)',
  );
  await waitForFile(relayLog, /DHCP relay from/, 10_000);
  let taps = 0;
  const far: Lab = {
    ...lab,
    netns: rtr,
    bridge: 'br1',
    addTap: async () => {
      const tap = `ftap${taps++}`;
      await ipn(rtr, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
      await ipn(rtr, 'link', 'set', tap, 'master', 'br1', 'up');
      return tap;
    },
    spawn: (cmd, args, opts) => {
      const p = spawnManaged('ip', ['netns', 'exec', rtr, cmd, ...args], { label: cmd, ...opts });
      cleanups.push(async () => {
        await p.stop(2000);
      });
      return p;
    },
    exec: (cmd, args) => runCommand('ip', ['netns', 'exec', rtr, cmd, ...args]),
  };
  return { lab, far, farBase, giaddr, relayLog };
}

function readLog(a: LabAppliance): Array<Record<string, unknown>> {
  const path = a.logPaths?.['stdout'];
  if (!path || !existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .flatMap((l) => {
      try {
        return l.startsWith('{') ? [JSON.parse(l) as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
}

async function bootThroughRelay(
  t: ExecutionContext,
  r: RelayLab,
  firmware: Firmware,
  mac: string,
): Promise<{ serial: string; boundIp: string; boundFrom: string }> {
  const vm = await startVm(r.far, { firmware, mac, timeoutMs: BOOT_TIMEOUT_MS + 30_000 });
  cleanups.push(() => vm.kill());
  const fetched = await vm.waitFor(new RegExp(MARKERS.cloudConfigFetched.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), BOOT_TIMEOUT_MS);
  t.log(`${firmware} ${mac} through the relay: VM start to cloud-config fetched ${(fetched.elapsedMs / 1000).toFixed(1)} s`);
  await vm.waitFor(/=== NETBOOT-TEST-OS DONE ===/, 30_000);
  const serial = vm.serial();
  const bound = /=== DHCP BOUND (\S+) from (\S+) ===/.exec(serial);
  if (!bound) throw new Error('the test OS printed no DHCP BOUND line');
  return { serial, boundIp: bound[1]!, boundFrom: bound[2]! };
}

const inFar = (ip: string | undefined, farBase: string): boolean => ip !== undefined && ip.startsWith(`${farBase}.`);

test.serial('proxy mode through a relay: UEFI firmware gets its address from the plain server and boots from the appliance', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 120_000);
  const mac = '52:54:00:6b:01:01';
  const r = await relayLab((lab) => [lab.upstreamAddress, lab.serverAddress]);
  const { lab, farBase, giaddr } = r;
  // The plain DHCP server: addresses only, a range on the far network (chosen by giaddr).
  spawnIn(
    lab.upstreamNetns,
    'dnsmasq',
    [
      '--no-daemon',
      '--conf-file=/dev/null',
      '--port=0',
      '--user=root',
      '--no-ping',
      '--interface=vdhcp',
      '--bind-interfaces',
      `--dhcp-range=${farBase}.100,${farBase}.150,255.255.255.0,10m`,
      `--dhcp-option=3,${giaddr}`,
      `--dhcp-leasefile=${join(lab.workDir, 'far.leases')}`,
      `--pid-file=${join(lab.workDir, 'far.pid')}`,
      '--log-dhcp',
      `--log-facility=${join(lab.workDir, 'far-dnsmasq.log')}`,
    ],
    'dnsmasq (plain, far range)',
  );
  await waitForFile(join(lab.workDir, 'far-dnsmasq.log'), /DHCP, IP range/, 10_000);
  const appliance = await startTestOsAppliance(lab, assets!, { name: 'appliance-relay-proxy', args: ['--dhcp-mode', 'proxy'] });
  cleanups.push(() => appliance.stop());

  const boot = await bootThroughRelay(t, r, 'uefi', mac);
  t.is(boot.boundFrom, lab.upstreamAddress, 'the address came from the plain server');
  t.true(inFar(boot.boundIp, farBase), `${boot.boundIp} is not on the far network`);
  t.true(boot.serial.includes(MARKERS.cloudConfigBegin));

  const logs = readLog(appliance);
  const offer = logs.find((l) => String(l['msg']).startsWith('proxydhcp offer') && l['mac'] === mac);
  t.like(offer, { relay: giaddr, to: `${giaddr}:67` }, 'the proxy offer went unicast to the relay at giaddr:67');
  const ack4011 = logs.find((l) => l['msg'] === 'proxydhcp ack' && l['mac'] === mac && l['port'] === 4011);
  t.truthy(ack4011, 'EDK2 asked the boot server on 4011');
  t.true(inFar(String(ack4011?.['to']).split(':')[0], farBase), `4011 ACK went to ${String(ack4011?.['to'])}`);
  const events = (await appliance.events(mac)) as BootEvent[];
  t.true(events.some((e) => e.type === 'dhcp-offer' && e.detail?.['relay'] === giaddr));
  t.true(events.some((e) => e.type === 'http-cloud-config'));
  t.true(readFileSync(r.relayLog, 'utf8').includes(lab.serverAddress), 'the relay forwarded to the appliance');
});

test.serial('server mode through a relay: BIOS firmware leases from --dhcp-relay-network and boots', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 120_000);
  const mac = '52:54:00:6b:02:01';
  const r = await relayLab((lab) => [lab.serverAddress]);
  const { lab, farBase, giaddr } = r;
  const dir = mkdtempSync(join(tmpdir(), 'netboot-relay-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const base = lab.serverAddress.split('.').slice(0, 3).join('.');
  const appliance = await startTestOsAppliance(lab, assets!, {
    name: 'appliance-relay-server',
    args: [
      '--dhcp-mode',
      'server',
      '--dhcp-range',
      `${base}.60-${base}.69`,
      '--dhcp-relay-network',
      `${farBase}.0/24=${farBase}.100-${farBase}.110@${giaddr}`,
      '--lease-file',
      join(dir, 'leases.json'),
    ],
  });
  cleanups.push(() => appliance.stop());

  const boot = await bootThroughRelay(t, r, 'bios', mac);
  t.is(boot.boundFrom, lab.serverAddress, 'the address came from the appliance');
  t.regex(boot.boundIp, new RegExp(`^${farBase.replace(/\./g, '\\.')}\\.1(0\\d|10)$`));
  const logs = readLog(appliance);
  const offer = logs.find((l) => l['msg'] === 'dhcp offer' && l['mac'] === mac);
  t.like(offer, { relay: giaddr, to: `${giaddr}:67` });
  t.true(inFar(String(offer?.['ip']), farBase));
  const events = (await appliance.events(mac)) as BootEvent[];
  t.true(events.some((e) => e.type === 'dhcp-ack' && e.detail?.['relay'] === giaddr && inFar(e.ip, farBase)));
  t.true(events.some((e) => e.type === 'http-cloud-config'));
});
