import test from 'ava';
import { ApplianceError } from '../../src/errors.js';
import {
  MessageType,
  Opt,
  clientMac,
  decodePacket,
  decodePxeVendorOptions,
  decodeUserClass,
  encodePacket,
  encodePxeVendorOptions,
  encodeUserClass,
  getOption,
  readOptions,
  type DhcpPacket,
} from '../../src/dhcp/packet.js';
import { fixture, fixtureNames, independentDhcpCodec, rawPacket, textOpt, fuzzDatagrams } from './helpers.js';

const decodeErr = (message: RegExp) => ({ instanceOf: ApplianceError, code: 'ERR_DHCP_DECODE', message });

test('every captured fixture decodes and re-encodes byte for byte', (t) => {
  const names = fixtureNames();
  t.true(names.length >= 14, `found ${names.length} fixtures`);
  for (const name of names) {
    const bytes = fixture(name);
    const packet = decodePacket(bytes);
    t.is(packet.hlen, 6, name);
    t.true(clientMac(packet).startsWith('52:54:00:12:34:'), name);
    t.notThrows(() => readOptions(packet), name);
    t.deepEqual(encodePacket(packet), bytes, `${name} round-trips`);
    // encode -> decode -> encode is stable too
    t.deepEqual(encodePacket(decodePacket(encodePacket(packet))), bytes, `${name} is stable`);
  }
});

test('typed options of the EDK2 discover', (t) => {
  const o = readOptions(decodePacket(fixture('edk2-ovmf-x64-discover')));
  t.is(o.messageType, MessageType.DISCOVER);
  t.is(o.vendorClass, 'PXEClient:Arch:00007:UNDI:003000');
  t.deepEqual(o.clientArch, [7]);
  t.deepEqual(o.clientNdi, { type: 1, major: 3, minor: 0 });
  t.is(o.maxMessageSize, 1472);
  t.is(o.clientUuid?.guid, '0'.repeat(32));
  t.is(o.clientUuid?.raw.length, 17);
  t.is(o.userClass, undefined);
  t.is(o.ipxe, undefined);
});

test('typed options of the iPXE BIOS discover: raw 77, 175, 61', (t) => {
  const p = decodePacket(fixture('ipxe-bios-rom-discover'));
  const o = readOptions(p);
  t.deepEqual(o.userClass, { format: 'raw', classes: ['iPXE'] });
  t.deepEqual(o.clientArch, [0]);
  t.truthy(o.ipxe && o.ipxe.length > 5);
  t.deepEqual(o.ipxe?.find((s) => s.code === 0xeb)?.data, Buffer.from([1, 0, 0]), 'iPXE version sub-option 235');
  t.deepEqual(o.clientId, Buffer.from([1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x62]));
  t.true(o.parameterRequestList?.includes(175));
});

test('option 43 PXE sub-options of the dnsmasq BIOS offer decode and re-encode byte for byte', (t) => {
  const p = decodePacket(fixture('dnsmasq-proxy-offer-to-ipxe-bios'));
  const o = readOptions(p);
  t.deepEqual(o.pxe, {
    discoveryControl: 3,
    menuPrompt: { timeout: 0, prompt: 'PXE' },
    bootServers: [{ type: 0x8002, addresses: ['10.77.0.1'] }],
    bootMenu: [{ type: 0x8002, description: 'ipxe' }],
  });
  t.deepEqual(encodePxeVendorOptions(o.pxe!), getOption(p, Opt.VENDOR));
  const ack = decodePacket(fixture('dnsmasq-proxy-ack-4011-to-ipxe-bios'));
  const ackPxe = readOptions(ack).pxe!;
  t.deepEqual(ackPxe, { bootItem: { type: 0x8002, layer: 0 } });
  t.deepEqual(encodePxeVendorOptions(ackPxe), getOption(ack, Opt.VENDOR));
});

test('option 43 other sub-options and multicast address round-trip', (t) => {
  const value = {
    discoveryControl: 8,
    multicastAddress: '224.1.2.3',
    bootItem: { type: 1, layer: 2 },
    other: [{ code: 1, data: Buffer.from([239, 0, 0, 1]) }],
  };
  t.deepEqual(decodePxeVendorOptions(encodePxeVendorOptions(value)), value);
});

