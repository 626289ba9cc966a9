import test from 'ava';
import { ApplianceError } from '../../src/errors.js';
import { clientMac, decodePacket, encodePacket, getOption, type DhcpPacket } from '../../src/dhcp/packet.js';
import { readOptions } from '../../src/dhcp/options.js';
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
];

for (const [name, bytes, message] of malformed) {
  test(`malformed: ${name}`, (t) => {
    t.throws(() => decodePacket(bytes), decodeErr(message));
  });
}

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
