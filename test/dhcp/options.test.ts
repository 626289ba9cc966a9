import test from 'ava';
import { ApplianceError } from '../../src/errors.js';
import { decodePacket } from '../../src/dhcp/packet.js';
import { MessageType, readOptions } from '../../src/dhcp/options.js';
import { fixture, rawPacket, textOpt } from './helpers.js';

const decodeErr = (message: RegExp) => ({ instanceOf: ApplianceError, code: 'ERR_DHCP_DECODE', message });

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

test('option 43 of a non-PXE vendor is kept raw and not parsed as PXE', (t) => {
  const p = decodePacket(rawPacket([...textOpt(60, 'MSFT 5.0'), 43, 3, 71, 9, 9, 255]));
  const o = readOptions(p);
  t.is(o.pxe, undefined);
  t.deepEqual(o.vendorSpecific, Buffer.from([71, 9, 9]));
});

/** Options whose typed value is malformed: decodePacket validates them through readOptions. */
const malformed: Array<[string, Buffer, RegExp]> = [
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