test('option 77: raw iPXE and RFC 3004 length-prefixed both read as classes', (t) => {
  t.deepEqual(decodeUserClass(Buffer.from('iPXE')), { format: 'raw', classes: ['iPXE'] });
  t.deepEqual(decodeUserClass(Buffer.from('\x04iPXE', 'latin1')), { format: 'rfc3004', classes: ['iPXE'] });
  t.deepEqual(decodeUserClass(Buffer.from('\x04iPXE\x03foo', 'latin1')), { format: 'rfc3004', classes: ['iPXE', 'foo'] });
  for (const v of [
    { format: 'raw' as const, classes: ['iPXE'] },
    { format: 'rfc3004' as const, classes: ['iPXE', 'gpxe'] },
  ]) {
    t.deepEqual(decodeUserClass(encodeUserClass(v)), v);
  }
  const p = decodePacket(rawPacket([...textOpt(53, '\x01'), 77, 5, 4, ...Buffer.from('iPXE'), 255]));
  t.deepEqual(readOptions(p).userClass, { format: 'rfc3004', classes: ['iPXE'] });
});

test('RFC 3396: options longer than 255 are split on encode and joined on decode', (t) => {
  const base = decodePacket(fixture('edk2-ovmf-x64-discover'));
  const long = Buffer.alloc(600, 0xab);
  const packet: DhcpPacket = { ...base, options: [...base.options, { code: 224, data: long }] };
  const bytes = encodePacket(packet);
  // three instances of option 224: 255 + 255 + 90
  const idx = bytes.indexOf(Buffer.from([224, 255]), 240);
  t.true(idx > 0);
  t.is(bytes[idx + 257], 224);
  t.is(bytes[idx + 258], 255);
  t.is(bytes[idx + 514], 224);
  t.is(bytes[idx + 515], 90);
  const back = decodePacket(bytes);
  t.deepEqual(getOption(back, 224), long);
  t.deepEqual(encodePacket(back), bytes);
});

test('RFC 3396: repeated non-adjacent instances are concatenated in order', (t) => {
  const p = decodePacket(rawPacket([224, 2, 1, 2, ...textOpt(53, '\x01'), 224, 1, 3, 255]));
  t.deepEqual(getOption(p, 224), Buffer.from([1, 2, 3]));
  t.deepEqual(
    p.options.map((o) => o.code),
    [224, 53],
  );
});

test('option overload 52: file and sname carry options (options field, then file, then sname)', (t) => {
  const bytes = rawPacket([52, 1, 3, 224, 1, 1, 255], (h) => {
    // file field (offset 108): rest of option 224 and a bootfile option 67
    Buffer.from([224, 1, 2, 67, 4, ...Buffer.from('a.bn'), 255]).copy(h, 108);
    // sname field (offset 44): more of 224 and message type
    Buffer.from([224, 1, 3, 53, 1, 1, 255]).copy(h, 44);
  });
  const p = decodePacket(bytes);
  t.is(p.file, '');
  t.is(p.sname, '');
  t.deepEqual(getOption(p, 224), Buffer.from([1, 2, 3]));
  t.is(readOptions(p).bootfileName, 'a.bn');
  t.is(readOptions(p).messageType, 1);
  t.is(getOption(p, 52), undefined, 'option 52 itself is consumed');
});

test('overload 1 uses only the file field; sname stays a name', (t) => {
  const bytes = rawPacket([52, 1, 1, 53, 1, 1, 255], (h) => {
    Buffer.from([12, 3, ...Buffer.from('abc'), 255]).copy(h, 108);
    Buffer.from('server1').copy(h, 44);
  });
  const p = decodePacket(bytes);
  t.is(p.sname, 'server1');
  t.is(p.file, '');
  t.deepEqual(getOption(p, 12), Buffer.from('abc'));
});

