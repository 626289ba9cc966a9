/**
 * The real-firmware VM lab: network namespaces with a bridge and a plain DHCP server, QEMU VMs
 * (SeaBIOS + iPXE ROM, or OVMF with EDK2's own PXE), a busybox test OS that behaves like
 * RancherOS, the dnsmasq reference boot server, and the boot-time bench.
 */
export { createLab, reapStaleLabs, type Lab, type LabOptions } from './netns.js';
export { startVm, randomMac, buildQemuArgs, type Vm, type VmOptions, type WaitResult, type Firmware } from './qemu.js';
export { buildTestInitrd, findTestKernel, MARKERS, VIRTIO_NET_MODULES, type TestInitrd, type TestKernel } from './initrd.js';
export {
  startDnsmasqBaseline,
  renderBootScript,
  DEFAULT_CLOUD_CONFIG,
  type BootAssets,
  type BootServer,
  type StartBootServer,
  type BaselineServer,
} from './baseline.js';
export { startProcessBootServer, type ProcessBootServerOptions } from './process-server.js';
export { runBootScenario, bootPhases, type BootPhase, type BootScenarioOptions, type BootScenarioResult } from './scenario.js';
export { runBench, summarizeBench, formatBenchSummary, DNSMASQ_BASELINE, type BenchVariant, type BenchRow, type BenchSummary } from './bench.js';
export { checkLabPrerequisites, assertLabPrerequisites, type MissingPrerequisite } from './prereqs.js';
export { startLabSession, type LabSession, type LabSessionOptions, type SessionVmSpec } from './session.js';
export {
  startApplianceInLab,
  startTestOsAppliance,
  writeTestOsHome,
  testOsProfile,
  assertApplianceBuilt,
  cleanApplianceEnv,
  APPLIANCE_BIN,
  APPLIANCE_VARIANT,
  TEST_OS_PROFILE_ID,
  TEST_OS_CMDLINE,
  TEST_OS_CLOUD_CONFIG_TEMPLATE,
  type LabAppliance,
  type ApplianceHome,
  type StartApplianceOptions,
  type TestOsHomeOptions,
} from './appliance.js';
export { runLabCommand, LAB_USAGE, LAB_EXIT, type LabCommandIo } from './command.js';
