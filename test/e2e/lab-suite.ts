/**
 * The setup the e2e files that boot the busybox test OS through the appliance share: the
 * prerequisites checked (a missing one fails every test, never skips), the test OS built once,
 * and every lab, appliance and VM a test made removed after the file.
 */
import type { ExecutionContext, TestFn } from 'ava';
import { assertApplianceBuilt, type LabAppliance } from '../../src/lab/appliance.js';
import { DEFAULT_CLOUD_CONFIG, type BootAssets } from '../../src/lab/baseline.js';
import type { BootEvent } from '../../src/events.js';
import { buildTestInitrd, MARKERS } from '../../src/lab/initrd.js';
import type { Lab } from '../../src/lab/netns.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import type { Firmware, Vm } from '../../src/lab/qemu.js';

/** `NETBOOT_LAB_KEEP=1` keeps the labs' work directories (logs) for a look after the run. */
export const KEEP_LABS = process.env['NETBOOT_LAB_KEEP'] === '1';

/** What a suite tracks: push what a test makes, the suite removes it after the file. */
export interface LabSuite {
  /** The test OS (kernel, initrd, cloud-config); throws when test.before did not build it. */
  assets(): BootAssets;
  labs: Lab[];
  appliances: LabAppliance[];
  vms: Vm[];
}

/** Register the file's before (prerequisites for `firmware` and `more`, the test OS) and after.always hooks. */
export function labSuite(test: TestFn, firmware: 'bios' | 'uefi' | 'both', more: readonly Firmware[] = []): LabSuite {
  let assets: BootAssets | undefined;
  const suite: LabSuite = {
    assets() {
      if (!assets) throw new Error('test.before did not build the test OS');
      return assets;
    },
    labs: [],
    appliances: [],
    vms: [],
  };
  test.before(() => {
    assertLabPrerequisites(firmware, more);
    assertApplianceBuilt();
    const initrd = buildTestInitrd();
    assets = { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG };
  });
  test.after.always(async () => {
    await Promise.all(suite.vms.map((v) => v.kill()));
    await Promise.all(suite.appliances.map((a) => a.stop()));
    await Promise.all(suite.labs.map((l) => l.destroy()));
  });
  return suite;
}

/** The events of one type. */
export function ofType(events: readonly BootEvent[], type: BootEvent['type']): BootEvent[] {
  return events.filter((e) => e.type === type);
}

/** Wait for the cloud-config marker and for the test OS to power off; logs the seconds taken; resolves with the console. */
export async function bootToCloudConfig(t: ExecutionContext, vm: Vm, label: string, timeoutMs: number): Promise<string> {
  const fetched = await vm.waitFor(new RegExp(MARKERS.cloudConfigFetched), timeoutMs);
  await vm.waitFor(new RegExp(MARKERS.done), 30_000);
  const exit = await Promise.race([vm.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000).unref())]);
  t.is(exit?.code, 0, `${vm.name} did not power off cleanly`);
  t.log(`${label}: VM start to cloud-config fetched ${(fetched.elapsedMs / 1000).toFixed(1)} s`);
  return vm.serial();
}

/** What the test OS printed between its cloud-config markers ('' when they are missing). */
export function cloudConfigBody(serial: string): string {
  const begin = serial.indexOf(MARKERS.cloudConfigBegin);
  const end = serial.indexOf(MARKERS.cloudConfigEnd);
  if (begin < 0 || end < begin) return '';
  return serial
    .slice(begin + MARKERS.cloudConfigBegin.length, end)
    .replace(/\r/g, '')
    .trim();
}
