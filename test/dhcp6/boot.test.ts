import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootUrl6, decideProxy6, decideServer6, identify6, type Decision6, type Dhcp6Config } from '../../src/dhcp6/boot.js';
import { Lease6Pool } from '../../src/dhcp6/leases.js';
import {
  decodeIaNa,
  decodeMessage,
  decodeStatus,
  decodeVendorClass,
  encodeIaNa,
  encodeMessage,
  encodeUserClass,
  findOption,
  Msg6,
  Opt6,
  readClientMessage,
  Status6,
  type Message6,
} from '../../src/dhcp6/packet.js';
import { CLIENT_LINK_LOCAL, CLIENT_MAC, edk2Solicit, ipxeSolicit, SERVER_DUID } from './helpers.js';

const CONFIG: Dhcp6Config = { serverDuid: SERVER_DUID, address: 'fd00:126::1', httpPort: 8080, leaseSeconds: 3600, dns: ['fd00:126::53'] };
const NOW = Date.parse('2026-12-01T12:00:00Z');

const read = (m: Message6) => readClientMessage(decodeMessage(encodeMessage(m)));
function reply(d: Decision6): Message6 {
  if (d.kind !== 'reply') throw new Error(`expected a reply, got ignore: ${d.reason}`);
  // What goes on the wire decodes again.
  return decodeMessage(encodeMessage(d.reply));
}
const opt = (m: Message6, code: number) => findOption(m.options, code)?.data;
const pool = () => new Lease6Pool({ range: { start: 'fd00:126::100', end: 'fd00:126::103' }, leaseSeconds: 3600 });

test('identify6: PXE, iPXE, HTTPClient and plain clients; the MAC from the DUID or the EUI-64 link-local source', (t) => {
  t.like(identify6(read(edk2Solicit()), CLIENT_LINK_LOCAL), { client: 'pxe', arch: 7, mac: CLIENT_MAC, macSource: 'duid' });
  t.like(identify6(read(ipxeSolicit()), `${CLIENT_LINK_LOCAL}`), { client: 'ipxe', mac: CLIENT_MAC, macSource: 'link-local' });
  t.like(identify6(read(ipxeSolicit()), 'fd00:126::9'), { macSource: 'unknown', mac: '00:00:00:00:00:00' });
  const plain = read({ type: 1, transactionId: 1, options: [{ code: Opt6.CLIENT_ID, data: Buffer.from('000300015254000000aa', 'hex') }] });
  t.like(identify6(plain, CLIENT_LINK_LOCAL), { client: 'other', mac: '52:54:00:00:00:aa' });
});

test('boot URL option 59: tftp://[addr]/snponly.efi for PXEv6 arch 7 and 9, the HTTP script for iPXE, none for other arches', (t) => {
  t.is(bootUrl6({ client: 'pxe', arch: 7, mac: CLIENT_MAC, macSource: 'duid' }, CONFIG), 'tftp://[fd00:126::1]/snponly.efi');
  t.is(bootUrl6({ client: 'pxe', arch: 9, mac: CLIENT_MAC, macSource: 'duid' }, CONFIG), 'tftp://[fd00:126::1]/snponly.efi');
  t.is(bootUrl6({ client: 'ipxe', arch: 7, mac: CLIENT_MAC, macSource: 'duid' }, CONFIG), 'http://[fd00:126::1]:8080/boot.ipxe');
  t.is(bootUrl6({ client: 'http', arch: 16, mac: CLIENT_MAC, macSource: 'duid' }, CONFIG), 'http://[fd00:126::1]:8080/boot/snponly.efi');
  t.is(bootUrl6({ client: 'pxe', arch: 11, mac: CLIENT_MAC, macSource: 'duid' }, CONFIG), undefined);
  t.is(
    bootUrl6({ client: 'pxe', arch: 11, mac: CLIENT_MAC, macSource: 'duid' }, { ...CONFIG, chooseBootFile: () => 'grubaa64.efi' }),
    'tftp://[fd00:126::1]/grubaa64.efi',
  );
});

