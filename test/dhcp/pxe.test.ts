import test from 'ava';
import { decodePacket, encodePacket, getOption, type DhcpPacket } from '../../src/dhcp/packet.js';
import { MessageType, Opt, readOptions } from '../../src/dhcp/options.js';
import {
  DEFAULT_BOOT_FILES,
  bootOptions,
  buildProxyReply,
  classify,
  replyDestination,
  selectBootFile,
  type BootConfig,
  type BootDecision,
  type Classification,
  type PortRole,
} from '../../src/dhcp/pxe.js';
import { admissionRefusal, broadcastOf, inSubnet, parseCidr, subnetOf } from '../../src/dhcp/subnet.js';
import { fixture, independentDhcpCodec, rawPacket, textOpt } from './helpers.js';

const SERVER = '10.77.0.1';
const config: BootConfig = { serverAddress: SERVER, httpPort: 8080 };

function boot(t: { fail(m: string): void }, c: Classification): BootDecision {
  if (c.kind !== 'boot') {
    t.fail(`expected boot, got ignore: ${c.reason}`);
    throw new Error('not boot');
  }
  return c;
}

/** A PXE request built from parts, for the classification table. */
function request(opts: {
  type?: number;
  vendor?: string;
  arch?: number[];
  user77?: number[];
  ipxe175?: boolean;
  serverId?: number[];
  op?: number;
  htype?: number;
}): DhcpPacket {
  const o: number[] = [];
  if (opts.type !== undefined) o.push(53, 1, opts.type);
  if (opts.vendor !== undefined) o.push(...textOpt(60, opts.vendor));
  if (opts.arch !== undefined) o.push(93, opts.arch.length * 2, ...opts.arch.flatMap((a) => [a >> 8, a & 0xff]));
  if (opts.user77 !== undefined) o.push(77, opts.user77.length, ...opts.user77);
  if (opts.ipxe175) o.push(175, 3, 0xeb, 1, 1);
  if (opts.serverId !== undefined) o.push(54, 4, ...opts.serverId);
  o.push(97, 17, 0, ...Array.from({ length: 16 }, (_, i) => i));
  o.push(255);
  return decodePacket(
    rawPacket(o, (h) => {
      if (opts.op !== undefined) h[0] = opts.op;
      if (opts.htype !== undefined) h[1] = opts.htype;
    }),
  );
}

const D = MessageType.DISCOVER;
const R = MessageType.REQUEST;
const PXE7 = 'PXEClient:Arch:00007:UNDI:003000';
const iPXE = [...Buffer.from('iPXE')];

