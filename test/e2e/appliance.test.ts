/**
 * The real appliance (`node bin/appliance`, ProxyDHCP + TFTP + HTTP) boots real firmware in
 * the VM lab: namespaces this file creates and removes, the plain upstream DHCP server
 * (dnsmasq, no boot options), QEMU VMs on taps. One lab and one appliance serve all four
 * cases; the VMs run side by side (ava runs the tests of a file concurrently). Assertions read
 * the serial consoles and the appliance's own API (events, machines).
 */
import test, { type ExecutionContext } from 'ava';
import { startTestOsAppliance, type LabAppliance } from '../../src/lab/appliance.js';
import { DEFAULT_CLOUD_CONFIG } from '../../src/lab/baseline.js';
import { buildTestInitrd, MARKERS } from '../../src/lab/initrd.js';
import { cloudConfigBody } from './lab-suite.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import { startVm, type Firmware, type Vm } from '../../src/lab/qemu.js';
import { bootPhases } from '../../src/lab/scenario.js';
import type { BootEvent } from '../../src/events.js';

// Machines of the four cases. MACs are fixed so that a failure names a machine one can grep
// for in the appliance log; the lab's random subnet keeps parallel runs apart.
const UNKNOWN_MAC = '52:54:00:a5:01:01';
const UEFI_MAC = '52:54:00:a5:02:01';
const UUID_VM_MAC = '52:54:00:a5:03:01';
// The machine record of case 3 names another NIC of the same machine: only the UUID matches.
const UUID_RECORD_MAC = '52:54:00:a5:03:99';
const UUID = '5a1e0003-7f3a-4c2b-9d1e-0123456789ab';
const MISSING_MAC = '52:54:00:a5:04:01';

const UUID_PROFILE = 'lab-uuid';
const UUID_CMDLINE_TOKEN = 'netboot.lab_case=uuid-7f3a';
const UUID_CLOUD_CONFIG_TOKEN = 'uuid-profile-cloud-config-5c1e';
const MISSING_PROFILE = 'lab-missing';

// iPXE waits ~16 s for an IPv6 Router Advertisement on a network without a router. With one
// this file took 25 s here, without 47 s (all four VMs side by side on 2 cores; figures in
// src/lab/README.md). NETBOOT_LAB_IPV6_ROUTER=0 runs it without, as on a plain IPv4 LAN.
const IPV6_ROUTER = process.env['NETBOOT_LAB_IPV6_ROUTER'] !== '0';
const BOOT_TIMEOUT_MS = 200_000;

let lab: Lab | undefined;
let appliance: LabAppliance | undefined;
const vms: Vm[] = [];

test.before(async () => {
  // A missing qemu/OVMF/iPXE/kernel/root or an unbuilt dist/ fails every test, loudly.
  assertLabPrerequisites('both');
  const initrd = buildTestInitrd();
  // NETBOOT_LAB_KEEP=1 keeps the lab's work directory (serial consoles, appliance log).
  lab = await createLab({ ipv6Router: IPV6_ROUTER, keepWorkDir: process.env['NETBOOT_LAB_KEEP'] === '1' });
  appliance = await startTestOsAppliance(
    lab,
    { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG },
    {
      profiles: [
        {
          id: UUID_PROFILE,
          kernel: '/assets/vmlinuz',
          initrd: ['/assets/initrd.img'],
          cmdline: {
            'rancher.cloud_init.datasources': '[url:http://{{ address }}:{{ port }}/cloud-config?mac={{ mac }}]',
            console: 'ttyS0',
            panic: '-1',
            'netboot.lab_case': 'uuid-7f3a',
          },
          cloudConfig: 'lab-uuid.cloud-config.yaml.njk',
        },
        { id: MISSING_PROFILE, kernel: '/assets/lab-missing/vmlinuz', initrd: ['/assets/lab-missing/initrd.img'], cmdline: 'console=ttyS0' },
      ],
      machines: [
        { mac: UUID_RECORD_MAC, uuid: UUID, profile: UUID_PROFILE, hostname: 'uuid-matched' },
        { mac: MISSING_MAC, profile: MISSING_PROFILE },
      ],
      templates: {
        'lab-uuid.cloud-config.yaml.njk': `#cloud-config\n# ${UUID_CLOUD_CONFIG_TOKEN}\nhostname: {{ hostname | yaml }}\nwrite_files:\n  - path: /etc/lab-profile\n    content: {{ profile.id | yaml }}\n`,
      },
    },
  );
});

