import test from 'ava';
import { decodePacket } from '../../src/dhcp/packet.js';
import { snoopRequest } from '../../src/dhcp/request-snoop.js';
import { fixture } from './helpers.js';

test('the captured iPXE REQUEST to the other DHCP server names the address it takes', (t) => {
  const packet = decodePacket(fixture('ipxe-bios-rom-request'));
  const seen = snoopRequest(packet, '10.255.255.1');
  t.truthy(seen);
  t.is(seen!.mac, packet.chaddr.subarray(0, 6).toString('hex').match(/../g)!.join(':'));
  t.regex(seen!.ip, /^\d+\.\d+\.\d+\.\d+$/);
  t.regex(seen!.server, /^\d+\.\d+\.\d+\.\d+$/);
  // A request to us is ours to answer, not a sighting; DISCOVERs and non-PXE clients are neither.
  t.is(snoopRequest(packet, seen!.server), undefined);
  t.is(snoopRequest(decodePacket(fixture('ipxe-bios-rom-discover')), '10.255.255.1'), undefined);
  t.is(snoopRequest(decodePacket(fixture('busybox-udhcpc-discover')), '10.255.255.1'), undefined);
  t.is(snoopRequest(decodePacket(fixture('edk2-ovmf-x64-request')), '10.255.255.1')?.mac, clientOf('edk2-ovmf-x64-request'));
});

function clientOf(name: string): string {
  return decodePacket(fixture(name)).chaddr.subarray(0, 6).toString('hex').match(/../g)!.join(':');
}
