/**
 * Issue 16, IPv6, end to end through the real appliance (`node bin/appliance`, built dist/):
 * OVMF with only PXEv6 (PXEv4 switched off by fw_cfg) boots the busybox test OS.
 *
 *  - Proxy mode beside dnsmasq (dual stack: dnsmasq leases IPv4 and stateful IPv6 and sends the
 *    RA with the M flag; the appliance runs ProxyDHCP on IPv4 and --dhcp6-mode proxy): OVMF's
 *    PXE Solicit gets our address-less Advertise (vendor class PXEClient + option 59), OVMF
 *    leases from dnsmasq, asks port 4011 of the URL's host, gets
 *    tftp://[fd99:X::1]/snponly.efi, fetches it over TFTP on IPv6; iPXE then gets its script
 *    URL from the IPv4 ProxyDHCP (iPXE ignores DHCPv6 Advertises without an address: README,
 *    IPv6) -> profile -> kernel, initrd, cloud-config.
 *  - Server mode on an IPv6-only segment (--dhcp-mode off --dhcp6-mode server): the appliance
 *    sends the RA (M and O flags) and leases the address; OVMF boots option 59 directly;
 *    iPXE does DHCPv6 itself (user class iPXE) and chains http://[fd99:X::1]:8080/boot.ipxe;
 *    every script URL is IPv6; the test OS (no DHCPv6 client) takes a SLAAC address from our
 *    RA and fetches its cloud-config over IPv6.
 *
 * One VM at a time (run under `flock /tmp/netboot-qemu.lock`). A missing prerequisite fails.
 */
import test, { type ExecutionContext } from 'ava';
import { startTestOsAppliance, type LabAppliance } from '../../src/lab/appliance.js';
import { createLab, type Lab } from '../../src/lab/netns.js';
import { startVm, type Vm } from '../../src/lab/qemu.js';
import { IPXE_STARTED } from '../../src/lab/scenario.js';
import { parseIpv6, sameIpv6Prefix } from '../../src/dhcp6/address.js';
import type { BootEvent } from '../../src/events.js';
import { bootToCloudConfig, KEEP_LABS, labSuite, ofType } from './lab-suite.js';

const BOOT_TIMEOUT_MS = 240_000;

const suite = labSuite(test, 'uefi', ['uefi-ipv6']);

async function setUp(t: ExecutionContext, mode: 'proxy' | 'server', mac: string): Promise<{ lab: Lab; appliance: LabAppliance; vm: Vm; address6: string }> {
  const lab = await createLab({ upstreamDhcp: mode === 'proxy', ipv6: true, keepWorkDir: KEEP_LABS });
  suite.labs.push(lab);
  const address6 = lab.serverAddress6!;
  const appliance = await startTestOsAppliance(lab, suite.assets(), {
    name: `appliance-ipv6-${mode}`,
    args: ['--address6', address6, ...(mode === 'proxy' ? ['--dhcp6-mode', 'proxy'] : ['--dhcp-mode', 'off', '--dhcp6-mode', 'server'])],
  });
  suite.appliances.push(appliance);
  const vm = await startVm(lab, { firmware: 'uefi-ipv6', mac, timeoutMs: BOOT_TIMEOUT_MS + 30_000 });
  suite.vms.push(vm);
  t.teardown(() => vm.kill());
  return { lab, appliance, vm, address6 };
}

test.serial('OVMF PXEv6, proxy mode beside dnsmasq: proxy Advertise, 4011 Reply, snponly.efi over TFTP on IPv6, iPXE, cloud-config', async (t) => {
  t.timeout(BOOT_TIMEOUT_MS + 120_000);
  const mac = '52:54:00:16:06:01';
  const { appliance, vm, address6 } = await setUp(t, 'proxy', mac);
  const serial = await bootToCloudConfig(t, vm, 'uefi-ipv6 proxy', BOOT_TIMEOUT_MS);
  t.regex(serial, /UEFI PXEv6/);
  t.regex(serial, IPXE_STARTED);
  t.true(serial.includes(`netboot-appliance: booting lab-test-os on ${mac}`), 'the profile script did not run');
  const events = await appliance.events(mac);
  const url = `tftp://[${address6}]/snponly.efi`;
  t.true(
    ofType(events, 'dhcp6-advertise').some((e) => e.detail?.['bootUrl'] === url && e.detail?.['message'] === 'proxy advertise'),
    `no proxy advertise in ${JSON.stringify(events.map((e) => [e.type, e.detail]))}`,
  );
  t.true(
    ofType(events, 'dhcp6-reply').some((e) => e.detail?.['bootUrl'] === url && e.detail?.['message'] === 'proxy boot-server reply (4011)'),
    'EDK2 did not complete on port 4011',
  );
  // A transfer whose final ACK never came is recorded only when its retries run out (after
  // iPXE may already have fetched the cloud-config): wait for the record a little.
  let all: BootEvent[] = [];
  let tftp: BootEvent | undefined;
  for (let i = 0; i < 40 && !tftp; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 500));
    all = (await appliance.getJson('/api/events?limit=1000')) as BootEvent[];
    tftp = ofType(all, 'tftp-file').find((e) => e.detail?.['file'] === 'snponly.efi');
  }
  t.truthy(tftp, `snponly.efi was not served: ${JSON.stringify(all.filter((e) => e.type.startsWith('tftp')).map((e) => [e.type, e.ip, e.detail]))}`);
  t.truthy(tftp?.ip && parseIpv6(tftp.ip), `snponly.efi went over ipv4 (${tftp?.ip})`);
  t.truthy(ofType(events, 'http-cloud-config')[0], 'the test OS did not fetch its cloud-config');
});

test.serial(
  'OVMF PXEv6, the appliance as DHCPv6 server with RAs on an IPv6-only segment: iPXE DHCPv6, http://[addr]/ scripts, cloud-config over IPv6',
  async (t) => {
    t.timeout(BOOT_TIMEOUT_MS + 120_000);
    const mac = '52:54:00:16:06:02';
    const { appliance, vm, address6 } = await setUp(t, 'server', mac);
    const serial = await bootToCloudConfig(t, vm, 'uefi-ipv6 server', BOOT_TIMEOUT_MS);
    t.true(serial.includes(`netboot-appliance: booting lab-test-os on ${mac}`), 'the profile script did not run');
    t.true(serial.includes(`http://[${address6}]:8080/`), 'iPXE did not chain over IPv6');
    const events = await appliance.events(mac);
    const bound = ofType(events, 'dhcp6-reply').filter((e) => e.detail?.['message'] === 'reply (bound)');
    t.true(
      bound.some((e) => e.detail?.['bootUrl'] === `tftp://[${address6}]/snponly.efi`),
      `OVMF was not bound with the tftp url: ${JSON.stringify(events.map((e) => [e.type, e.detail]))}`,
    );
    t.true(
      bound.some((e) => e.detail?.['client'] === 'ipxe' && e.detail?.['bootUrl'] === `http://[${address6}]:8080/boot.ipxe`),
      'iPXE did not get the script url by DHCPv6',
    );
    for (const e of bound) t.true(sameIpv6Prefix(parseIpv6(String(e.ip))!, parseIpv6(address6)!, 64), `leased ${e.ip} outside the lab prefix`);
    const cloudConfig = ofType(events, 'http-cloud-config')[0];
    t.truthy(cloudConfig, 'the test OS did not fetch its cloud-config');
    t.truthy(parseIpv6(String(cloudConfig?.ip)), `cloud-config was fetched over ipv4 (${cloudConfig?.ip})`);
  },
);