test.after.always(async () => {
  await Promise.all(vms.map((v) => v.kill()));
  await appliance?.stop();
  await lab?.destroy();
});

function ready(): { lab: Lab; appliance: LabAppliance } {
  if (!lab || !appliance) throw new Error('the lab or the appliance did not start (see test.before)');
  return { lab, appliance };
}

async function boot(t: ExecutionContext, firmware: Firmware, mac: string, uuid?: string): Promise<Vm> {
  const vm = await startVm(ready().lab, { firmware, mac, ...(uuid ? { uuid } : {}), timeoutMs: BOOT_TIMEOUT_MS + 30_000 });
  vms.push(vm);
  t.teardown(() => vm.kill());
  return vm;
}

/** Wait for the test OS to finish and QEMU to exit 0 (poweroff); returns the serial log. */
async function bootToPowerOff(t: ExecutionContext, vm: Vm): Promise<string> {
  const fetched = await vm.waitFor(new RegExp(MARKERS.cloudConfigFetched), BOOT_TIMEOUT_MS);
  await vm.waitFor(new RegExp(MARKERS.done), 30_000);
  const exit = await Promise.race([vm.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000).unref())]);
  t.is(exit?.code, 0, `${vm.name} did not power off cleanly`);
  const phases = Object.entries(bootPhases(vm))
    .map(([k, v]) => `${k} ${v.toFixed(1)}`)
    .join(', ');
  t.log(`${vm.firmware} ${vm.mac}: VM start to cloud-config fetched ${(fetched.elapsedMs / 1000).toFixed(1)} s (${phases})`);
  return vm.serial();
}

/** The kernel command line the test OS printed from /proc/cmdline. */
function cmdlineOf(serial: string): string {
  return /kernel \S+ cmdline: ([^\r\n]*)/.exec(serial)?.[1] ?? '';
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** `text` as a pattern that also matches when the console wrapped it (SeaBIOS wraps at 80). */
function wrapped(text: string): RegExp {
  return new RegExp([...text].map(escape).join('(?:\\r?\\n)?'));
}

function ofType(events: readonly BootEvent[], type: BootEvent['type']): BootEvent[] {
  return events.filter((e) => e.type === type);
}

/** Facts reached the appliance: the machine record holds what the test OS POSTed. */
async function assertFacts(t: ExecutionContext, serial: string, mac: string): Promise<void> {
  t.true(serial.includes(`facts: agent POST ${ready().appliance.baseUrl}/api/machines/${mac}/facts`), 'the reference agent did not report to the appliance');
  t.true(serial.includes(MARKERS.factsPosted), 'the appliance refused the facts report');
  const machine = (await ready().appliance.getJson(`/api/machines/${mac}`)) as {
    facts?: Record<string, unknown>;
    runtime?: { factsAt?: string; lastIp?: string };
  };
  // What agent/discover.sh gathered inside the VM from /proc and /sys with busybox tools.
  t.like(machine.facts, { mac, agent: { name: 'netboot-discover' }, cpu: { count: 1 }, hostname: `netboot-test-${mac.replace(/:/g, '')}` });
  const nics = machine.facts?.['nics'] as Array<{ mac: string; ipv4: string[] }>;
  const eth0 = nics.find((n) => n.mac === mac);
  t.truthy(eth0, `no nic with ${mac} in ${JSON.stringify(nics)}`);
  t.regex(String(eth0?.ipv4[0]), /^10\.99\.\d+\.1\d\d\/24$/);
  t.is(`${machine.runtime?.lastIp}/24`, String(eth0?.ipv4[0]));
  t.truthy(machine.runtime?.factsAt);
}

test('case 1: SeaBIOS + iPXE ROM, unknown MAC, boots the default profile through our DHCP and HTTP', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 60_000);
  const { lab, appliance } = ready();
  const vm = await boot(t, 'bios', UNKNOWN_MAC);
  const serial = await bootToPowerOff(t, vm);
  // The ROM is iPXE from its first packet; our ProxyDHCP handed it the boot.ipxe URL.
  t.true(serial.includes(`${appliance.baseUrl}/boot.ipxe`), 'iPXE never got our boot.ipxe URL');
  t.true(serial.includes(`netboot-appliance: booting lab-test-os on ${UNKNOWN_MAC}`), 'the profile script did not run');
  // The cloud-config URL was filled in per machine by the profile's placeholders.
  const cmdline = cmdlineOf(serial);
  t.true(cmdline.includes(`rancher.cloud_init.datasources=[url:${appliance.baseUrl}/cloud-config?mac=${UNKNOWN_MAC}]`), cmdline);
  t.true(cmdline.includes('console=ttyS0'));
  t.is(cloudConfigBody(serial), DEFAULT_CLOUD_CONFIG.trim());
  // The OS got its address from the plain upstream server, never from the appliance (proxy).
  t.regex(serial, new RegExp(`${escape(MARKERS.dhcpBound)} 10\\.99\\.\\d+\\.\\d+ from ${escape(lab.upstreamAddress)}`));

  const events = await appliance.events(UNKNOWN_MAC);
  t.true(ofType(events, 'dhcp-offer').length > 0, 'no dhcp-offer event');
  // (GET /boot.ipxe is not in this MAC's timeline: the ROM's DHCP carried no address, so the
  // appliance cannot tell whose request it was; the serial log above shows it was fetched.)
  t.like(ofType(events, 'http-script').find((e) => e.detail?.['outcome'] === 'boot')?.detail, { profile: 'lab-test-os', via: 'default', platform: 'pcbios' });
  t.deepEqual(
    ofType(events, 'http-asset')
      .map((e) => e.detail?.['file'])
      .sort(),
    ['/assets/initrd.img', '/assets/vmlinuz'],
  );
  t.like(ofType(events, 'http-cloud-config')[0]?.detail, { profile: 'lab-test-os' });
  // BIOS iPXE never touches TFTP.
  t.is(ofType(events, 'tftp-file').length, 0);
  await assertFacts(t, serial, UNKNOWN_MAC);
});