test('PAD bytes between options are skipped; a missing END at the exact end is tolerated', (t) => {
  const p = decodePacket(rawPacket([0, 0, 53, 1, 1, 0, 60, 9, ...Buffer.from('PXEClient')]));
  t.is(readOptions(p).messageType, 1);
  t.is(readOptions(p).vendorClass, 'PXEClient');
});

const malformed: Array<[string, Buffer, RegExp]> = [
  ['empty', Buffer.alloc(0), /packet is 0 bytes, shorter than the 240-byte dhcp header/],
  ['short', Buffer.alloc(239), /239 bytes/],
  ['bad cookie', rawPacket([255], (h) => h.writeUInt32BE(0x01020304, 236)), /magic cookie 0x01020304/],
  ['op 3', rawPacket([255], (h) => (h[0] = 3)), /op 3, expected 1 or 2/],
  ['hlen 17', rawPacket([255], (h) => (h[2] = 17)), /hlen 17/],
  ['option runs past end', rawPacket([53, 1, 1, 60, 20, 65, 66]), /option 60 length 20 at offset 243 runs past the end of the options field/],
  ['code without length', rawPacket([53, 1, 1, 60]), /option 60 at offset 243 in the options field has no length octet/],
  ['52 length 2', rawPacket([52, 2, 1, 1, 255]), /option 52 length 2, expected 1/],
  ['52 value 4', rawPacket([52, 1, 4, 255]), /option 52 value 4, expected 1, 2 or 3/],
  ['52 inside file', rawPacket([52, 1, 1, 255], (h) => Buffer.from([52, 1, 2, 255]).copy(h, 108)), /option 52 \(overload\) inside the file field/],
  [
    'overloaded file truncated',
    rawPacket([52, 1, 1, 255], (h) => Buffer.from([12, 200]).copy(h, 234)),
    /option 12 length 200 at offset 234 runs past the end of the file field/,
  ],
  ['53 length 2', rawPacket([53, 2, 1, 1, 255]), /option 53 length 2, expected 1/],
  ['54 length 3', rawPacket([54, 3, 1, 2, 3, 255]), /option 54 length 3, expected 4/],
  ['57 length 1', rawPacket([57, 1, 5, 255]), /option 57 length 1, expected 2/],
  ['61 length 1', rawPacket([61, 1, 1, 255]), /option 61 length 1, expected at least 2/],
  ['93 length 1', rawPacket([93, 1, 0, 255]), /option 93 length 1, expected even/],
  ['93 length 0', rawPacket([93, 0, 255]), /option 93 length 0, expected even/],
  ['94 length 2', rawPacket([94, 2, 1, 3, 255]), /option 94 length 2, expected 3/],
  ['97 length 16', rawPacket([97, 16, ...Buffer.alloc(16), 255]), /option 97 length 16, expected 17/],
  ['97 type 1', rawPacket([97, 17, 1, ...Buffer.alloc(16), 255]), /option 97 type 1, expected 0/],
  ['77 empty', rawPacket([77, 0, 255]), /option 77 length 0/],
  ['175 sub-option past end', rawPacket([175, 3, 0xeb, 5, 1, 255]), /option 175 sub-option 235 length 5 runs past the end/],
  ['43.71 length 3 (PXE)', rawPacket([...textOpt(60, 'PXEClient'), 43, 5, 71, 3, 0, 0, 0, 255]), /option 43 sub-option 71 length 3, expected 4/],
  ['43.8 short (PXE)', rawPacket([...textOpt(60, 'PXEClient'), 43, 6, 8, 4, 0, 1, 2, 1, 255]), /option 43 sub-option 8 lists 2 addresses but is too short/],
  [
    '43.9 short (PXE)',
    rawPacket([...textOpt(60, 'PXEClient'), 43, 6, 9, 4, 0, 1, 9, 65, 255]),
    /option 43 sub-option 9 description length 9 runs past its end/,
  ],
  ['43.6 length 2 (PXE)', rawPacket([...textOpt(60, 'PXEClient'), 43, 4, 6, 2, 8, 8, 255]), /option 43 sub-option 6 length 2, expected 1/],
];

for (const [name, bytes, message] of malformed) {
  test(`malformed: ${name}`, (t) => {
    t.throws(() => decodePacket(bytes), decodeErr(message));
  });
}

