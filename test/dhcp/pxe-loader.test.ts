/**
 * The boot-loader hook of the DHCP decisions (pxe.ts `chooseBootFile`, used by the proxy and the
 * server policies): captured EDK2 requests get shim or grub when the chooser says so, iPXE is
 * never asked, and a refused client gets no boot data.
 */
import test from 'ava';
import { decodePacket } from '../../src/dhcp/packet.js';
import { bootOptions, bootRefusal, buildProxyReply, classify, type BootConfig, type BootDecision, type BootFileChooser } from '../../src/dhcp/pxe.js';
import { chooseLoader } from '../../src/boot/loader.js';
import { parseDb } from '../../src/store/schema.js';
import { fixture } from './helpers.js';

const SERVER = '10.77.0.1';

function decision(name: string, port: 'dhcp' | 'proxy'): BootDecision {
  const d = classify(decodePacket(fixture(name)), { port, serverAddress: SERVER });
  if (d.kind !== 'boot') throw new Error(`${name}: ${d.reason}`);
  return d;
}

test('the chooser names the file of the 4011 ACK (EDK2 fixture): shim for secure boot', (t) => {
  const asked: string[] = [];
  const chooser: BootFileChooser = (b) => {
    asked.push(`${b.mac} ${b.firmware} ${b.client}`);
    return { kind: 'file', file: 'shimx64.efi' };
  };
  const config: BootConfig = { serverAddress: SERVER, httpPort: 8080, chooseBootFile: chooser };
  const req = decodePacket(fixture('edk2-ovmf-x64-request-4011'));
  const reply = buildProxyReply(req, decision('edk2-ovmf-x64-request-4011', 'proxy'), config);
  t.is(reply.file, 'shimx64.efi');
  t.is(reply.packet.file, 'shimx64.efi');
  t.is(asked.length, 1);
  t.regex(asked[0]!, / efi-x64 pxe$/);
});

test('undefined from the chooser keeps the default iPXE file; iPXE clients are never asked', (t) => {
  let calls = 0;
  const config: BootConfig = { serverAddress: SERVER, httpPort: 8080, chooseBootFile: () => (calls++, { kind: 'file', file: undefined }) };
  t.is(bootOptions(decision('edk2-ovmf-x64-request-4011', 'proxy'), config).file, 'snponly.efi');
  t.is(bootOptions(decision('ipxe-efi-snponly-request-4011', 'proxy'), config).file, 'http://10.77.0.1:8080/boot.ipxe');
  t.is(bootRefusal(decision('ipxe-efi-snponly-request-4011', 'proxy'), config), undefined);
  t.is(calls, 1);
});

test('a refusal is reported for firmware clients only', (t) => {
  const config: BootConfig = { serverAddress: SERVER, httpPort: 8080, chooseBootFile: () => ({ kind: 'refuse', reason: 'no http in signed grub' }) };
  t.is(bootRefusal(decision('edk2-ovmf-x64-discover', 'dhcp'), config), 'no http in signed grub');
  t.is(bootRefusal(decision('ipxe-efi-snponly-discover', 'dhcp'), config), undefined);
});

test('wired to chooseLoader: a secureBoot machine record gets shim, others snponly.efi', (t) => {
  const req = decodePacket(fixture('edk2-ovmf-x64-request-4011'));
  const d = decision('edk2-ovmf-x64-request-4011', 'proxy');
  const chooserFor =
    (secure: boolean): BootFileChooser =>
    (b) => {
      const db = parseDb({ machines: [{ mac: b.mac, secureBoot: secure }] });
      const c = chooseLoader(db, { mac: b.mac, firmware: b.firmware, client: b.client === 'ipxe' ? 'pxe' : b.client }, false);
      return c.kind === 'refuse' ? { kind: 'refuse', reason: c.reason } : { kind: 'file', file: c.file };
    };
  t.is(buildProxyReply(req, d, { serverAddress: SERVER, httpPort: 8080, chooseBootFile: chooserFor(true) }).file, 'shimx64.efi');
  t.is(buildProxyReply(req, d, { serverAddress: SERVER, httpPort: 8080, chooseBootFile: chooserFor(false) }).file, 'snponly.efi');
});
