/**
 * Issue 16, end to end: the firmware paths beyond SeaBIOS+iPXE and OVMF PXE, each booted through
 * the real appliance (`node bin/appliance`, built dist/) in proxy mode beside dnsmasq (which only
 * hands out addresses) and in server mode (the appliance leases the address), never through
 * dnsmasq's own boot support:
 *
 *  - OVMF UEFI HTTP boot (PXE switched off, vendor class HTTPClient, arch 16): option 60
 *    HTTPClient + http://APPLIANCE/boot/snponly.efi, then iPXE, kernel, initrd, cloud-config.
 *  - OVMF Secure Boot (Microsoft keys enrolled), --secure-boot (in server mode instead: a group
 *    with secureBoot that the machine's verified facts select): PXE -> shimx64.efi -> grubx64.efi
 *    (Debian's signed network grub, fetched by `fetch secureboot`) -> /grub/grub.cfg -> the
 *    machine's rendered grub script -> the Debian-signed kernel + initrd over TFTP; the kernel
 *    reports Secure Boot on, the test OS fetches its cloud-config. In proxy mode Debian 12's grub
 *    takes its TFTP server from dnsmasq's ACK (siaddr), so the lab's dnsmasq names the appliance
 *    as next-server, as the README tells operators; without that, the appliance's timeline says
 *    grub asked another server (its own case below).
 *  - The same Secure Boot VM handed unsigned iPXE (its machine record says secureBoot: false):
 *    the firmware refuses it and the timeline says why and the fix.
 *  - ARM64: AAVMF under qemu-system-aarch64 (TCG, arch 11): PXE -> grubaa64.efi (Debian's signed
 *    network grub for arm64, the default loader on ARM64) -> the machine's grub script (a group
 *    with selector arch arm64) -> Debian's arm64 cloud kernel + the busybox test OS built for
 *    arm64, both over TFTP -> cloud-config.
 *
 * Each case makes its own lab (namespaces, bridge, taps) and removes it; at most two VMs run at
 * once. A missing prerequisite (qemu, OVMF, AAVMF, iPXE, kernel, root, signed packages, an
 * unbuilt dist/) fails, never skips. `NETBOOT_LAB_KEEP=1` keeps the labs' work directories.
 * The seconds each path took are printed (t.log) and kept in the README's firmware table.
 */
import test, { type ExecutionContext } from 'ava';
import { startTestOsAppliance, testOsProfile, TEST_OS_PROFILE_ID, type LabAppliance } from '../../src/lab/appliance.js';
import type { BootAssets } from '../../src/lab/baseline.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { startVm, type Firmware, type Vm, type VmOptions } from '../../src/lab/qemu.js';
import { IPXE_STARTED } from '../../src/lab/scenario.js';
import type { BootEvent } from '../../src/events.js';
import { fetchSecureBoot } from '../../src/fetch/secureboot.js';
import { createSilentLogger } from '../../src/log.js';
import { prepareArm64TestOs } from '../../src/lab/arm64.js';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootToCloudConfig, KEEP_LABS, labSuite, ofType } from './lab-suite.js';

const BOOT_TIMEOUT_MS = 240_000;
// grub reads the 14 MB kernel over TFTP in 1 KiB lock-step blocks: 60-200 s on a loaded 2-core host.
const GRUB_TIMEOUT_MS = 420_000;

const suite = labSuite(test, 'uefi', ['uefi-http', 'uefi-secureboot', 'arm64']);
const { labs, appliances, vms } = suite;
const bootAssets = (): BootAssets => suite.assets();

type Mode = 'proxy' | 'server';
const MODES: readonly Mode[] = ['proxy', 'server'];
const MODE_LABEL: Readonly<Record<Mode, string>> = { proxy: 'proxy mode beside dnsmasq', server: 'appliance as DHCP server' };

/**
 * A lab for `mode`: proxy = dnsmasq leases addresses (and, with `nextServer`, names the
 * appliance as next-server, which grub needs); server = no other DHCP server.
 */
async function newLab(mode: Mode, options: { nextServer?: boolean } = {}): Promise<Lab> {
  const proxy = mode === 'proxy';
  const lab = await createLab({ upstreamDhcp: proxy, ipv6Router: proxy, upstreamNextServer: proxy && (options.nextServer ?? false), keepWorkDir: KEEP_LABS });
  labs.push(lab);
  return lab;
}

/** `--dhcp-mode server` in server mode (proxy is the appliance's default). */
function modeArgs(mode: Mode): string[] {
  return mode === 'server' ? ['--dhcp-mode', 'server'] : [];
}

