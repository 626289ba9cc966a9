import test from 'ava';
import { decodePacket, getOption } from '../../src/dhcp/packet.js';
import { Opt, readOptions } from '../../src/dhcp/options.js';
import { decodePxeVendorOptions, decodeUserClass, encodePxeVendorOptions, encodeUserClass } from '../../src/dhcp/vendor-options.js';
import { fixture, rawPacket, textOpt } from './helpers.js';

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
