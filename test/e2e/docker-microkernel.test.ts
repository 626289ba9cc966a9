/**
 * The discovery image under a real container engine: a Debian + docker.io stand-in for
 * RancherOS (src/lab/docker-standin.ts; root on a virtio disk, kernel and initrd netbooted from
 * the real appliance) takes the RancherOS cloud-config the appliance renders, and its rc.local
 * (written by the appliance) waits for dockerd, downloads the image built by
 * `node bin/appliance build microkernel` from the appliance, checks its sha256, `docker load`s
 * it and runs it `--privileged --net=host` with /proc, /sys and /dev at /host-*. The agent's
 * facts, sent with the cloud-config's facts token, reach the API verified and match a group.
 */
import test from 'ava';
import { APPLIANCE_BIN, startTestOsAppliance, testOsProfile, type ApplianceHome, type LabAppliance } from '../../src/lab/appliance.js';
import { buildDockerStandin, STANDIN_MARKERS, type DockerStandin } from '../../src/lab/docker-standin.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { assertLabPrerequisites } from '../../src/lab/prereqs.js';
import { runCommand } from '../../src/lab/process.js';
import { startVm } from '../../src/lab/qemu.js';
import { MICROKERNEL_ASSET, MICROKERNEL_REF } from '../../src/image/microkernel.js';

const MAC = '52:54:00:a5:14:0d';
const TIMEOUT_MS = 8 * 60_000;

let lab: Lab | undefined;
let appliance: (LabAppliance & { home: ApplianceHome }) | undefined;
let standin: DockerStandin | undefined;

test.before(async () => {
  assertLabPrerequisites('bios');
  for (const tool of ['mmdebstrap', 'mke2fs'])
    await runCommand('sh', ['-c', `command -v ${tool}`]).catch(() => {
      throw new Error(`${tool} is not installed (Debian mmdebstrap, e2fsprogs); run scripts/install`);
    });
  standin = await buildDockerStandin();
  lab = await createLab({ ipv6Router: true, keepWorkDir: process.env['NETBOOT_LAB_KEEP'] === '1' });
  appliance = await startTestOsAppliance(
    lab,
    { kernelPath: standin.kernel.path, initrdPath: standin.initrd, cloudConfig: '#cloud-config\n' },
    {
      profiles: [
        {
          ...testOsProfile('docker-standin', { name: 'RancherOS stand-in (Debian + docker.io)', cloudConfig: 'rancheros.cloud-config.yaml.njk' }),
          vars: { microkernel: { image: `/assets/${MICROKERNEL_ASSET}`, name: 'discovery', ref: MICROKERNEL_REF } },
        },
      ],
      machines: [{ mac: MAC, hostname: 'docker-vm' }],
      groups: [
        { id: 'this-vm', profile: 'docker-standin', selector: { mac: MAC } },
        { id: 'qemu-from-docker', profile: 'local-disk', selector: { facts: ['dmi.vendor == QEMU', 'agent.name == netboot-discover'] } },
      ],
    },
  );
  // The image, built here from Debian packages (its root filesystem is cached by build microkernel).
  await runCommand(process.execPath, [APPLIANCE_BIN, 'build', 'microkernel', '--assets', appliance.home.assets, '--log-level', 'warn'], {
    timeoutMs: 20 * 60_000,
  });
});

test.after.always(async () => {
  await appliance?.stop();
  await lab?.destroy();
});

test('docker.io in a netbooted VM loads the discovery image from the appliance, checks its sha256, runs it privileged with the host mounts; its facts reach the API verified', async (t) => {
  t.timeout(TIMEOUT_MS + 60_000);
  const vm = await startVm(lab!, {
    firmware: 'bios',
    mac: MAC,
    memoryMiB: 2048,
    timeoutMs: TIMEOUT_MS,
    extraArgs: ['-drive', `file=${standin!.disk},if=virtio,format=raw,snapshot=on`],
  });
  t.teardown(() => vm.kill());
  const up = await vm.waitFor(new RegExp(STANDIN_MARKERS.dockerUp), TIMEOUT_MS);
  const ran = await vm.waitFor(new RegExp(`${STANDIN_MARKERS.containerExited} (\\d+)`), TIMEOUT_MS);
  await vm.waitFor(new RegExp(STANDIN_MARKERS.done), 60_000);
  const serial = vm.serial();
  t.false(serial.includes(STANDIN_MARKERS.failed), serial.slice(-3000));
  t.log(`VM start to dockerd up ${(up.elapsedMs / 1000).toFixed(0)} s, to the container's exit ${(ran.elapsedMs / 1000).toFixed(0)} s`);
  t.regex(serial, /netboot-microkernel: started discovery \(netboot\/discovery:1\)/);
  t.is(ran.match[1], '0', 'the agent exited non-zero');
  t.regex(serial, /discover: facts for 52:54:00:a5:14:0d posted/);
  // docker inspect: privileged, host network, the host's /proc, /dev, /sys read-only at /host-*.
  t.regex(serial, /true host .*\/proc:\/host-proc:false/);
  t.regex(serial, /\/sys:\/host-sys:false/);
  t.regex(serial, /\/dev:\/host-dev:false/);

  const machine = (await appliance!.getJson(`/api/machines/${MAC}`)) as {
    runtime: { factsVerified?: boolean };
    facts: { agent: { name: string }; dmi: { vendor: string }; nics: Array<{ mac: string }> };
  };
  t.true(machine.runtime.factsVerified, 'the facts came with the cloud-config token, from the address DHCP saw');
  t.is(machine.facts.agent.name, 'netboot-discover');
  t.is(machine.facts.dmi.vendor, 'QEMU');
  t.true(machine.facts.nics.some((n) => n.mac === MAC));
  const selection = (await appliance!.getJson(`/api/machines/${MAC}/selection`)) as { group: string; reasons: string[] };
  t.is(selection.group, 'qemu-from-docker');
  t.true(selection.reasons.includes('facts: dmi.vendor == QEMU (got "QEMU")'), JSON.stringify(selection));
  const events = await appliance!.events(MAC);
  t.true(events.some((e) => e.type === 'http-asset' && e.detail?.['file'] === `/assets/${MICROKERNEL_ASSET}`));
  t.true(events.some((e) => e.type === 'facts' && e.detail?.['verified'] === true));
});
