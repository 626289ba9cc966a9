/**
 * Real firmware through the reference boot server (dnsmasq ProxyDHCP + TFTP, busybox httpd),
 * next to a plain DHCP server, in namespaces this file creates and removes. This proves the
 * lab machinery itself; the appliance cases run through the same runBootScenario().
 */
import test from 'ava';
import { startDnsmasqBaseline, DEFAULT_CLOUD_CONFIG, type BaselineServer } from '../../src/lab/baseline.js';
import { MARKERS } from '../../src/lab/initrd.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import type { Lab } from '../../src/lab/netns.js';
import { IPXE_STARTED, runBootScenario, type BootScenarioResult } from '../../src/lab/scenario.js';
import { startLabSession } from '../../src/lab/session.js';
import { existsSync } from 'node:fs';
import { cloudConfigBody } from './lab-suite.js';

// A missing qemu/OVMF/iPXE/kernel/root fails every test here, loudly: never a silent skip.
test.before(() => {
  assertLabPrerequisites('both');
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Index of `needle` in `text` at or after `from`, failing with the marker's name. */
function assertInOrder(t: import('ava').ExecutionContext, text: string, needles: readonly (string | RegExp)[]): void {
  let from = 0;
  for (const needle of needles) {
    const rest = text.slice(from);
    const m =
      typeof needle === 'string'
        ? { index: rest.indexOf(needle), length: needle.length }
        : (() => {
            const r = needle.exec(rest);
            return r ? { index: r.index, length: r[0].length } : { index: -1, length: 0 };
          })();
    t.true(m.index >= 0, `serial console lacks ${String(needle)} after offset ${from}`);
    if (m.index < 0) return;
    from += m.index + m.length;
  }
}

async function bootThroughBaseline(
  t: import('ava').ExecutionContext,
  firmware: 'bios' | 'uefi',
  mac: string,
  o: { uuid?: string; postFacts?: boolean } = {},
): Promise<{ r: BootScenarioResult; lab: Lab; server: BaselineServer }> {
  const uuid = o.uuid;
  let lab: Lab | undefined;
  let server: BaselineServer | undefined;
  const r = await runBootScenario({
    firmware,
    vm: { mac, ...(uuid ? { uuid } : {}) },
    timeoutMs: 240_000,
    onLab: (l) => {
      lab = l;
      t.teardown(() => l.destroy());
    },
    startBootServer: async (l, assets) => {
      // With postFacts the report goes to the baseline's facts CGI (same URL the server
      // reports as factsUrl); without, to /api/machines/MAC/facts, which it does not have.
      server = await startDnsmasqBaseline(l, assets, o.postFacts ? { extraCmdline: `netboot.facts_url=http://${l.serverAddress}:8080/cgi-bin/facts` } : {});
      return server;
    },
  });
  if (!lab || !server) throw new Error('scenario did not create a lab and a server');
  t.log(`${firmware}: VM start to cloud-config fetched in ${r.secondsToCloudConfig.toFixed(1)} s`);
  return { r, lab, server };
}

function commonAssertions(t: import('ava').ExecutionContext, r: BootScenarioResult, lab: Lab, server: BaselineServer): void {
  const { serial } = r;
  // Every milestone was seen, in boot order, and the last one is the measured figure.
  const order = ['ipxe', 'bootScript', 'kernel', 'init', 'dhcp', 'cloudConfig'] as const;
  const times = order.map((p) => r.phases[p]);
  t.true(
    times.every((x) => x !== undefined),
    `missing phases: ${JSON.stringify(r.phases)}`,
  );
  t.deepEqual(
    [...times].sort((a, b) => (a ?? 0) - (b ?? 0)),
    times,
    `phases out of order: ${JSON.stringify(r.phases)}`,
  );
  t.is(r.phases.cloudConfig !== undefined && Math.abs(r.phases.cloudConfig - r.secondsToCloudConfig) < 0.5, true);
  t.log(`${r.firmware} phases (s): ${order.map((p) => `${p} ${r.phases[p]?.toFixed(1)}`).join(', ')}`);
  // The test OS got its address from the plain upstream server, never from the proxy.
  t.regex(serial, new RegExp(`${escape(MARKERS.dhcpBound)} 10\\.99\\.\\d+\\.\\d+ from ${escape(lab.upstreamAddress)}`));
  t.regex(r.upstreamLog, new RegExp(`DHCPACK\\(vdhcp\\) \\S+ ${escape(r.mac)}`));
  // The cloud-config came through byte for byte between the markers ('' when they are missing).
  t.is(cloudConfigBody(serial), DEFAULT_CLOUD_CONFIG.trim(), 'the cloud-config between the markers');
  t.true(serial.includes(`rancher.cloud_init.datasources=[url:${server.cloudConfigUrl}]`), 'kernel command line lacks the datasource');
  t.true(r.poweredOff, 'test OS did not power off cleanly');
  const http = r.serverLogs['httpd'] ?? '';
  for (const path of ['/boot.ipxe', '/vmlinuz', '/initrd.img', '/cloud-config']) {
    t.regex(http, new RegExp(`10\\.99\\.\\d+\\.(1\\d\\d):\\d+: url:${escape(path)}`), `httpd did not serve ${path} to the VM`);
  }
  // dnsmasq proxy answered the iPXE client with the script URL (loop broken by user class).
  const dnsmasq = r.serverLogs['dnsmasq'] ?? '';
  t.regex(dnsmasq, new RegExp(`PXE\\(br0\\) (\\S+ )?${escape(r.mac)} `));
  t.true(dnsmasq.includes(`bootfile name: ${server.bootScriptUrl}`), 'dnsmasq never sent the boot.ipxe URL');
}

test.serial('BIOS: SeaBIOS + iPXE ROM boots the test OS through dnsmasq proxy and static HTTP', async (t) => {
  t.timeout(300_000);
  const mac = '52:54:00:b1:05:01';
  const { r, lab, server } = await bootThroughBaseline(t, 'bios', mac, { postFacts: true });
  assertInOrder(t, r.serial, [
    'SeaBIOS',
    'iPXE',
    `Filename: ${server.bootScriptUrl}`,
    '=== BOOT.IPXE',
    'Linux version',
    MARKERS.initStarted,
    MARKERS.dhcpBound,
    MARKERS.cloudConfigFetched,
    MARKERS.done,
  ]);
  // The ROM is iPXE from its first packet: user class iPXE, arch 0, never TFTP.
  const dnsmasq = r.serverLogs['dnsmasq'] ?? '';
  t.regex(dnsmasq, /vendor class: PXEClient:Arch:00000/);
  t.notRegex(dnsmasq, /dnsmasq-tftp.*sent/);
  commonAssertions(t, r, lab, server);
  // The test OS reported its facts by HTTP POST from inside the VM, as JSON.
  t.true(r.serial.includes(MARKERS.factsPosted), 'facts report was not accepted');
  t.is(server.factsUrl, `http://${lab.serverAddress}:8080/cgi-bin/facts`);
  const reports = (r.serverLogs['facts'] ?? '')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(reports.length, 1);
  t.like(reports[0], {
    mac,
    kernel: r.serial.match(/kernel (\S+) cmdline/)?.[1],
    cpus: 1,
    source: 'netboot-test-os',
    hostname: `netboot-test-${mac.replace(/:/g, '')}`,
  });
  t.regex(String(reports[0]?.['ip']), /^10\.99\.\d+\.1\d\d$/);
  t.true(Number(reports[0]?.['memoryKiB']) > 400_000, 'memoryKiB should reflect -m 512');
});

test.serial('UEFI: OVMF with its own PXE (romfile=) TFTPs snponly.efi, then iPXE boots the test OS', async (t) => {
  t.timeout(300_000);
  const mac = '52:54:00:0e:f1:01';
  const { r, lab, server } = await bootThroughBaseline(t, 'uefi', mac, { uuid: '8f9a2b3c-1d2e-4f50-8a6b-7c8d9e0f1a2b' });
  // The static baseline has no /api/machines/MAC/facts: the report is refused, yet the OS
  // still finishes (the appliance's API answers this same default URL).
  t.true(r.serial.includes(`facts: POST http://${lab.serverAddress}:8080/api/machines/${mac}/facts`));
  t.true(r.serial.includes(MARKERS.factsFailed));
  assertInOrder(t, r.serial, [
    'Start PXE over IPv4',
    'NBP file downloaded successfully',
    'iPXE',
    '=== BOOT.IPXE',
    MARKERS.initStarted,
    MARKERS.cloudConfigFetched,
    MARKERS.done,
  ]);
  const dnsmasq = r.serverLogs['dnsmasq'] ?? '';
  // EDK2's native PXE (arch 7, no iPXE user class) got snponly.efi by TFTP ...
  t.regex(dnsmasq, /vendor class: PXEClient:Arch:00007/);
  t.regex(dnsmasq, new RegExp(`dnsmasq-tftp\\[\\d+\\]: sent \\S+/snponly\\.efi to 10\\.99\\.`));
  // ... and iPXE, now arch 7 with user class iPXE, got the script URL.
  t.regex(dnsmasq, /user class: iPXE/);
  // `-uuid` reaches DHCP as option 97: type 0, then the SMBIOS GUID with its first three
  // fields little-endian (dnsmasq echoes it, and logs only the first 14 bytes).
  t.true(dnsmasq.includes('option: 97 client-machine-id  00:3c:2b:9a:8f:2e:1d:50:4f:8a:6b:7c:8d:9e'), 'option 97 does not carry the VM uuid');
  commonAssertions(t, r, lab, server);
});

test.serial('two VMs on one lab bridge boot side by side through one boot server (startLabSession)', async (t) => {
  t.timeout(300_000);
  const macs = ['52:54:00:5e:55:01', '52:54:00:5e:55:02'];
  const session = await startLabSession({
    startBootServer: (lab, assets) => startDnsmasqBaseline(lab, assets),
    vms: macs.map((mac) => ({ firmware: 'bios' as const, mac })),
    vmTimeoutMs: 240_000,
    // With an IPv6 router on the bridge iPXE stops waiting for a Router Advertisement.
    ipv6Router: true,
  });
  t.teardown(() => session.stop());
  t.is(session.vms.length, 2);
  const bound = await Promise.all(
    session.vms.map(async (vm) => {
      await vm.waitFor(new RegExp(MARKERS.cloudConfigFetched), 240_000);
      const m = new RegExp(`${escape(MARKERS.dhcpBound)} (\\S+) `).exec(vm.serial());
      return m?.[1];
    }),
  );
  t.truthy(bound[0]);
  t.truthy(bound[1]);
  t.not(bound[0], bound[1], 'both VMs got the same address');
  for (const vm of session.vms) {
    // iPXE autoconfigured from the lab's Router Advertisement (SLAAC in fd99:X::/64) ...
    t.regex(vm.serial(), /net0: fd99:[0-9a-f]+::[0-9a-f:]+\/64/);
    // ... so its configuration ends on the RA rather than its ~16 s timeout (logged, not
    // asserted: under CPU contention TCG alone can take that long).
    const bootScript = vm.timeOf(/\[script\]/) ?? NaN;
    const ipxe = vm.timeOf(IPXE_STARTED) ?? NaN;
    t.log(`${vm.name}: iPXE start to boot.ipxe ${((bootScript - ipxe) / 1000).toFixed(1)} s`);
  }
  const leases = session.lab.upstreamLogPath;
  await session.stop();
  // stop() removed the lab; the log file went with its work directory.
  t.false(existsSync(leases));
});