// At most two VMs at once (2 cores, TCG): each test holds a slot from its VM's start to its end.
// The wait for a slot has its own bound; the test's own `timeoutMs` starts once it has one.
const SLOT_WAIT_MS = 40 * 60_000;
let freeSlots = 2;
const waiting: Array<() => void> = [];
async function vmSlot(t: ExecutionContext, timeoutMs: number): Promise<void> {
  t.timeout(SLOT_WAIT_MS);
  if (freeSlots > 0) freeSlots -= 1;
  else await new Promise<void>((r) => waiting.push(r));
  t.timeout(timeoutMs);
  t.teardown(() => {
    const next = waiting.shift();
    if (next) next();
    else freeSlots += 1;
  });
}

async function boot(
  t: ExecutionContext,
  lab: Lab,
  firmware: Firmware,
  mac: string,
  extra: Pick<VmOptions, 'extraArgs'> = {},
  timeoutMs = BOOT_TIMEOUT_MS,
): Promise<Vm> {
  const vm = await startVm(lab, { firmware, mac, timeoutMs: timeoutMs + 30_000, ...extra });
  vms.push(vm);
  t.teardown(() => vm.kill());
  return vm;
}

async function waitForEvent(appliance: LabAppliance, mac: string, match: (e: BootEvent) => boolean, timeoutMs: number, vm: Vm): Promise<BootEvent> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await appliance.events(mac)).find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no matching event for ${mac} within ${timeoutMs} ms; console tail:\n${vm.serial().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// The slowest paths first: each test takes a VM slot in the order declared.
// TCG emulates arm64 far slower than x86-64, and grub fetches the 27 MB uncompressed arm64 kernel
// over TFTP in 1 KiB blocks: this path gets a larger bound.
const ARM64_TIMEOUT_MS = 480_000;

for (const mode of MODES) {
  test(`ARM64 AAVMF (${MODE_LABEL[mode]}): grubaa64.efi, grub script per machine, arm64 kernel over TFTP, cloud-config`, async (t) => {
    await vmSlot(t, ARM64_TIMEOUT_MS + 180_000);
    // Debian's arm64 kernel, busybox and signed grub are downloaded into the package cache once.
    const arm64 = await prepareArm64TestOs();
    const lab = await newLab(mode, { nextServer: true });
    const mac = mode === 'proxy' ? '52:54:00:16:04:01' : '52:54:00:16:04:02';
    const profile = {
      ...testOsProfile('lab-test-os-arm64', { extraCmdline: { console: 'ttyAMA0' } }),
      kernel: '/assets/arm64/vmlinuz',
      initrd: ['/assets/arm64/initrd.img'],
    };
    const appliance = await startTestOsAppliance(lab, bootAssets(), {
      name: `appliance-arm64-${mode}`,
      args: modeArgs(mode),
      profiles: [profile],
      groups: [{ id: 'arm64', profile: profile.id, selector: { arch: 'arm64' } }],
    });
    appliances.push(appliance);
    mkdirSync(join(appliance.home.assets, 'arm64'));
    copyFileSync(arm64.kernelPath, join(appliance.home.assets, 'arm64', 'vmlinuz'));
    copyFileSync(arm64.initrdPath, join(appliance.home.assets, 'arm64', 'initrd.img'));
    const fetched = await fetchSecureBoot({ tftpRoot: appliance.home.tftpRoot, arches: ['arm64'], log: createSilentLogger() });
    t.deepEqual(
      fetched.map((f) => f.name),
      ['shimaa64.efi', 'grubaa64.efi'],
    );
    const vm = await boot(t, lab, 'arm64', mac, {}, ARM64_TIMEOUT_MS);
    const serial = await bootToCloudConfig(t, vm, `arm64 ${mode}`, ARM64_TIMEOUT_MS);
    t.true(serial.includes(`netboot-appliance: booting lab-test-os-arm64 on ${mac} with grub`), 'the rendered grub script did not run');
    t.regex(serial, new RegExp(`kernel ${arm64.version.replace(/\./g, '\\.')} cmdline`));
    const events = await appliance.events(mac);
    t.true(
      [...ofType(events, 'dhcp-offer'), ...ofType(events, 'dhcp-ack')].some((e) => e.detail?.['file'] === 'grubaa64.efi' && e.detail?.['arch'] === 'efi-arm64'),
      'dhcp did not hand out grubaa64.efi',
    );
    // Every file complete, the initrd included: arm64 grub's final ACK of it sometimes never
    // reaches the wire (it boots at once); the appliance then records the transfer as complete
    // with finalAck: false rather than as a failure.
    const files = ofType(events, 'tftp-file').map((e) => e.detail?.['file']);
    for (const f of ['grubaa64.efi', 'grub/grub.cfg', `grub/machines/arm64/${mac}.cfg`, 'assets/arm64/vmlinuz', 'assets/arm64/initrd.img'])
      t.true(files.includes(f), `${f} was not served over tftp: ${JSON.stringify(files)}`);
    t.deepEqual(
      ofType(events, 'tftp-error').filter((e) => String(e.detail?.['file']).startsWith('assets/')),
      [],
      'a boot file transfer recorded as failed',
    );
    t.like(ofType(events, 'grub-script').at(-1)?.detail, { outcome: 'boot', profile: 'lab-test-os-arm64', via: 'group', arch: 'arm64' });
  });
}

for (const mode of MODES) {
  test(`OVMF UEFI HTTP boot (${MODE_LABEL[mode]}): HTTPClient offer, snponly.efi over HTTP, iPXE, cloud-config`, async (t) => {
    await vmSlot(t, 2 * BOOT_TIMEOUT_MS + 90_000);
    const lab = await newLab(mode);
    const appliance = await startTestOsAppliance(lab, bootAssets(), { name: `appliance-http-boot-${mode}`, args: modeArgs(mode) });
    appliances.push(appliance);
    const mac = mode === 'proxy' ? '52:54:00:16:01:01' : '52:54:00:16:01:02';
    const vm = await boot(t, lab, 'uefi-http', mac);
    const serial = await bootToCloudConfig(t, vm, `uefi-http ${mode}`, BOOT_TIMEOUT_MS);
    // OVMF printed the URL it got from our offer, then iPXE started from it.
    t.regex(serial, new RegExp(`URI: http://${lab.serverAddress.replace(/\./g, '\\.')}:8080/boot/snponly\\.efi`));
    t.regex(serial, IPXE_STARTED);
    t.true(serial.includes(`netboot-appliance: booting lab-test-os on ${mac}`), 'the profile script did not run');
    const events = await appliance.events(mac);
    const offer = ofType(events, 'dhcp-offer').find((e) => e.detail?.['file'] === `${appliance.baseUrl}/boot/snponly.efi`);
    t.truthy(offer, `no offer of the http boot url in ${JSON.stringify(events.map((e) => [e.type, e.detail]))}`);
    // In proxy mode the address came from dnsmasq, so the HTTP fetch of the NBP may not be tied
    // to the MAC yet (the timeline keeps it under the client's address): look at all events.
    const all = (await appliance.getJson('/api/events?limit=1000')) as BootEvent[];
    t.true(
      ofType(all, 'http-asset').some((e) => e.detail?.['via'] === 'http-boot' && e.detail?.['file'] === 'snponly.efi'),
      'snponly.efi was not fetched over http',
    );
    t.is(ofType(events, 'tftp-file').length, 0, 'an http boot client used tftp');
    if (mode === 'server') t.true(ofType(events, 'dhcp-ack').length > 0, 'the appliance did not lease the address');
  });
}

const FACTS_TOKEN = 'firmware-matrix-api-token';

/**
 * An appliance with Debian's shim-signed + grub-efi-amd64-signed in its TFTP root and Secure Boot
 * on: by `--secure-boot`, or (`byFacts`) only for the machine `mac` whose verified facts (an
 * inventory import with the API token, before it ever booted) select a group with secureBoot,
 * so even its first NBP at DHCP time is the signed shim.
 */
async function secureBootAppliance(t: ExecutionContext, lab: Lab, mode: Mode, name: string, byFacts?: { mac: string }): Promise<LabAppliance> {
  const appliance = byFacts
    ? await startTestOsAppliance(lab, bootAssets(), {
        name,
        args: [...modeArgs(mode), '--api-token', FACTS_TOKEN],
        groups: [{ id: 'qemu-secure', profile: TEST_OS_PROFILE_ID, selector: { facts: ['dmi.vendor == QEMU'] }, secureBoot: true }],
      })
    : await startTestOsAppliance(lab, bootAssets(), { name, args: [...modeArgs(mode), '--secure-boot'] });
  appliances.push(appliance);
  if (byFacts) {
    const { stdout } = await lab.exec('busybox', [
      'wget',
      '--header',
      `Authorization: Bearer ${FACTS_TOKEN}`,
      '--header',
      'Content-Type: application/json',
      '--post-data',
      JSON.stringify({ dmi: { vendor: 'QEMU', product: 'Standard PC (Q35 + ICH9, 2009)' } }),
      '-O',
      '-',
      `${appliance.baseUrl}/api/machines/${byFacts.mac}/facts`,
    ]);
    t.like(JSON.parse(stdout), { verified: true });
  }
  // Downloaded into the package cache once.
  const fetched = await fetchSecureBoot({ tftpRoot: appliance.home.tftpRoot, log: createSilentLogger() });
  t.deepEqual(
    fetched.map((f) => f.name),
    ['shimx64.efi', 'grubx64.efi'],
  );
  return appliance;
}

for (const mode of MODES) {
  test(`OVMF Secure Boot (${MODE_LABEL[mode]}): shim, signed grub, grub script per machine, signed kernel, secure boot on`, async (t) => {
    await vmSlot(t, GRUB_TIMEOUT_MS + BOOT_TIMEOUT_MS + 120_000);
    const lab = await newLab(mode, { nextServer: true });
    const mac = mode === 'proxy' ? '52:54:00:16:02:01' : '52:54:00:16:02:02';
    // Server mode: Secure Boot comes from a group the machine's verified facts select (the
    // DHCP-time boot file follows it); proxy mode: from --secure-boot.
    const appliance = await secureBootAppliance(t, lab, mode, `appliance-secureboot-${mode}`, mode === 'server' ? { mac } : undefined);
    const vm = await boot(t, lab, 'uefi-secureboot', mac, {}, GRUB_TIMEOUT_MS);
    const serial = await bootToCloudConfig(t, vm, `uefi-secureboot ${mode}`, GRUB_TIMEOUT_MS);
    // The signed kernel says so itself: the firmware booted it with Secure Boot enforced.
    t.regex(serial, /secureboot: Secure boot enabled/);
    t.true(serial.includes(`netboot-appliance: booting lab-test-os on ${mac} with grub (secure boot)`), 'the rendered grub script did not run');
    const events = await appliance.events(mac);
    t.true(
      [...ofType(events, 'dhcp-offer'), ...ofType(events, 'dhcp-ack')].some((e) => e.detail?.['file'] === 'shimx64.efi'),
      'dhcp did not hand out shim',
    );
    const files = ofType(events, 'tftp-file').map((e) => e.detail?.['file']);
    for (const f of ['shimx64.efi', 'grubx64.efi', 'grub/grub.cfg', `grub/machines/x86_64/${mac}.cfg`, 'assets/vmlinuz', 'assets/initrd.img'])
      t.true(files.includes(f), `${f} was not served over tftp: ${JSON.stringify(files)}`);
    t.like(ofType(events, 'grub-script').at(-1)?.detail, { outcome: 'boot', profile: 'lab-test-os', secureBoot: true });
    t.truthy(ofType(events, 'http-cloud-config')[0], 'the test OS did not fetch its cloud-config');
    t.falsy(ofType(events, 'boot-diagnosis')[0], 'a diagnosis for a machine that booted');
    // Proxy mode: the address and the next-server came from dnsmasq, the boot files from us.
    if (mode === 'proxy') t.regex(readFileSync(lab.upstreamLogPath, 'utf8'), new RegExp(`next server: ${lab.serverAddress.replace(/\./g, '\\.')}`));
  });
}

test('OVMF Secure Boot in proxy mode beside a DHCP server whose next-server is itself: grub asks it, and the timeline says so', async (t) => {
  await vmSlot(t, BOOT_TIMEOUT_MS + 120_000);
  const lab = await newLab('proxy');
  const mac = '52:54:00:16:05:01';
  const appliance = await secureBootAppliance(t, lab, 'proxy', 'appliance-grub-elsewhere');
  const vm = await boot(t, lab, 'uefi-secureboot', mac);
  // shim (which reads the proxy offer) fetched grub from us; grub then went to dnsmasq.
  const diagnosis = await waitForEvent(
    appliance,
    mac,
    (e) => e.type === 'boot-diagnosis' && e.detail?.['problem'] === 'grub-asked-another-server',
    BOOT_TIMEOUT_MS,
    vm,
  );
  t.regex(vm.serial(), /Welcome to GRUB!/);
  t.like(diagnosis.detail, { file: 'grubx64.efi' });
  t.regex(String(diagnosis.detail?.['explanation']), /takes its tftp server from the dhcp server's ack/);
  t.regex(String(diagnosis.detail?.['fix']), new RegExp('next-server'));
  const events = await appliance.events(mac);
  t.true(ofType(events, 'tftp-file').some((e) => e.detail?.['file'] === 'grubx64.efi'));
  t.false(
    events.some((e) => /^\/?grub\//.test(String(e.detail?.['file'] ?? ''))),
    'grub asked the appliance after all',
  );
  // dnsmasq names itself as next-server: that is where grub went.
  t.regex(readFileSync(lab.upstreamLogPath, 'utf8'), new RegExp(`next server: ${lab.upstreamAddress.replace(/\./g, '\\.')}`));
  t.log(`uefi-secureboot proxy without next-server: diagnosed ${(vm.timeOf(/Welcome to GRUB!/)! / 1000).toFixed(1)} s + 30 s after VM start (grub started)`);
});

test("OVMF Secure Boot in proxy mode with Debian 13's grub, beside a DHCP server whose next-server is itself: grub reads the proxy offer and boots", async (t) => {
  await vmSlot(t, GRUB_TIMEOUT_MS + BOOT_TIMEOUT_MS + 120_000);
  const lab = await newLab('proxy');
  const mac = '52:54:00:16:05:02';
  const appliance = await startTestOsAppliance(lab, bootAssets(), { name: 'appliance-grub-trixie', args: ['--secure-boot'] });
  appliances.push(appliance);
  // Debian 12's shim, Debian 13's signed grub (fetch secureboot --release trixie).
  await fetchSecureBoot({ tftpRoot: appliance.home.tftpRoot, log: createSilentLogger() });
  const trixie = await fetchSecureBoot({ tftpRoot: join(appliance.home.tftpRoot, 'trixie'), release: 'trixie', log: createSilentLogger() });
  copyFileSync(trixie.find((f) => f.name === 'grubx64.efi')!.path, join(appliance.home.tftpRoot, 'grubx64.efi'));
  const vm = await boot(t, lab, 'uefi-secureboot', mac, {}, GRUB_TIMEOUT_MS);
  const serial = await bootToCloudConfig(t, vm, 'uefi-secureboot proxy, debian 13 grub, no next-server', GRUB_TIMEOUT_MS);
  t.regex(serial, /secureboot: Secure boot enabled/);
  const files = ofType(await appliance.events(mac), 'tftp-file').map((e) => e.detail?.['file']);
  for (const f of ['grubx64.efi', 'grub/grub.cfg', `grub/machines/x86_64/${mac}.cfg`, 'assets/vmlinuz'])
    t.true(files.includes(f), `${f} was not served over tftp: ${JSON.stringify(files)}`);
  // dnsmasq named itself as next-server; grub asked the appliance anyway (the proxy offer).
  t.regex(readFileSync(lab.upstreamLogPath, 'utf8'), new RegExp(`next server: ${lab.upstreamAddress.replace(/\./g, '\\.')}`));
});

for (const mode of MODES) {
  test(`OVMF Secure Boot handed unsigned iPXE (${MODE_LABEL[mode]}): refused, and the timeline says why`, async (t) => {
    await vmSlot(t, BOOT_TIMEOUT_MS + 90_000);
    const lab = await newLab(mode);
    const mac = mode === 'proxy' ? '52:54:00:16:03:01' : '52:54:00:16:03:02';
    const appliance = await startTestOsAppliance(lab, bootAssets(), {
      name: `appliance-refused-${mode}`,
      args: modeArgs(mode),
      machines: [{ mac, secureBoot: false }],
    });
    appliances.push(appliance);
    // No PXEv6 (nothing answers DHCPv6 here): after the refusal the firmware goes on to HTTPv4.
    const vm = await boot(t, lab, 'uefi-secureboot', mac, { extraArgs: ['-fw_cfg', 'name=opt/org.tianocore/IPv6PXESupport,string=n'] });
    await vm.waitFor(/Access Denied/, BOOT_TIMEOUT_MS);
    const diagnosis = await waitForEvent(
      appliance,
      mac,
      (e) => e.type === 'boot-diagnosis' && e.detail?.['problem'] === 'unsigned-loader-refused',
      120_000,
      vm,
    );
    t.like(diagnosis.detail, { file: 'snponly.efi' });
    t.regex(String(diagnosis.detail?.['explanation']), /secure boot firmware refuses unsigned ipxe/);
    t.regex(String(diagnosis.detail?.['fix']), /fetch secureboot/);
    t.log(`uefi-secureboot unsigned ipxe ${mode}: refused, diagnosed ${(vm.timeOf(/Access Denied/)! / 1000).toFixed(1)} s after VM start (Access Denied)`);
  });
}
