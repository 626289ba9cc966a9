import test from 'ava';
import { readFileSync } from 'node:fs';
import { hasCode } from '../../src/errors.js';
import { decodePacket, encodePacket, getOption, TftpDecodeError, type DecodeFailure, type TftpPacket } from '../../src/tftp/packet.js';
import { EDK2_RRQ_OPTIONS, rrq } from './helpers.js';

const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/tftp/${name}`, import.meta.url));

const samples: Array<[string, TftpPacket]> = [
  ['rrq plain', { op: 'rrq', filename: 'undionly.kpxe', mode: 'octet', options: [] }],
  ['rrq options', rrq('snponly.efi', EDK2_RRQ_OPTIONS)],
  ['rrq latin1 name', { op: 'rrq', filename: 'dir/f\u00e9\u00ff', mode: 'netascii', options: [['BlkSize', '512']] }],
  ['wrq', { op: 'wrq', filename: 'upload.bin', mode: 'octet', options: [['tsize', '123']] }],
  ['data empty', { op: 'data', block: 0, data: Buffer.alloc(0) }],
  ['data full', { op: 'data', block: 65535, data: Buffer.alloc(1468, 7) }],
  ['ack', { op: 'ack', block: 1 }],
  ['ack 0', { op: 'ack', block: 0 }],
  ['error', { op: 'error', code: 8, message: 'User aborted the transfer' }],
  ['error empty message', { op: 'error', code: 65535, message: '' }],
  [
    'oack',
    {
      op: 'oack',
      options: [
        ['blksize', '1468'],
        ['tsize', '173792'],
      ],
    },
  ],
  ['oack empty', { op: 'oack', options: [] }],
];

for (const [name, packet] of samples) {
  test(`round trip: ${name}`, (t) => {
    const wire = encodePacket(packet);
    const decoded = decodePacket(wire);
    t.deepEqual(decoded, packet);
    t.deepEqual(encodePacket(decoded), wire);
  });
}

test('decodes the EDK2/dnsmasq capture and re-encodes it byte for byte', (t) => {
  const probe = decodePacket(fixture('edk2-rrq-tsize-probe.bin'));
  t.deepEqual(probe, rrq('snponly.efi', EDK2_RRQ_OPTIONS));
  const abort = decodePacket(fixture('edk2-error-8-abort.bin'));
  t.deepEqual(abort, { op: 'error', code: 8, message: 'User aborted the transfer' });
  const download = decodePacket(fixture('edk2-rrq-download.bin'));
  t.is(download.op, 'rrq');
  t.is(getOption((download as { options: [string, string][] }).options, 'TSIZE'), undefined);
  t.is(getOption((download as { options: [string, string][] }).options, 'BLKSIZE'), '1468');
  const oack = decodePacket(fixture('dnsmasq-oack-tsize.bin'));
  t.deepEqual(oack, {
    op: 'oack',
    options: [
      ['blksize', '1468'],
      ['tsize', '173792'],
    ],
  });
  const data = decodePacket(fixture('dnsmasq-data-1.bin'));
  t.is(data.op, 'data');
  t.is((data as { data: Buffer }).data.length, 1468);
  t.deepEqual(decodePacket(fixture('edk2-ack-1.bin')), { op: 'ack', block: 1 });
  for (const name of [
    'edk2-rrq-tsize-probe.bin',
    'dnsmasq-oack-tsize.bin',
    'edk2-error-8-abort.bin',
    'edk2-rrq-download.bin',
    'dnsmasq-oack-blksize.bin',
    'dnsmasq-data-1.bin',
    'edk2-ack-1.bin',
  ]) {
    t.deepEqual(encodePacket(decodePacket(fixture(name))), fixture(name), name);
  }
});

test('tolerates NUL padding after request options (some PXE ROMs pad)', (t) => {
  const wire = Buffer.concat([encodePacket({ op: 'rrq', filename: 'a', mode: 'octet', options: [['blksize', '1024']] }), Buffer.alloc(5)]);
  t.deepEqual(decodePacket(wire), { op: 'rrq', filename: 'a', mode: 'octet', options: [['blksize', '1024']] });
});

test('error without final NUL and ack with trailing bytes decode leniently', (t) => {
  t.deepEqual(decodePacket(Buffer.from('\x00\x05\x00\x01no nul', 'latin1')), { op: 'error', code: 1, message: 'no nul' });
  t.deepEqual(decodePacket(Buffer.from([0, 4, 0, 9, 1, 2])), { op: 'ack', block: 9 });
});

const malformed: Array<[string, Buffer, DecodeFailure]> = [
  ['empty', Buffer.alloc(0), 'short'],
  ['one byte', Buffer.from([1]), 'short'],
  ['opcode 0', Buffer.from([0, 0, 1, 2]), 'unknown-opcode'],
  ['opcode 7', Buffer.from([0, 7]), 'unknown-opcode'],
  ['opcode 65535', Buffer.from([255, 255, 0]), 'unknown-opcode'],
  ['rrq no strings', Buffer.from([0, 1]), 'unterminated'],
  ['rrq unterminated name', Buffer.from('\x00\x01file', 'latin1'), 'unterminated'],
  ['rrq no mode', Buffer.from('\x00\x01file\x00', 'latin1'), 'unterminated'],
  ['rrq unterminated mode', Buffer.from('\x00\x01file\x00octet', 'latin1'), 'unterminated'],
  ['rrq option without value', Buffer.from('\x00\x01file\x00octet\x00blksize\x00', 'latin1'), 'odd-options'],
  ['rrq unterminated option', Buffer.from('\x00\x01file\x00octet\x00blksize\x001024', 'latin1'), 'unterminated'],
  ['rrq empty option name then data', Buffer.from('\x00\x01file\x00octet\x00\x00x\x00', 'latin1'), 'empty-option-name'],
  ['wrq unterminated', Buffer.from('\x00\x02x', 'latin1'), 'unterminated'],
  ['data 3 bytes', Buffer.from([0, 3, 0]), 'short'],
  ['ack 3 bytes', Buffer.from([0, 4, 0]), 'short'],
  ['ack 2 bytes', Buffer.from([0, 4]), 'short'],
  ['error 3 bytes', Buffer.from([0, 5, 0]), 'short'],
  ['oack unterminated', Buffer.from('\x00\x06blksize\x00512', 'latin1'), 'unterminated'],
  ['oack odd', Buffer.from('\x00\x06blksize\x00', 'latin1'), 'odd-options'],
];

for (const [name, wire, reason] of malformed) {
  test(`malformed: ${name} -> ERR_TFTP_DECODE (${reason})`, (t) => {
    const err = t.throws(() => decodePacket(wire), { instanceOf: TftpDecodeError });
    t.true(hasCode(err, 'ERR_TFTP_DECODE'));
    t.is((err as TftpDecodeError).reason, reason);
  });
}

test('random datagrams never throw anything but ERR_TFTP_DECODE', (t) => {
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    const len = rand() % 80;
    const buf = Buffer.alloc(len);
    for (let j = 0; j < len; j++) buf[j] = rand() % 8 === 0 ? 0 : rand() & 0xff;
    if (len >= 2 && rand() % 2 === 0) buf.writeUInt16BE(1 + (rand() % 6), 0);
    try {
      const packet = decodePacket(buf);
      decoded += 1;
      // Whatever decodes must encode again.
      encodePacket(packet);
    } catch (err) {
      if (!hasCode(err, 'ERR_TFTP_DECODE')) t.fail(`unexpected ${String(err)} for ${buf.toString('hex')}`);
    }
  }
  t.true(decoded > 0);
});

const unencodable: Array<[string, TftpPacket]> = [
  ['block too big', { op: 'data', block: 65536, data: Buffer.alloc(0) }],
  ['negative block', { op: 'ack', block: -1 }],
  ['fractional block', { op: 'ack', block: 1.5 }],
  ['nul in filename', { op: 'rrq', filename: 'a\0b', mode: 'octet', options: [] }],
  ['nul in option', { op: 'oack', options: [['blksize', '1\x002']] }],
  ['empty option name', { op: 'oack', options: [['', '2']] }],
  ['non-latin1 message', { op: 'error', code: 0, message: 'snowman \u2603' }],
  ['error code too big', { op: 'error', code: 70000, message: 'x' }],
];

for (const [name, packet] of unencodable) {
  test(`unencodable: ${name} -> ERR_TFTP_ENCODE`, (t) => {
    const err = t.throws(() => encodePacket(packet));
    t.true(hasCode(err, 'ERR_TFTP_ENCODE'));
  });
}