test('case 2: OVMF with EDK2 PXE (romfile=) TFTPs snponly.efi from our TFTP server, then iPXE, kernel, initrd, cloud-config', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 60_000);
  const { appliance } = ready();
  const vm = await boot(t, 'uefi', UEFI_MAC);
  const serial = await bootToPowerOff(t, vm);
  let from = 0;
  for (const needle of [
    'Start PXE over IPv4',
    'NBP file downloaded successfully',
    'iPXE',
    `netboot-appliance: booting lab-test-os on ${UEFI_MAC}`,
    MARKERS.initStarted,
    MARKERS.cloudConfigFetched,
    MARKERS.done,
  ]) {
    const at = serial.indexOf(needle, from);
    t.true(at >= 0, `serial console lacks ${needle} after offset ${from}`);
    if (at >= 0) from = at + needle.length;
  }
  // The EFI stub needs initrd=NAME (docs/NETBOOT-FACTS.md section 5); the profile script adds it.
  t.regex(cmdlineOf(serial), /(^| )initrd=initrd\.img( |$)/);
  t.is(cloudConfigBody(serial), DEFAULT_CLOUD_CONFIG.trim());

  const events = await appliance.events(UEFI_MAC);
  const types = events.map((e) => e.type);
  t.log(`events: ${types.join(' ')}`);
  // EDK2: DISCOVER on 67 gets an offer without a boot file, then the REQUEST on 4011 is
  // ACKed with snponly.efi (PXE spec 2.1 boot server exchange).
  t.true(
    ofType(events, 'dhcp-offer').some((e) => e.detail?.['arch'] !== undefined && e.detail['port'] === 67),
    'no dhcp-offer on 67',
  );
  t.true(
    ofType(events, 'dhcp-ack').some((e) => e.detail?.['port'] === 4011 && e.detail['file'] === 'snponly.efi'),
    'no dhcp-ack with snponly.efi on 4011',
  );
  t.true(
    ofType(events, 'tftp-file').some((e) => e.detail?.['file'] === 'snponly.efi'),
    'snponly.efi was not served by our TFTP',
  );
  t.true(
    ofType(events, 'http-script').some((e) => e.detail?.['outcome'] === 'boot' && e.detail['platform'] === 'efi'),
    'no profile script for platform efi',
  );
  t.deepEqual(
    ofType(events, 'http-asset')
      .map((e) => e.detail?.['file'])
      .sort(),
    ['/assets/initrd.img', '/assets/vmlinuz'],
  );
  t.is(ofType(events, 'http-cloud-config').length, 1);
  // In boot order.
  const first = (type: BootEvent['type']) => types.indexOf(type);
  t.true(
    first('dhcp-offer') < first('tftp-file') &&
      first('tftp-file') < first('http-script') &&
      first('http-script') < first('http-asset') &&
      first('http-asset') < first('http-cloud-config'),
    types.join(' '),
  );
  await assertFacts(t, serial, UEFI_MAC);
});