const table: Array<{
  name: string;
  packet: DhcpPacket;
  port: PortRole;
  expect: { kind: 'ignore'; reason: RegExp; pxe: boolean } | { kind: 'boot'; client: string; firmware: string; archCode: number };
  answerRequestOn67?: boolean;
}> = [
  {
    name: 'busybox udhcpc fixture',
    packet: decodePacket(fixture('busybox-udhcpc-discover')),
    port: 'dhcp',
    expect: { kind: 'ignore', reason: /vendor class "udhcp 1.35.0" is not PXEClient/, pxe: false },
  },
  { name: 'no vendor class', packet: request({ type: D, arch: [0] }), port: 'dhcp', expect: { kind: 'ignore', reason: /no vendor class/, pxe: false } },
  {
    name: 'a reply (op 2)',
    packet: request({ op: 2, type: 2, vendor: 'PXEClient', arch: [0] }),
    port: 'dhcp',
    expect: { kind: 'ignore', reason: /op 2 is a reply/, pxe: false },
  },
  {
    name: 'bootp (no 53)',
    packet: request({ vendor: 'PXEClient', arch: [0] }),
    port: 'dhcp',
    expect: { kind: 'ignore', reason: /no message type/, pxe: true },
  },
  {
    name: 'not ethernet',
    packet: request({ type: D, vendor: 'PXEClient', arch: [0], htype: 6 }),
    port: 'dhcp',
    expect: { kind: 'ignore', reason: /hardware type 6/, pxe: true },
  },
  {
    name: 'BIOS PXE (93=0)',
    packet: request({ type: D, vendor: 'PXEClient:Arch:00000:UNDI:002001', arch: [0] }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'pxe', firmware: 'bios', archCode: 0 },
  },
  {
    name: 'UEFI IA32 (6)',
    packet: request({ type: D, vendor: 'PXEClient', arch: [6] }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'pxe', firmware: 'efi-ia32', archCode: 6 },
  },
  {
    name: 'UEFI x64 (7) EDK2 fixture',
    packet: decodePacket(fixture('edk2-ovmf-x64-discover')),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'pxe', firmware: 'efi-x64', archCode: 7 },
  },
  {
    name: 'UEFI x64 (9)',
    packet: request({ type: D, vendor: 'PXEClient', arch: [9] }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'pxe', firmware: 'efi-x64', archCode: 9 },
  },
  {
    name: 'UEFI ARM64 (11)',
    packet: request({ type: D, vendor: 'PXEClient', arch: [11] }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'pxe', firmware: 'efi-arm64', archCode: 11 },
  },
  {
    name: 'ARM32 (10) unsupported',
    packet: request({ type: D, vendor: 'PXEClient', arch: [10] }),
    port: 'dhcp',
    expect: { kind: 'ignore', reason: /architecture 10 is not supported/, pxe: true },
  },
  {
    name: 'arch from 60 when 93 is missing',
    packet: request({ type: D, vendor: PXE7 }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'pxe', firmware: 'efi-x64', archCode: 7 },
  },
  {
    name: 'no arch anywhere',
    packet: request({ type: D, vendor: 'PXEClient' }),
    port: 'dhcp',
    expect: { kind: 'ignore', reason: /no client architecture/, pxe: true },
  },
  {
    name: 'UEFI HTTP x64 (16)',
    packet: request({ type: D, vendor: 'HTTPClient:Arch:00016:UNDI:003000', arch: [16] }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'http', firmware: 'efi-x64', archCode: 16 },
  },
  {
    name: 'UEFI HTTP IA32 (15)',
    packet: request({ type: D, vendor: 'HTTPClient', arch: [15] }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'http', firmware: 'efi-ia32', archCode: 15 },
  },
  {
    name: 'UEFI HTTP ARM64 (19)',
    packet: request({ type: D, vendor: 'HTTPClient', arch: [19] }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'http', firmware: 'efi-arm64', archCode: 19 },
  },
  {
    name: 'HTTP arch with PXEClient class',
    packet: request({ type: D, vendor: 'PXEClient', arch: [16] }),
    port: 'dhcp',
    expect: { kind: 'ignore', reason: /uefi http boot but vendor class/, pxe: true },
  },
  {
    name: 'iPXE BIOS fixture (raw 77)',
    packet: decodePacket(fixture('ipxe-bios-rom-discover')),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'ipxe', firmware: 'bios', archCode: 0 },
  },
  {
    name: 'iPXE EFI fixture',
    packet: decodePacket(fixture('ipxe-efi-snponly-discover')),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'ipxe', firmware: 'efi-x64', archCode: 7 },
  },
  {
    name: 'iPXE by RFC 3004 77 only',
    packet: request({ type: D, vendor: 'PXEClient', arch: [7], user77: [4, ...iPXE] }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'ipxe', firmware: 'efi-x64', archCode: 7 },
  },
  {
    name: 'iPXE by 175 only',
    packet: request({ type: D, vendor: 'PXEClient', arch: [0], ipxe175: true }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'ipxe', firmware: 'bios', archCode: 0 },
  },
  {
    name: 'other user class is not iPXE',
    packet: request({ type: D, vendor: 'PXEClient', arch: [0], user77: [3, 102, 111, 111] }),
    port: 'dhcp',
    expect: { kind: 'boot', client: 'pxe', firmware: 'bios', archCode: 0 },
  },
  {
    name: 'REQUEST on 67 (to the dhcp server) is not ours',
    packet: decodePacket(fixture('edk2-ovmf-x64-request')),
    port: 'dhcp',
    expect: { kind: 'ignore', reason: /names server 10.77.0.254, not us/, pxe: false },
  },
  {
    name: 'REQUEST on 67 without 54, default',
    packet: request({ type: R, vendor: 'PXEClient', arch: [0] }),
    port: 'dhcp',
    expect: { kind: 'ignore', reason: /message type 3 on port 67/, pxe: false },
  },
  {
    name: 'REQUEST on 67 without 54, smee style',
    packet: request({ type: R, vendor: 'PXEClient', arch: [0] }),
    port: 'dhcp',
    answerRequestOn67: true,
    expect: { kind: 'boot', client: 'pxe', firmware: 'bios', archCode: 0 },
  },
  {
    name: 'EDK2 4011 request fixture',
    packet: decodePacket(fixture('edk2-ovmf-x64-request-4011')),
    port: 'proxy',
    expect: { kind: 'boot', client: 'pxe', firmware: 'efi-x64', archCode: 7 },
  },
  {
    name: 'iPXE BIOS 4011 request fixture',
    packet: decodePacket(fixture('ipxe-bios-rom-request-4011')),
    port: 'proxy',
    expect: { kind: 'boot', client: 'ipxe', firmware: 'bios', archCode: 0 },
  },
  {
    name: 'iPXE EFI 4011 request with 54 = us',
    packet: decodePacket(fixture('ipxe-efi-snponly-request-4011')),
    port: 'proxy',
    expect: { kind: 'boot', client: 'ipxe', firmware: 'efi-x64', archCode: 7 },
  },
  {
    name: '4011 request naming another server',
    packet: request({ type: R, vendor: 'PXEClient', arch: [7], serverId: [10, 0, 0, 9] }),
    port: 'proxy',
    expect: { kind: 'ignore', reason: /names server 10.0.0.9/, pxe: false },
  },
  {
    name: 'DISCOVER on 4011',
    packet: request({ type: D, vendor: 'PXEClient', arch: [7] }),
    port: 'proxy',
    expect: { kind: 'ignore', reason: /message type 1 on port 4011/, pxe: true },
  },
];

