/**
 * A VM boots the real Debian 12 installer (from the Debian package, `fetch debian-installer`)
 * through the real appliance: SeaBIOS + iPXE ROM -> ProxyDHCP -> /ipxe (the shipped
 * debian-installer profile) -> linux + initrd.gz over HTTP -> the installer configures its
 * network and fetches its per-machine preseed from /preseed?mac=. The install itself needs a
 * Debian mirror the lab does not have, so the test ends when the preseed was fetched. The boot
 * is a one-shot install, so the preseed the installer fetched (from its own DHCP address)
 * carried the provisioning's callback, which a stranger's copy would not (callback-grant.ts).
 */
import test from 'ava';
import { fetchDebianInstaller } from '../../src/fetch/debian-installer.js';
import { startTestOsAppliance, type LabAppliance } from '../../src/lab/appliance.js';
import { DEFAULT_CLOUD_CONFIG } from '../../src/lab/baseline.js';
import { buildTestInitrd } from '../../src/lab/initrd.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import { startVm, type Vm } from '../../src/lab/qemu.js';
import { createSilentLogger } from '../../src/log.js';
import { DEBIAN_INSTALLER_PROFILE } from '../../src/store/defaults.js';

const MAC = '52:54:00:a5:14:d1';
const PRESEED_TIMEOUT_MS = 360_000;
const CALLBACK_TOKEN = 'd1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1';

let lab: Lab | undefined;
let appliance: LabAppliance | undefined;
let vm: Vm | undefined;

test.before(async () => {
  assertLabPrerequisites('bios');
  const initrd = buildTestInitrd();
  lab = await createLab({ ipv6Router: true, keepWorkDir: process.env['NETBOOT_LAB_KEEP'] === '1' });
  const started = await startTestOsAppliance(
    lab,
    { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG },
    {
      // The shipped profile, plus a name server answer: the lab's plain DHCP server hands out none
      // (a LAN's DHCP server normally does), and netcfg would stop to ask for one. The appliance's
      // address stands in; the preseed URL is an IP literal anyway.
      profiles: [
        {
          ...DEBIAN_INSTALLER_PROFILE,
          cmdline: { ...(DEBIAN_INSTALLER_PROFILE.cmdline as Record<string, string | string[]>), 'netcfg/get_nameservers': '{{ address }}' },
        },
      ],
      // A one-shot install, as `POST /api/machines/MAC/boot` leaves it (then: local-disk).
      machines: [
        {
          mac: MAC,
          hostname: 'di-vm',
          profile: 'local-disk',
          nextBoot: { profile: DEBIAN_INSTALLER_PROFILE.id, setAt: new Date().toISOString(), token: CALLBACK_TOKEN },
          vars: { mirror_host: 'mirror.invalid' },
        },
      ],
    },
  );
  appliance = started;
  // What `node bin/appliance fetch debian-installer` does, into the lab appliance's assets.
  await fetchDebianInstaller({ assetsDir: started.home.assets, log: createSilentLogger() });
});

test.after.always(async () => {
  await vm?.kill();
  await appliance?.stop();
  await lab?.destroy();
});

test('SeaBIOS + iPXE boots the packaged Debian installer through the appliance, which fetches its preseed', async (t) => {
  t.timeout(PRESEED_TIMEOUT_MS + 60_000);
  vm = await startVm(lab!, { firmware: 'bios', mac: MAC, memoryMiB: 1024, timeoutMs: PRESEED_TIMEOUT_MS + 30_000 });
  const until = Date.now() + PRESEED_TIMEOUT_MS;
  let events = await appliance!.events(MAC);
  while (!events.some((e) => e.type === 'http-preseed')) {
    if (Date.now() > until || vm.stoppedBy() !== undefined) break;
    await new Promise((r) => setTimeout(r, 3000));
    events = await appliance!.events(MAC);
  }
  const preseed = events.find((e) => e.type === 'http-preseed');
  t.truthy(
    preseed,
    `the installer never fetched its preseed; events: ${JSON.stringify(events.map((e) => [e.type, e.detail]))}\nconsole tail:\n${vm.serial().slice(-3000)}`,
  );
  // The installer's own request (its DHCP address) was given the callback for its late_command.
  t.like(preseed?.detail, { profile: 'debian-installer', template: 'debian.preseed.njk', callback: 'granted' });
  const script = events.find((e) => e.type === 'http-script' && e.detail?.['outcome'] === 'boot');
  t.like(script?.detail, { profile: 'debian-installer', via: 'once', oneShot: 'consumed', callback: 'granted' });
  t.deepEqual(
    events.filter((e) => e.type === 'state').map((e) => e.detail?.['to']),
    ['provisioning'],
  );
  const assets = events.filter((e) => e.type === 'http-asset').map((e) => String(e.detail?.['file'] ?? e.detail?.['path'] ?? ''));
  t.true(assets.some((a) => a.endsWith('/linux')) && assets.some((a) => a.endsWith('/initrd.gz')), JSON.stringify(assets));
  // The installer's kernel ran with the profile's command line (console=ttyS0 shows it).
  t.regex(vm.serial(), /auto=true priority=critical url=http:\/\/[0-9.]+:8080\/preseed\?mac=52:54:00:a5:14:d1/);
  t.log(`preseed fetched ${((Date.parse(preseed!.at) - Date.parse(events[0]!.at)) / 1000).toFixed(0)} s after the first event`);
});