test('proxy: a PXE Solicit gets an Advertise with only vendor class PXEClient and the boot-file URL (an EDK2 proxy offer)', (t) => {
  const m = reply(decideProxy6(read(edk2Solicit()), CLIENT_LINK_LOCAL, 'dhcp', CONFIG));
  t.is(m.type, Msg6.ADVERTISE);
  t.is(m.transactionId, 0x123456);
  t.deepEqual(
    m.options.map((o) => o.code),
    [Opt6.SERVER_ID, Opt6.CLIENT_ID, Opt6.VENDOR_CLASS, Opt6.BOOTFILE_URL],
  );
  t.is(opt(m, Opt6.BOOTFILE_URL)?.toString(), 'tftp://[fd00:126::1]/snponly.efi');
  // EDK2's test: enterprise 343 and "PXEClient" at data offset 6 (after the item length).
  const vc = opt(m, Opt6.VENDOR_CLASS)!;
  t.is(vc.readUInt32BE(0), 343);
  t.is(vc.subarray(6, 15).toString(), 'PXEClient');
  t.is(findOption(m.options, Opt6.IA_NA), undefined, 'a proxy offers no address');
});

test("proxy: the 4011 Request naming our DUID gets a Reply with the boot-file URL; other servers' Requests are left alone", (t) => {
  const req = edk2Solicit([{ code: Opt6.SERVER_ID, data: SERVER_DUID }], Msg6.REQUEST);
  req.options = req.options.filter((o) => o.code !== Opt6.IA_NA);
  const m = reply(decideProxy6(read(req), 'fd00:126::150', 'proxy', CONFIG));
  t.is(m.type, Msg6.REPLY);
  t.is(opt(m, Opt6.BOOTFILE_URL)?.toString(), 'tftp://[fd00:126::1]/snponly.efi');
  t.is(decodeVendorClass(opt(m, Opt6.VENDOR_CLASS)!).items[0]?.toString(), 'PXEClient');
  const other = edk2Solicit([{ code: Opt6.SERVER_ID, data: Buffer.from('00030001aabbccddeeff', 'hex') }], Msg6.REQUEST);
  t.like(decideProxy6(read(other), 'fd00:126::150', 'proxy', CONFIG), { kind: 'ignore', reason: 'request for another server' });
});

test('proxy: iPXE Solicits, plain clients and lease messages are not answered; stateless iPXE gets the script URL', (t) => {
  t.like(decideProxy6(read(ipxeSolicit()), CLIENT_LINK_LOCAL, 'dhcp', CONFIG), { kind: 'ignore' });
  const plain = { type: 1, transactionId: 1, options: [{ code: Opt6.CLIENT_ID, data: SERVER_DUID.subarray(0) }] };
  t.like(decideProxy6(read(plain), CLIENT_LINK_LOCAL, 'dhcp', CONFIG), { kind: 'ignore' });
  for (const type of [Msg6.RENEW, Msg6.REBIND, Msg6.RELEASE, Msg6.CONFIRM])
    t.like(decideProxy6(read(edk2Solicit([], type)), CLIENT_LINK_LOCAL, 'dhcp', CONFIG), { kind: 'ignore' });
  const info = ipxeSolicit(Msg6.INFORMATION_REQUEST);
  info.options = info.options.filter((o) => o.code !== Opt6.IA_NA);
  const m = reply(decideProxy6(read(info), CLIENT_LINK_LOCAL, 'dhcp', CONFIG));
  t.is(opt(m, Opt6.BOOTFILE_URL)?.toString(), 'http://[fd00:126::1]:8080/boot.ipxe');
  t.like(decideProxy6(read({ type: 1, transactionId: 1, options: [] }), CLIENT_LINK_LOCAL, 'dhcp', CONFIG), {
    kind: 'ignore',
    reason: 'solicit without a client id',
  });
});

test('server: Solicit -> Advertise with an address, DNS and boot URL but no vendor class; Request binds it; Renew extends it', (t) => {
  const p = pool();
  const adv = reply(decideServer6(read(edk2Solicit()), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW));
  t.is(adv.type, Msg6.ADVERTISE);
  const ia = decodeIaNa(opt(adv, Opt6.IA_NA)!);
  t.is(ia.iaid, 0x01020304);
  t.is(ia.t1, 1800);
  t.is(ia.t2, 2880);
  const address = ia.addresses[0]!.address;
  t.true(p.inRange(address));
  t.is(opt(adv, Opt6.BOOTFILE_URL)?.toString(), 'tftp://[fd00:126::1]/snponly.efi');
  t.is(opt(adv, Opt6.DNS_SERVERS)?.length, 16);
  // EDK2 then counts it as "DHCP only with a boot file" and boots it without a 4011 round.
  t.is(findOption(adv.options, Opt6.VENDOR_CLASS), undefined);
  t.is(p.leases()[0]?.state, 'offered');

  const request = edk2Solicit([{ code: Opt6.SERVER_ID, data: SERVER_DUID }], Msg6.REQUEST);
  request.options = request.options.map((o) =>
    o.code === Opt6.IA_NA ? encodeIaNa({ iaid: 0x01020304, t1: 0, t2: 0, addresses: [{ address, preferredLifetime: 0, validLifetime: 0 }] }) : o,
  );
  const rep = reply(decideServer6(read(request), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW + 1000));
  t.is(rep.type, Msg6.REPLY);
  t.is(decodeIaNa(opt(rep, Opt6.IA_NA)!).addresses[0]?.address, address);
  t.like(p.leases()[0], { state: 'bound', ip: address, mac: CLIENT_MAC, expiresAt: NOW + 1000 + 3_600_000 });

  const renew = { ...request, type: Msg6.RENEW };
  const renewed = reply(decideServer6(read(renew), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW + 60_000));
  t.is(decodeIaNa(opt(renewed, Opt6.IA_NA)!).addresses[0]?.validLifetime, 3600);
  t.is(p.leases()[0]?.expiresAt, NOW + 60_000 + 3_600_000);
  // The same client asking again gets the same address.
  const again = reply(decideServer6(read(edk2Solicit()), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW + 70_000));
  t.is(decodeIaNa(opt(again, Opt6.IA_NA)!).addresses[0]?.address, address);
});

