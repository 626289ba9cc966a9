import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatIpv6, macFromEui64, normalizeIpv6, parseIpv6 } from '../../src/dhcp6/address.js';
import {
  decodeBootFileParams,
  decodeDomainList,
  decodeDuid,
  decodeIaNa,
  decodeMessage,
  decodeVendorClass,
  duidLl,
  encodeBootFileParams,
  encodeDomainList,
  encodeIaNa,
  encodeMessage,
  encodeVendorClass,
  ERR_DHCP6_DECODE,
  findOption,
  Msg6,
  Opt6,
  readClientMessage,
} from '../../src/dhcp6/packet.js';
import { CLIENT_MAC, edk2Solicit, ipxeSolicit, wire } from './helpers.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'dhcp6');

test('ipv6 text <-> octets, RFC 5952 canonical form', (t) => {
  t.is(normalizeIpv6('FD00:0126:0000:0000:0000:0000:0000:0001'), 'fd00:126::1');
  t.is(normalizeIpv6('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
  t.is(normalizeIpv6('::'), '::');
  t.is(normalizeIpv6('::ffff:10.0.0.1'), '::ffff:a00:1');
  t.is(normalizeIpv6('fe80::1%br0'), undefined);
  t.is(normalizeIpv6('10.0.0.1'), undefined);
  t.is(formatIpv6(parseIpv6('1:0:0:2:0:0:0:3')!), '1:0:0:2::3');
  t.is(macFromEui64(parseIpv6('fe80::5054:ff:fe12:6004')!), CLIENT_MAC);
  t.is(macFromEui64(parseIpv6('fe80::1')!), undefined);
});

test('a message round-trips byte for byte and its typed view reads every option', (t) => {
  const buf = wire(edk2Solicit());
  const msg = decodeMessage(buf);
  t.deepEqual(encodeMessage(msg), buf);
  const req = readClientMessage(msg);
  t.is(req.type, Msg6.SOLICIT);
  t.is(req.transactionId, 0x123456);
  t.is(req.clientId?.mac, CLIENT_MAC);
  t.deepEqual(req.arches, [7]);
  t.deepEqual(req.nii, { type: 1, major: 3, minor: 0 });
  t.is(req.vendorClass?.enterprise, 343);
  t.is(req.vendorClass?.items[0]?.toString(), 'PXEClient:Arch:00007:UNDI:003000');
  t.deepEqual(req.oro, [59, 60, 23, 16]);
  t.is(req.elapsedCentiseconds, 0);
  t.is(req.iaNa[0]?.iaid, 0x01020304);
  const ipxe = readClientMessage(decodeMessage(wire(ipxeSolicit())));
  t.deepEqual(
    ipxe.userClasses.map((u) => u.toString()),
    ['iPXE'],
  );
  t.is(ipxe.clientId?.type, 4);
  t.is(ipxe.clientId?.mac, undefined);
});

test('IA_NA with IAADDR and status, vendor class, domain list and boot params are symmetric', (t) => {
  const ia = {
    iaid: 7,
    t1: 1800,
    t2: 2880,
    addresses: [{ address: 'fd00:126::1234', preferredLifetime: 3600, validLifetime: 3600 }],
    status: { code: 0, message: 'ok' },
  };
  t.deepEqual(decodeIaNa(encodeIaNa(ia).data), ia);
  const vc = { enterprise: 343, items: [Buffer.from('PXEClient')] };
  t.deepEqual(decodeVendorClass(encodeVendorClass(vc).data), vc);
  t.deepEqual(decodeDomainList(encodeDomainList(['lab.example', 'example']).data), ['lab.example', 'example']);
  t.deepEqual(decodeBootFileParams(encodeBootFileParams(['a', 'bc']).data), ['a', 'bc']);
  t.like(decodeDuid(duidLl('52:54:00:00:00:01')), { type: 3, mac: '52:54:00:00:00:01' });
  // DUID-LLT: type 1, hardware 1, time, MAC.
  t.like(decodeDuid(Buffer.from('0001000100000000525400000002', 'hex')), { type: 1, mac: '52:54:00:00:00:02' });
});

test('malformed datagrams raise ERR_DHCP6_DECODE, nothing else', (t) => {
  const bad = [
    Buffer.alloc(0),
    Buffer.from([1, 0, 0]),
    Buffer.from([0, 0, 0, 0]),
    Buffer.from([200, 0, 0, 0]),
    Buffer.from([12, 0, 0, 0]), // relay-forw: not served
    Buffer.from([1, 0, 0, 1, 0, 1, 0, 10, 1]), // option overruns
    Buffer.from([1, 0, 0, 1, 0, 1]), // truncated option header
  ];
  for (const b of bad) t.throws(() => decodeMessage(b), { code: ERR_DHCP6_DECODE }, b.toString('hex'));
  // Known options with impossible lengths fail in the typed view.
  for (const opt of [
    { code: Opt6.IA_NA, data: Buffer.alloc(5) },
    { code: Opt6.ORO, data: Buffer.alloc(3) },
    { code: Opt6.ELAPSED_TIME, data: Buffer.alloc(1) },
    { code: Opt6.CLIENT_ID, data: Buffer.alloc(1) },
    { code: Opt6.VENDOR_CLASS, data: Buffer.from([0, 0, 1, 87, 0, 9, 1]) },
    { code: Opt6.NII, data: Buffer.alloc(2) },
  ]) {
    t.throws(() => readClientMessage({ type: 1, transactionId: 1, options: [opt] }), { code: ERR_DHCP6_DECODE }, `option ${opt.code}`);
  }
});

test('captured DHCPv6 datagrams (OVMF PXEv6, iPXE, dnsmasq) decode and round-trip', (t) => {
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.bin'));
  t.true(files.length >= 4, `fixtures missing in ${FIXTURES}`);
  for (const f of files) {
    const buf = readFileSync(join(FIXTURES, f));
    const msg = decodeMessage(buf);
    t.deepEqual(encodeMessage(msg), buf, f);
    t.truthy(findOption(msg.options, Opt6.CLIENT_ID), `${f} has no client id`);
    if (f.startsWith('edk2-') && f.includes('-pxe-')) {
      const req = readClientMessage(msg);
      t.deepEqual(req.arches, [7], f);
      t.regex(req.vendorClass?.items[0]?.toString() ?? '', /^PXEClient:Arch:00007/, f);
      t.true(req.oro.includes(Opt6.BOOTFILE_URL), f);
    }
    if (f.startsWith('ipxe-') && msg.type === Msg6.SOLICIT) {
      t.true(
        readClientMessage(msg).userClasses.some((u) => u.toString() === 'iPXE'),
        f,
      );
    }
    if (f.startsWith('dnsmasq-') && !f.includes('ip6config')) {
      t.truthy(findOption(msg.options, Opt6.BOOTFILE_URL), `${f}: the reference reply carries option 59`);
    }
  }
});