for (const row of table) {
  test(`classify: ${row.name}`, (t) => {
    const c = classify(row.packet, {
      port: row.port,
      serverAddress: SERVER,
      ...(row.answerRequestOn67 !== undefined ? { answerRequestOn67: row.answerRequestOn67 } : {}),
    });
    if (row.expect.kind === 'ignore') {
      t.is(c.kind, 'ignore');
      if (c.kind === 'ignore') {
        t.regex(c.reason, row.expect.reason);
        t.is(c.pxe, row.expect.pxe);
      }
    } else {
      const b = boot(t, c);
      t.is<string, string>(b.client, row.expect.client);
      t.is<string, string>(b.firmware, row.expect.firmware);
      t.is(b.archCode, row.expect.archCode);
      t.is(b.mac, '52:54:00:' + b.mac.slice(9));
    }
  });
}

/** The fields that matter in a ProxyDHCP reply, for comparing ours with dnsmasq's. */
function essentials(p: DhcpPacket) {
  const o = readOptions(p);
  return {
    op: p.op,
    xid: p.xid,
    yiaddr: p.yiaddr,
    siaddr: p.siaddr,
    broadcast: (p.flags & 0x8000) !== 0,
    type: o.messageType,
    serverId: o.serverId,
    vendorClass: o.vendorClass,
    uuid: o.clientUuid?.raw.toString('hex'),
    hasFile: p.file !== '',
    has43: getOption(p, Opt.VENDOR) !== undefined,
  };
}

test('EDK2 DISCOVER on 67: our OFFER matches dnsmasq byte for byte (no 43, no file: UEFI goes to 4011)', (t) => {
  const req = decodePacket(fixture('edk2-ovmf-x64-discover'));
  const reply = buildProxyReply(req, boot(t, classify(req, { port: 'dhcp', serverAddress: SERVER })), config);
  t.is(reply.type, 'offer');
  t.true(reply.deferred);
  t.deepEqual(encodePacket(reply.packet), fixture('dnsmasq-proxy-offer-to-edk2'));
});

test('EDK2 REQUEST on 4011: our ACK matches dnsmasq byte for byte (file snponly.efi)', (t) => {
  const req = decodePacket(fixture('edk2-ovmf-x64-request-4011'));
  const reply = buildProxyReply(req, boot(t, classify(req, { port: 'proxy', serverAddress: SERVER })), config);
  t.is(reply.type, 'ack');
  t.is(reply.file, 'snponly.efi');
  t.deepEqual(encodePacket(reply.packet), fixture('dnsmasq-proxy-ack-4011-to-edk2'));
});

