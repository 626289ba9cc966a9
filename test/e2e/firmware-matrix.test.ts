/**
 * Issue 16, end to end: the firmware paths beyond SeaBIOS+iPXE and OVMF PXE, each booted once
 * through the real appliance (`node bin/appliance`, built dist/), never through dnsmasq (which
 * only hands out addresses in the proxy-mode labs):
 *
 *  - OVMF UEFI HTTP boot (PXE switched off, vendor class HTTPClient, arch 16) in proxy mode
 *    beside dnsmasq: option 60 HTTPClient + http://APPLIANCE/boot/snponly.efi, then iPXE,
 *    kernel, initrd, cloud-config.
 *
 * Each case makes its own lab (namespaces, bridge, taps) and removes it; at most two VMs run at
 * once. A missing prerequisite (qemu, OVMF, AAVMF, iPXE, kernel, root, signed packages, an
 * unbuilt dist/) fails, never skips. `NETBOOT_LAB_KEEP=1` keeps the labs' work directories.
 * The seconds each path took are printed (t.log) and kept in the README's firmware table.
 */
import test, { type ExecutionContext } from 'ava';
import { assertApplianceBuilt, startTestOsAppliance, type LabAppliance } from '../../src/lab/appliance.js';
import { DEFAULT_CLOUD_CONFIG, type BootAssets } from '../../src/lab/baseline.js';
import { buildTestInitrd, MARKERS } from '../../src/lab/initrd.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import { startVm, type Firmware, type Vm } from '../../src/lab/qemu.js';
import type { BootEvent } from '../../src/events.js';

const KEEP = process.env['NETBOOT_LAB_KEEP'] === '1';
const BOOT_TIMEOUT_MS = 240_000;

let assets: BootAssets | undefined;
const labs: Lab[] = [];
const appliances: LabAppliance[] = [];
const vms: Vm[] = [];

test.before(() => {
  assertLabPrerequisites('uefi');
  assertApplianceBuilt();
  const initrd = buildTestInitrd();
  assets = { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG };
});

test.after.always(async () => {
  await Promise.all(vms.map((v) => v.kill()));
  await Promise.all(appliances.map((a) => a.stop()));
  await Promise.all(labs.map((l) => l.destroy()));
});

function bootAssets(): BootAssets {
  if (!assets) throw new Error('test.before did not build the test OS');
  return assets;
}

async function newLab(options: { upstreamDhcp: boolean }): Promise<Lab> {
  const lab = await createLab({ upstreamDhcp: options.upstreamDhcp, ipv6Router: options.upstreamDhcp, keepWorkDir: KEEP });
  labs.push(lab);
  return lab;
}

async function boot(t: ExecutionContext, lab: Lab, firmware: Firmware, mac: string): Promise<Vm> {
  const vm = await startVm(lab, { firmware, mac, timeoutMs: BOOT_TIMEOUT_MS + 30_000 });
  vms.push(vm);
  t.teardown(() => vm.kill());
  return vm;
}

function ofType(events: readonly BootEvent[], type: BootEvent['type']): BootEvent[] {
  return events.filter((e) => e.type === type);
}

/** Wait for the cloud-config marker and for the test OS to power off; logs the seconds taken. */
async function bootToCloudConfig(t: ExecutionContext, vm: Vm, label: string): Promise<string> {
  const fetched = await vm.waitFor(new RegExp(MARKERS.cloudConfigFetched), BOOT_TIMEOUT_MS);
  await vm.waitFor(new RegExp(MARKERS.done), 30_000);
  const exit = await Promise.race([vm.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000).unref())]);
  t.is(exit?.code, 0, `${vm.name} did not power off cleanly`);
  t.log(`${label}: VM start to cloud-config fetched ${(fetched.elapsedMs / 1000).toFixed(1)} s`);
  return vm.serial();
}

test('OVMF UEFI HTTP boot (proxy mode beside dnsmasq): HTTPClient offer, snponly.efi over HTTP, iPXE, cloud-config', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 90_000);
  const lab = await newLab({ upstreamDhcp: true });
  const appliance = await startTestOsAppliance(lab, bootAssets(), { name: 'appliance-http-boot' });
  appliances.push(appliance);
  const mac = '52:54:00:16:01:01';
  const vm = await boot(t, lab, 'uefi-http', mac);
  const serial = await bootToCloudConfig(t, vm, 'uefi-http proxy');
  // OVMF printed the URL it got from our offer, then iPXE started from it.
  t.regex(serial, new RegExp(`URI: http://${lab.serverAddress.replace(/\./g, '\\.')}:8080/boot/snponly\\.efi`));
  t.regex(serial, /iPXE initialising devices/);
  t.true(serial.includes(`netboot-appliance: booting lab-test-os on ${mac}`), 'the profile script did not run');
  const events = await appliance.events(mac);
  const offer = ofType(events, 'dhcp-offer').find((e) => e.detail?.['file'] === `${appliance.baseUrl}/boot/snponly.efi`);
  t.truthy(offer, `no offer of the http boot url in ${JSON.stringify(events.map((e) => [e.type, e.detail]))}`);
  // In proxy mode the address came from dnsmasq, so the HTTP fetch of the NBP is not tied to
  // the MAC yet (the timeline keeps it under the client's address).
  const all = (await appliance.getJson('/api/events?limit=1000')) as BootEvent[];
  t.true(
    ofType(all, 'http-asset').some((e) => e.detail?.['via'] === 'http-boot' && e.detail?.['file'] === 'snponly.efi'),
    'snponly.efi was not fetched over http',
  );
  t.is(ofType(events, 'tftp-file').length, 0, 'an http boot client used tftp');
});