// Case 3 boots one VM; its two tests read the same boot.
let uuidBoot: Promise<{ vm: Vm; serial: string }> | undefined;
function bootUuidVm(t: ExecutionContext): Promise<{ vm: Vm; serial: string }> {
  uuidBoot ??= (async () => {
    const vm = await startVm(ready().lab, { firmware: 'bios', mac: UUID_VM_MAC, uuid: UUID, timeoutMs: BOOT_TIMEOUT_MS + 30_000 });
    vms.push(vm);
    return { vm, serial: await bootToPowerOff(t, vm) };
  })();
  return uuidBoot;
}

test("case 3: a VM whose SMBIOS UUID matches a machine record (of another NIC) gets that profile's kernel command line", async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 60_000);
  const { appliance } = ready();
  const { serial } = await bootUuidVm(t);
  t.true(serial.includes(`netboot-appliance: booting ${UUID_PROFILE} on ${UUID_VM_MAC}`), 'the uuid profile was not selected');
  t.true(cmdlineOf(serial).split(' ').includes(UUID_CMDLINE_TOKEN), `kernel command line lacks ${UUID_CMDLINE_TOKEN}: ${cmdlineOf(serial)}`);
  const events = await appliance.events(UUID_VM_MAC);
  t.like(ofType(events, 'http-script').find((e) => e.detail?.['outcome'] === 'boot')?.detail, { profile: UUID_PROFILE, via: 'machine-uuid' });
});

// The datasource URL carries only ?mac= (a profile cmdline cannot hold "&uuid=": `&` is
// refused as iPXE-unsafe); the appliance follows the UUID of the machine's last /ipxe boot.
test("case 3: the same VM gets that profile's cloud-config", async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 60_000);
  const { appliance } = ready();
  const { serial } = await bootUuidVm(t);
  const body = cloudConfigBody(serial);
  t.true(body.includes(`# ${UUID_CLOUD_CONFIG_TOKEN}`), `not the uuid profile's cloud-config:\n${body}`);
  t.true(body.includes('hostname: "uuid-matched"'), body);
  t.true(body.includes(`content: "${UUID_PROFILE}"`), body);
  const events = await appliance.events(UUID_VM_MAC);
  t.like(ofType(events, 'http-cloud-config')[0]?.detail, { profile: UUID_PROFILE });
});

test("case 4: a machine whose profile's assets are missing shows the appliance's message on its console", async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 60_000);
  const { appliance } = ready();
  const vm = await boot(t, 'bios', MISSING_MAC);
  const message = `netboot-appliance: profile ${MISSING_PROFILE}: /assets/lab-missing/vmlinuz is missing on the appliance`;
  await vm.waitFor(wrapped(message), BOOT_TIMEOUT_MS);
  await vm.waitFor(/netboot-appliance: retrying in \d+ seconds/, 10_000);
  t.false(vm.serial().includes('Linux version'), 'a kernel booted although the assets are missing');
  const events = await appliance.events(MISSING_MAC);
  t.like(ofType(events, 'http-script').find((e) => e.detail?.['outcome'] === 'retry')?.detail, {
    profile: MISSING_PROFILE,
    asset: '/assets/lab-missing/vmlinuz',
  });
  t.is(ofType(events, 'http-asset').length, 0);
  await vm.kill();
});