test('iPXE BIOS DISCOVER on 67: the script URL at once, no binary, fields like dnsmasq', (t) => {
  const req = decodePacket(fixture('ipxe-bios-rom-discover'));
  const reply = buildProxyReply(req, boot(t, classify(req, { port: 'dhcp', serverAddress: SERVER })), config);
  const ours = essentials(decodePacket(encodePacket(reply.packet)));
  const theirs = essentials(decodePacket(fixture('dnsmasq-proxy-offer-to-ipxe-bios')));
  // dnsmasq sent iPXE a boot menu (43) and no file because its config used pxe-service; we
  // give iPXE the script directly (siaddr + file is enough for iPXE to skip the 4011 round trip).
  t.deepEqual({ ...ours, siaddr: undefined, hasFile: undefined, has43: undefined }, { ...theirs, siaddr: undefined, hasFile: undefined, has43: undefined });
  t.is(reply.packet.file, 'http://10.77.0.1:8080/boot.ipxe');
  t.is(reply.packet.siaddr, SERVER);
  t.false(ours.has43);
});

test('iPXE BIOS REQUEST on 4011: ACK echoes 43.71 and names the script like dnsmasq', (t) => {
  const req = decodePacket(fixture('ipxe-bios-rom-request-4011'));
  const reply = buildProxyReply(req, boot(t, classify(req, { port: 'proxy', serverAddress: SERVER })), config);
  const ref = decodePacket(fixture('dnsmasq-proxy-ack-4011-to-ipxe-bios'));
  t.is(reply.packet.file, ref.file);
  t.deepEqual(getOption(reply.packet, Opt.VENDOR), getOption(ref, Opt.VENDOR));
  const ours = essentials(reply.packet);
  const theirs = essentials(ref);
  // dnsmasq moves ciaddr into yiaddr on this path; a proxy keeps yiaddr 0.
  t.deepEqual({ ...ours, yiaddr: undefined }, { ...theirs, yiaddr: undefined });
  t.is(ours.yiaddr, '0.0.0.0');
  t.is(reply.packet.ciaddr, '10.77.0.169');
});

test('no loop: every iPXE request gets the script URL, never an iPXE binary', (t) => {
  for (const [name, port] of [
    ['ipxe-bios-rom-discover', 'dhcp'],
    ['ipxe-bios-rom-request-4011', 'proxy'],
    ['ipxe-efi-snponly-discover', 'dhcp'],
    ['ipxe-efi-snponly-request-4011', 'proxy'],
  ] as const) {
    const req = decodePacket(fixture(name));
    const reply = buildProxyReply(req, boot(t, classify(req, { port, serverAddress: SERVER })), config);
    t.is(reply.file, 'http://10.77.0.1:8080/boot.ipxe', name);
    t.false(
      Object.values(DEFAULT_BOOT_FILES).some((f) => reply.packet.file.includes(f)),
      name,
    );
  }
});

test('BIOS PXE on 67 (Pixiecore style): 43 {6: 8} and the TFTP file; defer style gives neither', (t) => {
  const req = request({ type: D, vendor: 'PXEClient:Arch:00000:UNDI:002001', arch: [0] });
  const b = boot(t, classify(req, { port: 'dhcp', serverAddress: SERVER }));
  const reply = buildProxyReply(req, b, config);
  t.is(reply.packet.file, 'undionly.kpxe');
  t.is(reply.packet.siaddr, SERVER);
  t.is(reply.packet.sname, SERVER);
  t.deepEqual(readOptions(reply.packet).pxe, { discoveryControl: 8 });
  t.deepEqual(getOption(reply.packet, Opt.VENDOR), Buffer.from([6, 1, 8, 255]));
  const deferred = buildProxyReply(req, b, { ...config, pxeOn67: { bios: 'defer' } });
  t.is(deferred.packet.file, '');
  t.is(getOption(deferred.packet, Opt.VENDOR), undefined);
});