test('option 43 of a non-PXE vendor is kept raw and not parsed as PXE', (t) => {
  const p = decodePacket(rawPacket([...textOpt(60, 'MSFT 5.0'), 43, 3, 71, 9, 9, 255]));
  const o = readOptions(p);
  t.is(o.pxe, undefined);
  t.deepEqual(o.vendorSpecific, Buffer.from([71, 9, 9]));
});

test('unknown options are kept raw and round-trip', (t) => {
  const bytes = Buffer.concat([rawPacket([53, 1, 1, 200, 3, 9, 8, 7, 254, 0, 255]), Buffer.alloc(49)]);
  const p = decodePacket(bytes);
  t.deepEqual(getOption(p, 200), Buffer.from([9, 8, 7]));
  t.deepEqual(getOption(p, 254), Buffer.alloc(0));
  t.deepEqual(encodePacket(p), bytes);
});

test('encode rejects values that do not fit, with ERR_DHCP_ENCODE', (t) => {
  const base = decodePacket(fixture('edk2-ovmf-x64-discover'));
  const enc = (message: RegExp) => ({ instanceOf: ApplianceError, code: 'ERR_DHCP_ENCODE', message });
  t.throws(() => encodePacket({ ...base, ciaddr: '10.0.0.256' }), enc(/ciaddr "10.0.0.256" is not a dotted-quad/));
  t.throws(() => encodePacket({ ...base, file: 'x'.repeat(129) }), enc(/does not fit 128 latin1 bytes/));
  t.throws(() => encodePacket({ ...base, sname: '\u4e2d' }), enc(/sname does not fit/));
  t.throws(() => encodePacket({ ...base, xid: -1 }), enc(/xid -1/));
  t.throws(() => encodePacket({ ...base, options: [{ code: 255, data: Buffer.alloc(1) }] }), enc(/option code 255/));
  t.throws(() => encodePacket({ ...base, options: [{ code: 52, data: Buffer.from([1]) }] }), enc(/option 52/));
});

test('fuzz: 10,000 random and mutated datagrams either decode or raise ERR_DHCP_DECODE', (t) => {
  const seeds = fixtureNames().map(fixture);
  let decoded = 0;
  let rejected = 0;
  const started = Date.now();
  let i = -1;
  for (const buf of fuzzDatagrams({
    seed: 0x2545f491,
    count: 10_000,
    seeds,
    randomEvery: 4,
    maxRandomBytes: 600,
    flipFrom: 240,
    maxFlips: 8,
    truncateEvery: 7,
  })) {
    i += 1;
    if (Date.now() - started >= 20_000) break;
    try {
      const p = decodePacket(buf);
      readOptions(p);
      encodePacket(p);
      decoded += 1;
    } catch (err) {
      if (!(err instanceof ApplianceError) || err.code !== 'ERR_DHCP_DECODE') {
        t.fail(`datagram ${i} raised ${String(err)}`);
        return;
      }
      rejected += 1;
    }
  }
  t.is(decoded + rejected, 10_000);
  t.true(decoded > 100, `decoded ${decoded}`);
  t.true(rejected > 100, `rejected ${rejected}`);
});

test('the dhcp npm package reads our re-encoded fixtures the same way', (t) => {
  const codec = independentDhcpCodec();
  for (const name of ['edk2-ovmf-x64-discover', 'ipxe-bios-rom-discover', 'dnsmasq-proxy-ack-4011-to-edk2']) {
    const ours = decodePacket(fixture(name));
    const theirs = codec.parse(encodePacket(ours));
    t.is(theirs['xid'], ours.xid, name);
    t.is(theirs['chaddr'], clientMac(ours).toUpperCase().replace(/:/g, '-'), name);
    t.is(theirs.options[53], readOptions(ours).messageType, name);
    t.deepEqual(theirs.options[93] ?? null, readOptions(ours).clientArch ?? null, name);
    t.deepEqual(theirs.options[97] ?? null, readOptions(ours).clientUuid ? [...readOptions(ours).clientUuid!.raw] : null, name);
  }
});