test('server: an iPXE Solicit gets the HTTP script URL; Requests for another server and Solicits with a server id are ignored', (t) => {
  const p = pool();
  const adv = reply(decideServer6(read(ipxeSolicit()), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW));
  t.is(opt(adv, Opt6.BOOTFILE_URL)?.toString(), 'http://[fd00:126::1]:8080/boot.ipxe');
  t.truthy(opt(adv, Opt6.DOMAIN_LIST) === undefined);
  const foreign = ipxeSolicit(Msg6.REQUEST, [{ code: Opt6.SERVER_ID, data: Buffer.from('00030001aabbccddeeff', 'hex') }]);
  t.like(decideServer6(read(foreign), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW), { kind: 'ignore' });
  t.like(decideServer6(read(ipxeSolicit(Msg6.SOLICIT, [{ code: Opt6.SERVER_ID, data: SERVER_DUID }])), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW), {
    kind: 'ignore',
  });
});

test('server: an exhausted range says NoAddrsAvail; Release frees; Decline quarantines; Confirm checks the link', (t) => {
  const p = new Lease6Pool({ range: { start: 'fd00:126::100', end: 'fd00:126::100' }, leaseSeconds: 3600 });
  const first = reply(decideServer6(read(edk2Solicit()), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW));
  const address = decodeIaNa(opt(first, Opt6.IA_NA)!).addresses[0]!.address;
  t.is(address, 'fd00:126::100');
  const other = read(ipxeSolicit());
  const none = reply(decideServer6(other, CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW));
  t.is(decodeIaNa(opt(none, Opt6.IA_NA)!).status?.code, Status6.NO_ADDRS_AVAIL);
  t.is(decodeStatus(opt(none, Opt6.STATUS_CODE)!).code, Status6.NO_ADDRS_AVAIL);

  const withAddr = (type: number) => {
    const m = edk2Solicit([{ code: Opt6.SERVER_ID, data: SERVER_DUID }], type);
    m.options = m.options.map((o) =>
      o.code === Opt6.IA_NA ? encodeIaNa({ iaid: 0x01020304, t1: 0, t2: 0, addresses: [{ address, preferredLifetime: 0, validLifetime: 0 }] }) : o,
    );
    return m;
  };
  reply(decideServer6(read(withAddr(Msg6.REQUEST)), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW));
  const released = reply(decideServer6(read(withAddr(Msg6.RELEASE)), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW + 1));
  t.is(decodeStatus(opt(released, Opt6.STATUS_CODE)!).code, Status6.SUCCESS);
  t.is(p.leases()[0]?.state, 'released');
  // Free again: the other client gets it now.
  t.is(decodeIaNa(opt(reply(decideServer6(other, CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW + 2)), Opt6.IA_NA)!).addresses[0]?.address, address);

  const p2 = pool();
  reply(decideServer6(read(withAddr(Msg6.DECLINE)), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p2, NOW));
  const afterDecline = reply(decideServer6(read(ipxeSolicit()), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p2, NOW + 1));
  t.not(decodeIaNa(opt(afterDecline, Opt6.IA_NA)!).addresses[0]?.address, address, 'a declined address is not offered');

  const confirm = (addr: string) => {
    const m = edk2Solicit([], Msg6.CONFIRM);
    m.options = m.options.map((o) =>
      o.code === Opt6.IA_NA ? encodeIaNa({ iaid: 1, t1: 0, t2: 0, addresses: [{ address: addr, preferredLifetime: 0, validLifetime: 0 }] }) : o,
    );
    return read(m);
  };
  t.is(decodeStatus(opt(reply(decideServer6(confirm('fd00:126::101'), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p2, NOW)), Opt6.STATUS_CODE)!).code, Status6.SUCCESS);
  t.is(
    decodeStatus(opt(reply(decideServer6(confirm('2001:db8::1'), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p2, NOW)), Opt6.STATUS_CODE)!).code,
    Status6.NOT_ON_LINK,
  );
});