test('UEFI PXE on 67 in smee style: 43 {6: 8} and the file', (t) => {
  const req = decodePacket(fixture('edk2-ovmf-x64-discover'));
  const reply = buildProxyReply(req, boot(t, classify(req, { port: 'dhcp', serverAddress: SERVER })), { ...config, pxeOn67: { uefi: 'boot-file' } });
  t.is(reply.packet.file, 'snponly.efi');
  t.deepEqual(readOptions(reply.packet).pxe, { discoveryControl: 8 });
});

test('bootFiles override per arch, and defaults', (t) => {
  const files = { bios: 'b.kpxe', 'efi-x64': 'x.efi', 'efi-ia32': 'i.efi', 'efi-arm64': 'a.efi' };
  for (const firmware of ['bios', 'efi-x64', 'efi-ia32', 'efi-arm64'] as const) {
    t.is(selectBootFile({ client: 'pxe', firmware }, { ...config, bootFiles: files }), files[firmware]);
    t.is(selectBootFile({ client: 'pxe', firmware }, config), DEFAULT_BOOT_FILES[firmware]);
  }
  t.is(selectBootFile({ client: 'pxe', firmware: 'bios' }, { ...config, bootFiles: { 'efi-x64': 'x.efi' } }), 'undionly.kpxe');
});

test('UEFI HTTP boot: OFFER with 60 HTTPClient and a URL; pattern is a parameter', (t) => {
  const req = request({ type: D, vendor: 'HTTPClient:Arch:00016:UNDI:003000', arch: [16] });
  const b = boot(t, classify(req, { port: 'dhcp', serverAddress: SERVER }));
  const reply = buildProxyReply(req, b, config);
  t.is(reply.packet.file, 'http://10.77.0.1:8080/boot/snponly.efi');
  t.is(readOptions(reply.packet).vendorClass, 'HTTPClient');
  t.is(getOption(reply.packet, Opt.VENDOR), undefined);
  const custom = buildProxyReply(req, b, { ...config, httpBootUrl: (f) => `http://10.77.0.1:8080/tftp/${f}` });
  t.is(custom.packet.file, 'http://10.77.0.1:8080/tftp/snponly.efi');
});

test('a URL longer than the file field goes in option 67', (t) => {
  const req = decodePacket(fixture('ipxe-efi-snponly-discover'));
  const url = `http://10.77.0.1:8080/${'x'.repeat(150)}.ipxe`;
  const reply = buildProxyReply(req, boot(t, classify(req, { port: 'dhcp', serverAddress: SERVER })), { ...config, ipxeScriptUrl: url });
  const back = decodePacket(encodePacket(reply.packet));
  t.is(back.file, '');
  t.is(readOptions(back).bootfileName, url);
});

test('bootOptions: 60, 97 echoed, in dnsmasq order, for reuse by a full dhcp server', (t) => {
  const req = decodePacket(fixture('edk2-ovmf-x64-request-4011'));
  const params = bootOptions(boot(t, classify(req, { port: 'proxy', serverAddress: SERVER })), config);
  t.deepEqual(
    params.options.map((o) => o.code),
    [60, 97],
  );
  t.deepEqual(params.options[1]?.data, getOption(req, 97));
  t.is(params.file, 'snponly.efi');
  t.false(params.deferred);
});

test('replies: yiaddr 0, siaddr server, broadcast bit when the client has no address, 97 echoed', (t) => {
  for (const [name, port] of [
    ['edk2-ovmf-x64-discover', 'dhcp'],
    ['ipxe-bios-rom-discover', 'dhcp'],
    ['ipxe-efi-snponly-discover', 'dhcp'],
  ] as const) {
    const req = decodePacket(fixture(name));
    const reply = buildProxyReply(req, boot(t, classify(req, { port, serverAddress: SERVER })), config);
    const e = essentials(reply.packet);
    t.is(e.op, 2);
    t.is(e.yiaddr, '0.0.0.0');
    t.is(e.siaddr, SERVER);
    t.true(e.broadcast, name);
    t.is(e.serverId, SERVER);
    t.is(e.vendorClass, 'PXEClient');
    t.is(e.uuid, getOption(req, 97)?.toString('hex'));
    t.is(e.xid, req.xid);
  }
});

const dest = decodePacket(fixture('edk2-ovmf-x64-discover'));
const destinations: Array<[string, DhcpPacket, PortRole, { address: string; port: number }, { address: string; port: number; broadcast: boolean }]> = [
  [
    '4011 from 4011 (EDK2): back to source port',
    decodePacket(fixture('edk2-ovmf-x64-request-4011')),
    'proxy',
    { address: '10.77.0.170', port: 4011 },
    { address: '10.77.0.170', port: 4011, broadcast: false },
  ],
  [
    '4011 from 68 (iPXE): back to source port',
    decodePacket(fixture('ipxe-bios-rom-request-4011')),
    'proxy',
    { address: '10.77.0.169', port: 68 },
    { address: '10.77.0.169', port: 68, broadcast: false },
  ],
  ['discover without address: broadcast to 68', dest, 'dhcp', { address: '0.0.0.0', port: 68 }, { address: '255.255.255.255', port: 68, broadcast: true }],
  ['relayed: to giaddr:67', { ...dest, giaddr: '10.5.0.1' }, 'dhcp', { address: '10.5.0.1', port: 67 }, { address: '10.5.0.1', port: 67, broadcast: false }],
  [
    'ciaddr set on 67: unicast to ciaddr:68',
    { ...dest, ciaddr: '10.77.0.50' },
    'dhcp',
    { address: '10.77.0.50', port: 68 },
    { address: '10.77.0.50', port: 68, broadcast: false },
  ],
];
for (const [name, req, port, source, expected] of destinations) {
  test(`replyDestination: ${name}`, (t) => {
    t.deepEqual(replyDestination(req, port, source), expected);
  });
}

test('replyDestination seams: client port, relay port, broadcast address', (t) => {
  t.deepEqual(replyDestination(dest, 'dhcp', { address: '0.0.0.0', port: 68 }, { clientPort: 5000, broadcastAddress: '127.0.0.1' }), {
    address: '127.0.0.1',
    port: 5000,
    broadcast: true,
  });
  t.deepEqual(replyDestination({ ...dest, giaddr: '127.0.0.2' }, 'dhcp', { address: '127.0.0.2', port: 9 }, { relayPort: 6000 }), {
    address: '127.0.0.2',
    port: 6000,
    broadcast: false,
  });
});

test('subnet arithmetic', (t) => {
  const s = parseCidr('10.99.0.7/24')!;
  t.is(s.cidr, '10.99.0.0/24');
  t.true(inSubnet('10.99.0.200', s));
  t.false(inSubnet('10.98.0.2', s));
  t.false(inSubnet('not-an-ip', s));
  t.is(broadcastOf(s), '10.99.0.255');
  t.is(broadcastOf(subnetOf('172.16.5.4', 20)!), '172.16.15.255');
  t.is(subnetOf('1.2.3.4', 0)?.cidr, '0.0.0.0/0');
  t.is(parseCidr('10.0.0.0/33'), undefined);
  t.is(parseCidr('10.0.0/8'), undefined);
});

test('admission: only the configured subnet, or a relay', (t) => {
  const s = parseCidr('10.99.0.0/24')!;
  const p = { ciaddr: '0.0.0.0', giaddr: '0.0.0.0' };
  t.is(admissionRefusal(p, '0.0.0.0', s, true), undefined, 'broadcast discover from 0.0.0.0 cannot be placed');
  t.is(admissionRefusal(p, '10.99.0.20', s, true), undefined);
  t.regex(admissionRefusal(p, '10.98.0.2', s, true) ?? '', /source 10.98.0.2 is outside 10.99.0.0\/24/);
  t.regex(admissionRefusal({ ...p, ciaddr: '10.98.0.2' }, '0.0.0.0', s, true) ?? '', /ciaddr 10.98.0.2 is outside/);
  t.is(admissionRefusal({ ...p, giaddr: '10.5.0.1' }, '10.5.0.1', s, true), undefined);
  t.regex(admissionRefusal({ ...p, giaddr: '10.5.0.1' }, '10.5.0.1', s, false) ?? '', /relayed requests are not answered/);
  // A client on a network behind a relay renews by unicast to us, without giaddr.
  const far = parseCidr('10.98.0.0/24')!;
  t.is(admissionRefusal({ ...p, ciaddr: '10.98.0.7' }, '10.98.0.7', s, true, [far]), undefined);
  t.regex(admissionRefusal({ ...p, ciaddr: '10.97.0.7' }, '10.97.0.7', s, true, [far]) ?? '', /outside/);
  t.regex(admissionRefusal({ ...p, ciaddr: '10.98.0.7' }, '10.98.0.7', s, false, [far]) ?? '', /outside/, 'relays not allowed: nor their clients');
});