test('server: Renew without a binding says NoBinding; Rebind of a foreign address gets lifetimes 0; Information-request gets DNS and URL', (t) => {
  const p = pool();
  const renew = edk2Solicit([{ code: Opt6.SERVER_ID, data: SERVER_DUID }], Msg6.RENEW);
  t.is(decodeIaNa(opt(reply(decideServer6(read(renew), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW)), Opt6.IA_NA)!).status?.code, Status6.NO_BINDING);
  const rebind = edk2Solicit([], Msg6.REBIND);
  rebind.options = rebind.options.map((o) =>
    o.code === Opt6.IA_NA ? encodeIaNa({ iaid: 1, t1: 0, t2: 0, addresses: [{ address: '2001:db8::5', preferredLifetime: 9, validLifetime: 9 }] }) : o,
  );
  const rb = decodeIaNa(opt(reply(decideServer6(read(rebind), CLIENT_LINK_LOCAL, 'dhcp', CONFIG, p, NOW)), Opt6.IA_NA)!);
  t.like(rb.addresses[0], { address: '2001:db8::5', validLifetime: 0 });
  const info = ipxeSolicit(Msg6.INFORMATION_REQUEST, [encodeUserClass([Buffer.from('x')])]);
  info.options = info.options.filter((o) => o.code !== Opt6.IA_NA);
  const m = reply(decideServer6(read(info), CLIENT_LINK_LOCAL, 'dhcp', { ...CONFIG, domains: ['lab.example'] }, p, NOW));
  t.truthy(opt(m, Opt6.DNS_SERVERS));
  t.truthy(opt(m, Opt6.DOMAIN_LIST));
  t.is(opt(m, Opt6.BOOTFILE_URL)?.toString(), 'http://[fd00:126::1]:8080/boot.ipxe');
  t.is(findOption(m.options, Opt6.IA_NA), undefined);
});

test('captured clients: OVMF PXEv6 gets a proxy offer and an address with the TFTP URL; captured iPXE gets the script URL', (t) => {
  const fixture = (f: string) => readClientMessage(decodeMessage(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'dhcp6', f))));
  const edk2 = fixture('edk2-ovmf-x64-pxe-solicit.bin');
  t.like(identify6(edk2, 'fe80::5054:ff:fe12:6004'), { client: 'pxe', arch: 7, mac: '52:54:00:12:60:04', macSource: 'duid' });
  t.is(opt(reply(decideProxy6(edk2, 'fe80::5054:ff:fe12:6004', 'dhcp', CONFIG)), Opt6.BOOTFILE_URL)?.toString(), 'tftp://[fd00:126::1]/snponly.efi');
  const served = reply(decideServer6(edk2, 'fe80::5054:ff:fe12:6004', 'dhcp', CONFIG, pool(), NOW));
  t.is(decodeIaNa(opt(served, Opt6.IA_NA)!).addresses.length, 1);
  // The plain address configuration before PXE is not a boot client: only a server answers it.
  const ip6config = fixture('edk2-ovmf-x64-ip6config-solicit.bin');
  t.like(decideProxy6(ip6config, 'fe80::5054:ff:fe12:6004', 'dhcp', CONFIG), { kind: 'ignore' });
  t.is(reply(decideServer6(ip6config, 'fe80::5054:ff:fe12:6004', 'dhcp', CONFIG, pool(), NOW)).type, Msg6.ADVERTISE);
  const ipxe = fixture('ipxe-efi-solicit.bin');
  t.like(identify6(ipxe, 'fe80::5054:ff:fe12:6004'), { client: 'ipxe', mac: '52:54:00:12:60:04', macSource: 'link-local' });
  t.is(
    opt(reply(decideServer6(ipxe, 'fe80::5054:ff:fe12:6004', 'dhcp', CONFIG, pool(), NOW)), Opt6.BOOTFILE_URL)?.toString(),
    'http://[fd00:126::1]:8080/boot.ipxe',
  );
});