test('the dhcp npm package reads our replies as we meant them', (t) => {
  const codec = independentDhcpCodec();
  for (const [name, port, file] of [
    ['edk2-ovmf-x64-discover', 'dhcp', ''],
    ['edk2-ovmf-x64-request-4011', 'proxy', 'snponly.efi'],
    ['ipxe-bios-rom-discover', 'dhcp', 'http://10.77.0.1:8080/boot.ipxe'],
    ['ipxe-bios-rom-request-4011', 'proxy', 'http://10.77.0.1:8080/boot.ipxe'],
  ] as const) {
    const req = decodePacket(fixture(name));
    const reply = buildProxyReply(req, boot(t, classify(req, { port, serverAddress: SERVER })), config);
    const theirs = codec.parse(encodePacket(reply.packet));
    t.is(theirs['op'], 2, name);
    t.is(theirs['xid'], req.xid, name);
    t.is(theirs['yiaddr'], '0.0.0.0', name);
    t.is(theirs['siaddr'], SERVER, name);
    t.is(theirs['file'], file, name);
    t.is(theirs.options[53], port === 'dhcp' ? 2 : 5, name);
    t.is(theirs.options[54], SERVER, name);
    t.is(theirs.options[60], 'PXEClient', name);
    t.deepEqual(theirs.options[97], [...getOption(req, 97)!], name);
  }
});

test('replaying both lab captures: we answer exactly the requests dnsmasq answered, to the same destination', async (t) => {
  const { pcapUdpDatagrams } = await import('./helpers.js');
  const DHCP_PORTS = new Set([67, 68, 4011]);
  let compared = 0;
  for (const file of ['ovmf-pxe-proxy-boot.pcap', 'seabios-ipxe-proxy-boot.pcap']) {
    const datagrams = pcapUdpDatagrams(file).filter((d) => DHCP_PORTS.has(d.srcPort) && DHCP_PORTS.has(d.dstPort));
    t.true(datagrams.length >= 10, `${file}: ${datagrams.length} dhcp datagrams`);
    datagrams.forEach((d, i) => {
      const packet = decodePacket(d.payload); // every captured datagram decodes
      if (packet.op !== 1) return;
      const port: PortRole = d.dstPort === 4011 ? 'proxy' : 'dhcp';
      // dnsmasq's answer: the first later datagram from it with this xid, before the client
      // sends its next request with the same xid (iPXE reuses the xid on 4011).
      const next = datagrams.slice(i + 1).find((r) => {
        const p = decodePacket(r.payload);
        return p.xid === packet.xid && (p.op === 1 || r.src === SERVER);
      });
      const theirs = next && decodePacket(next.payload).op === 2 ? next : undefined;
      const c = classify(packet, { port, serverAddress: SERVER });
      const label = `${file} #${i} ${d.src}:${d.srcPort}>${d.dst}:${d.dstPort}`;
      if (!theirs) {
        t.is(c.kind, 'ignore', `${label}: dnsmasq did not answer, neither do we`);
        return;
      }
      const b = boot(t, c);
      const reply = buildProxyReply(packet, b, config);
      t.is(reply.type, readOptions(decodePacket(theirs.payload)).messageType === 2 ? 'offer' : 'ack', label);
      t.deepEqual(
        replyDestination(packet, port, { address: d.src, port: d.srcPort }),
        { address: theirs.dst, port: theirs.dstPort, broadcast: theirs.dst === '255.255.255.255' },
        label,
      );
      compared += 1;
    });
  }
  t.true(compared >= 6, `compared ${compared} exchanges`);
});
