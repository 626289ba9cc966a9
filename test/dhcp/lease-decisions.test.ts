/**
 * Table tests of the lease decisions (lease-decisions.ts): captured firmware requests and
 * hand-built ones in, replies and destinations out. Addresses match the captures (10.77.0.0/24,
 * appliance 10.77.0.1) so fields can be compared with dnsmasq's replies beside them.
 */
import test from 'ava';
import { LeasePool, type Reservation } from '../../src/dhcp/leases.js';
import { decodePacket, encodePacket, getOption, type DhcpPacket } from '../../src/dhcp/packet.js';
import { MessageType, Opt, readOptions } from '../../src/dhcp/options.js';
import { readIp } from '../../src/dhcp/wire.js';
import { decodePxeVendorOptions } from '../../src/dhcp/vendor-options.js';
import { selectNetwork, fitToSize, handleServerRequest, orderOptions, type ServerAction, type ServerModeConfig } from '../../src/dhcp/lease-decisions.js';
import { parseCidr } from '../../src/dhcp/subnet.js';
import { fixture, independentDhcpCodec } from './helpers.js';

const NET = parseCidr('10.77.0.0/24')!;
const RELAYED = parseCidr('10.78.0.0/24')!;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const CONFIG: ServerModeConfig = {
  serverAddress: '10.77.0.1',
  networks: [
    { subnet: NET, router: '10.77.0.254', dns: ['10.77.0.53', '10.77.0.54'], domain: 'lab.test' },
    { subnet: RELAYED, router: '10.78.0.1' },
  ],
  leaseTime: 3600,
  boot: { serverAddress: '10.77.0.1', httpPort: 8080, pxeOn67: { bios: 'boot-file', uefi: 'boot-file' } },
};
const BCAST = { address: '0.0.0.0', port: 68 };

function newPool(reservations: Reservation[] = []): LeasePool {
  return new LeasePool({
    ranges: [
      { start: '10.77.0.100', end: '10.77.0.200', subnet: NET },
      { start: '10.78.0.100', end: '10.78.0.101', subnet: RELAYED },
    ],
    exclude: ['10.77.0.1'],
    reservations: () => reservations,
  });
}

function edit(name: string, change: (p: DhcpPacket) => Partial<DhcpPacket>): DhcpPacket {
  const p = decodePacket(fixture(name));
  return { ...p, ...change(p) };
}

function setOption(p: DhcpPacket, code: number, data: Buffer | undefined): DhcpPacket['options'] {
  const rest = p.options.filter((o) => o.code !== code);
  return data ? [...rest, { code, data }] : rest;
}

function reply(t: { fail(m: string): void }, a: ServerAction): Extract<ServerAction, { kind: 'reply' }> {
  if (a.kind !== 'reply') {
    t.fail(`expected a reply, got ${JSON.stringify(a)}`);
    throw new Error('no reply');
  }
  return a;
}

function opt(p: DhcpPacket, code: number): string | undefined {
  return getOption(p, code)?.toString('hex');
}

test('EDK2 PXE DISCOVER -> OFFER with an address and the TFTP boot file, like dnsmasq 4011 ACK plus a plain lease', (t) => {
  const pool = newPool();
  const a = reply(t, handleServerRequest(decodePacket(fixture('edk2-ovmf-x64-discover')), BCAST, pool, CONFIG, T0));
  const p = a.packet;
  t.is(a.type, 'offer');
  t.is(p.yiaddr, '10.77.0.100');
  t.is(p.ciaddr, '0.0.0.0');
  t.deepEqual(a.to, { address: '255.255.255.255', port: 68, broadcast: true });
  // The boot fields of dnsmasq's 4011 ACK to the same firmware (which booted OVMF here).
  const dnsmasq = decodePacket(fixture('dnsmasq-proxy-ack-4011-to-edk2'));
  t.is(p.siaddr, dnsmasq.siaddr);
  t.is(p.sname, dnsmasq.sname);
  t.is(p.file, dnsmasq.file);
  t.is(opt(p, Opt.VENDOR_CLASS), opt(dnsmasq, Opt.VENDOR_CLASS), '60 PXEClient');
  t.is(opt(p, Opt.CLIENT_UUID), opt(dnsmasq, Opt.CLIENT_UUID), '97 echoed');
  t.deepEqual(decodePxeVendorOptions(getOption(p, Opt.VENDOR)!), { discoveryControl: 8 }, 'skip discovery: the file is here');
  // The lease options of dnsmasq's plain offer (53, 54, 51, 58, 59, 1, 28, 3), with our times.
  const typed = readOptions(p);
  t.is(typed.messageType, MessageType.OFFER);
  t.is(typed.serverId, '10.77.0.1');
  t.is(opt(p, Opt.LEASE_TIME), '00000e10');
  t.is(opt(p, 58), '00000708', 'T1 = 1800');
  t.is(opt(p, 59), '00000c4e', 'T2 = 3150');
  t.is(readIp(getOption(p, Opt.SUBNET_MASK)!), '255.255.255.0');
  t.is(readIp(getOption(p, 28)!), '10.77.0.255');
  t.is(readIp(getOption(p, Opt.ROUTER)!), '10.77.0.254');
  t.is(opt(p, 6), '0a4d00350a4d0036');
  t.is(getOption(p, 15)?.toString(), 'lab.test');
  t.like(a, { boot: { file: 'snponly.efi', firmware: 'efi-x64', client: 'pxe' }, ip: '10.77.0.100', persist: false });
  const plain = decodePacket(fixture('dnsmasq-plain-offer-no-boot'));
  for (const code of plain.options.map((o) => o.code)) t.truthy(getOption(p, code), `option ${code} that dnsmasq sends is present`);
  // EDK2 asks 1,2,3,4,5,6,12,13,15,17,18,22,23,28,40,41,42,43,50,51,54,58,59,60,66,67,97,...: the
  // reply follows that order after 53, 54, 51, 58, 59.
  t.deepEqual(
    p.options.map((o) => o.code),
    [53, 54, 51, 58, 59, 1, 3, 6, 15, 28, 43, 60, 97],
  );
});

test('BIOS PXE (no iPXE yet) gets undionly.kpxe; iPXE gets the boot.ipxe URL; UEFI iPXE too', (t) => {
  const pool = newPool();
  const bios = edit('ipxe-bios-rom-discover', (p) => ({ options: p.options.filter((o) => o.code !== Opt.USER_CLASS && o.code !== Opt.IPXE_ENCAP) }));
  const a = reply(t, handleServerRequest(bios, BCAST, pool, CONFIG, T0));
  t.like(a.packet, { file: 'undionly.kpxe', siaddr: '10.77.0.1', sname: '10.77.0.1', yiaddr: '10.77.0.100' });
  const ipxe = reply(t, handleServerRequest(decodePacket(fixture('ipxe-bios-rom-discover')), BCAST, pool, CONFIG, T0 + 1));
  t.like(ipxe.packet, { file: 'http://10.77.0.1:8080/boot.ipxe', yiaddr: '10.77.0.100' }, 'same MAC (61 = 01+MAC) keeps its address');
  t.is(getOption(ipxe.packet, Opt.VENDOR), undefined, 'no option 43 for iPXE on 67');
  const dnsmasq = decodePacket(fixture('dnsmasq-proxy-ack-4011-to-ipxe-bios'));
  t.is(ipxe.packet.file, dnsmasq.file, 'the URL dnsmasq gave the same iPXE');
  const efi = reply(t, handleServerRequest(decodePacket(fixture('ipxe-efi-snponly-discover')), BCAST, pool, CONFIG, T0 + 2));
  t.like(efi.packet, { file: 'http://10.77.0.1:8080/boot.ipxe', yiaddr: '10.77.0.101' });
});

test('UEFI HTTP boot gets the URL and option 60 HTTPClient', (t) => {
  const p = edit('edk2-ovmf-x64-discover', (q) => ({
    options: setOption(
      { ...q, options: setOption(q, Opt.CLIENT_ARCH, Buffer.from([0, 16])) },
      Opt.VENDOR_CLASS,
      Buffer.from('HTTPClient:Arch:00016:UNDI:003001'),
    ),
  }));
  const a = reply(t, handleServerRequest(p, BCAST, newPool(), CONFIG, T0));
  t.is(a.packet.file, 'http://10.77.0.1:8080/boot/snponly.efi');
  t.is(getOption(a.packet, Opt.VENDOR_CLASS)?.toString(), 'HTTPClient');
  t.truthy(a.packet.yiaddr !== '0.0.0.0');
});

test('a non-PXE client (udhcpc) gets a lease and no boot data, options in its option 55 order', (t) => {
  const a = reply(t, handleServerRequest(decodePacket(fixture('busybox-udhcpc-discover')), BCAST, newPool(), CONFIG, T0));
  t.like(a.packet, { file: '', sname: '', siaddr: '0.0.0.0', yiaddr: '10.77.0.100' });
  t.is(a.boot, undefined);
  // udhcpc asks 1, 3, 6, 12, 15, 28, 42.
  t.deepEqual(
    a.packet.options.map((o) => o.code),
    [53, 54, 51, 58, 59, 1, 3, 6, 15, 28],
  );
});

test('full exchange: DISCOVER, REQUEST (selecting), RENEW (unicast), REBIND, RELEASE; another client never gets the address', (t) => {
  const pool = newPool();
  const discover = decodePacket(fixture('busybox-udhcpc-discover'));
  const offer = reply(t, handleServerRequest(discover, BCAST, pool, CONFIG, T0));
  const ip = offer.packet.yiaddr;
  const request: DhcpPacket = {
    ...discover,
    options: [
      { code: Opt.MESSAGE_TYPE, data: Buffer.from([MessageType.REQUEST]) },
      { code: Opt.SERVER_ID, data: Buffer.from([10, 77, 0, 1]) },
      { code: Opt.REQUESTED_IP, data: Buffer.from(ip.split('.').map(Number)) },
      ...discover.options.filter((o) => o.code !== Opt.MESSAGE_TYPE),
    ],
  };
  const ack = reply(t, handleServerRequest(request, BCAST, pool, CONFIG, T0 + 10));
  t.like(ack, { type: 'ack', ip, persist: true });
  t.like(pool.leaseOf('mac:52:54:00:12:34:63'), { state: 'bound', expiresAt: T0 + 10 + 3_600_000 });

  const other = {
    ...discover,
    chaddr: Buffer.from('525400999999' + '00'.repeat(10), 'hex'),
    options: discover.options.filter((o) => o.code !== Opt.CLIENT_ID),
  };
  t.not(reply(t, handleServerRequest(other, BCAST, pool, CONFIG, T0 + 20)).packet.yiaddr, ip);

  const renew: DhcpPacket = { ...discover, ciaddr: ip, options: [{ code: Opt.MESSAGE_TYPE, data: Buffer.from([MessageType.REQUEST]) }] };
  const renewed = reply(t, handleServerRequest(renew, { address: ip, port: 68 }, pool, CONFIG, T0 + 1_800_000));
  t.like(renewed, { type: 'ack', ip, to: { address: ip, port: 68, broadcast: false } });
  t.is(renewed.packet.ciaddr, ip, 'ACK to a renewal echoes ciaddr');
  t.like(pool.leaseOf('mac:52:54:00:12:34:63'), { expiresAt: T0 + 1_800_000 + 3_600_000 });
  // REBINDING looks the same on the wire except it is broadcast: same answer.
  t.like(reply(t, handleServerRequest(renew, { address: ip, port: 68 }, pool, CONFIG, T0 + 3_200_000)), { type: 'ack' });

  const release: DhcpPacket = {
    ...discover,
    ciaddr: ip,
    options: [
      { code: Opt.MESSAGE_TYPE, data: Buffer.from([MessageType.RELEASE]) },
      { code: Opt.SERVER_ID, data: Buffer.from([10, 77, 0, 1]) },
    ],
  };
  t.like(handleServerRequest(release, { address: ip, port: 68 }, pool, CONFIG, T0 + 3_300_000), { kind: 'silent', type: 'release', ip, persist: true });
  t.like(pool.leaseOf('mac:52:54:00:12:34:63'), { state: 'released' });
});

test('REQUEST naming another server drops our offer silently', (t) => {
  const pool = newPool();
  const req = decodePacket(fixture('edk2-ovmf-x64-request'));
  handleServerRequest(decodePacket(fixture('edk2-ovmf-x64-discover')), BCAST, pool, CONFIG, T0);
  t.like(pool.leaseOf('mac:52:54:00:12:34:63'), { state: 'offered' });
  // The captured request names 10.77.0.254 (the plain dnsmasq), not us.
  t.like(handleServerRequest(req, BCAST, pool, CONFIG, T0 + 1), { kind: 'silent', type: 'abandon', persist: true });
  t.is(pool.leaseOf('mac:52:54:00:12:34:63'), undefined);
});

test('REQUEST selecting our offer with a PXE client: the ACK carries the lease and the boot file', (t) => {
  const pool = newPool();
  const req = edit('edk2-ovmf-x64-request', (p) => ({
    options: setOption({ ...p, options: setOption(p, Opt.SERVER_ID, Buffer.from([10, 77, 0, 1])) }, Opt.REQUESTED_IP, Buffer.from([10, 77, 0, 170])),
  }));
  const ack = reply(t, handleServerRequest(req, BCAST, pool, CONFIG, T0));
  t.like(ack.packet, { yiaddr: '10.77.0.170', file: 'snponly.efi', siaddr: '10.77.0.1' });
  t.is(readOptions(ack.packet).messageType, MessageType.ACK);
  t.like(ack, { type: 'ack', persist: true, to: { broadcast: true } });
});

test('NAKs: wrong network, address of another client, reserved for another; NAK fields are zero and broadcast', (t) => {
  const pool = newPool([{ mac: '52:54:00:00:00:77', ip: '10.77.0.77' }]);
  pool.request({ key: 'mac:52:54:00:00:00:01', mac: '52:54:00:00:00:01' }, '10.77.0.150', NET, T0, 3_600_000);
  const initReboot = (ip: number[]): DhcpPacket => {
    const d = decodePacket(fixture('busybox-udhcpc-discover'));
    return {
      ...d,
      options: [
        { code: Opt.MESSAGE_TYPE, data: Buffer.from([MessageType.REQUEST]) },
        { code: Opt.REQUESTED_IP, data: Buffer.from(ip) },
      ],
    };
  };
  const rows: Array<[number[], RegExp]> = [
    [[192, 168, 1, 5], /not on 10.77.0.0\/24/],
    [[10, 77, 0, 150], /leased to mac:52:54:00:00:00:01/],
    [[10, 77, 0, 77], /reserved for 52:54:00:00:00:77/],
    [[10, 77, 0, 10], /outside the dynamic range/],
  ];
  for (const [ip, reason] of rows) {
    const a = reply(t, handleServerRequest(initReboot(ip), BCAST, pool, CONFIG, T0 + 1));
    t.is(a.type, 'nak');
    t.regex(a.reason ?? '', reason);
    t.like(a.packet, { yiaddr: '0.0.0.0', ciaddr: '0.0.0.0', siaddr: '0.0.0.0', file: '' });
    t.deepEqual(
      a.packet.options.map((o) => o.code),
      [53, 54],
    );
    t.deepEqual(a.to, { address: '255.255.255.255', port: 68, broadcast: true });
  }
  // A renewal (ciaddr set, unicast) of an address held by another client: NAK, broadcast all the same.
  const renew: DhcpPacket = {
    ...initReboot([0, 0, 0, 0]),
    ciaddr: '10.77.0.150',
    options: [{ code: Opt.MESSAGE_TYPE, data: Buffer.from([MessageType.REQUEST]) }],
  };
  t.like(reply(t, handleServerRequest(renew, { address: '10.77.0.150', port: 68 }, pool, CONFIG, T0 + 2)), { type: 'nak', to: { broadcast: true } });
  // INIT-REBOOT of a free address nobody holds: authoritative ACK.
  t.like(reply(t, handleServerRequest(initReboot([10, 77, 0, 160]), BCAST, pool, CONFIG, T0 + 3)), { type: 'ack', ip: '10.77.0.160' });
});

test('DECLINE marks the address bad; the client is offered another', (t) => {
  const pool = newPool();
  const d = decodePacket(fixture('busybox-udhcpc-discover'));
  const ip = reply(t, handleServerRequest(d, BCAST, pool, CONFIG, T0)).packet.yiaddr;
  const decline: DhcpPacket = {
    ...d,
    options: [
      { code: Opt.MESSAGE_TYPE, data: Buffer.from([MessageType.DECLINE]) },
      { code: Opt.REQUESTED_IP, data: Buffer.from(ip.split('.').map(Number)) },
      { code: Opt.SERVER_ID, data: Buffer.from([10, 77, 0, 1]) },
    ],
  };
  t.like(handleServerRequest(decline, BCAST, pool, CONFIG, T0 + 1), { kind: 'silent', type: 'decline', ip, persist: true });
  const again = reply(t, handleServerRequest(d, BCAST, pool, CONFIG, T0 + 2));
  t.not(again.packet.yiaddr, ip);
});

test('INFORM: ACK with configuration, no yiaddr and no lease time, unicast to ciaddr', (t) => {
  const d = decodePacket(fixture('busybox-udhcpc-discover'));
  const inform: DhcpPacket = {
    ...d,
    ciaddr: '10.77.0.20',
    options: [
      { code: Opt.MESSAGE_TYPE, data: Buffer.from([MessageType.INFORM]) },
      { code: Opt.PARAMETER_LIST, data: Buffer.from([1, 3, 6]) },
    ],
  };
  const a = reply(t, handleServerRequest(inform, { address: '10.77.0.20', port: 68 }, newPool(), CONFIG, T0));
  t.like(a, { type: 'inform', to: { address: '10.77.0.20', port: 68, broadcast: false } });
  t.like(a.packet, { yiaddr: '0.0.0.0', ciaddr: '10.77.0.20' });
  t.is(readOptions(a.packet).messageType, MessageType.ACK);
  t.is(getOption(a.packet, Opt.LEASE_TIME), undefined);
  t.deepEqual(a.packet.options.map((o) => o.code).slice(0, 5), [53, 54, 1, 3, 6]);
});

test('relayed requests: address from the relay subnet, reply to giaddr:67; unknown relays ignored', (t) => {
  const pool = newPool();
  const d = decodePacket(fixture('busybox-udhcpc-discover'));
  const agentInfo = Buffer.from('0104000000070206525400123463', 'hex');
  const relayed = { ...d, giaddr: '10.78.0.1', hops: 1, options: [...d.options, { code: 82, data: agentInfo }] };
  const a = reply(t, handleServerRequest(relayed, { address: '10.78.0.1', port: 67 }, pool, CONFIG, T0));
  t.deepEqual(a.packet.options.at(-1), { code: 82, data: agentInfo }, 'option 82 echoed last (RFC 3046)');
  t.like(a.packet, { yiaddr: '10.78.0.100', giaddr: '10.78.0.1' });
  t.deepEqual(a.to, { address: '10.78.0.1', port: 67, broadcast: false });
  t.is(readIp(getOption(a.packet, Opt.ROUTER)!), '10.78.0.1', 'router of the relayed network');
  const unknown = handleServerRequest({ ...d, giaddr: '172.16.0.1' }, { address: '172.16.0.1', port: 67 }, pool, CONFIG, T0);
  t.is(unknown.kind, 'ignore');
  t.regex(unknown.kind === 'ignore' ? unknown.reason : '', /no served network/);
  // A NAK to a relayed client goes to the relay too.
  const nak = {
    ...relayed,
    options: [
      { code: Opt.MESSAGE_TYPE, data: Buffer.from([MessageType.REQUEST]) },
      { code: Opt.REQUESTED_IP, data: Buffer.from([10, 77, 0, 100]) },
    ],
  };
  t.like(reply(t, handleServerRequest(nak, { address: '10.78.0.1', port: 67 }, pool, CONFIG, T0)), { type: 'nak', to: { address: '10.78.0.1', port: 67 } });
});

test('requests from another network without a relay are ignored (admission)', (t) => {
  const d = decodePacket(fixture('busybox-udhcpc-discover'));
  t.like(handleServerRequest({ ...d, ciaddr: '192.168.5.5' }, { address: '192.168.5.5', port: 68 }, newPool(), CONFIG, T0), { kind: 'ignore' });
});

test('pool exhaustion: no offer, a warning-level ignore', (t) => {
  const pool = new LeasePool({ ranges: [{ start: '10.77.0.100', end: '10.77.0.100', subnet: NET }] });
  const d = decodePacket(fixture('busybox-udhcpc-discover'));
  reply(t, handleServerRequest(d, BCAST, pool, CONFIG, T0));
  const other = { ...d, chaddr: Buffer.from('525400999999' + '00'.repeat(10), 'hex'), options: d.options.filter((o) => o.code !== Opt.CLIENT_ID) };
  const a = handleServerRequest(other, BCAST, pool, CONFIG, T0);
  t.like(a, { kind: 'ignore', level: 'warn', refused: 'exhausted' });
  t.regex(a.kind === 'ignore' ? a.reason : '', /no free address on 10.77.0.0\/24/);
});

test('reservation hostname is sent as option 12', (t) => {
  const pool = newPool([{ mac: '52:54:00:12:34:63', ip: '10.77.0.50', hostname: 'node-7' }]);
  const a = reply(t, handleServerRequest(decodePacket(fixture('busybox-udhcpc-discover')), BCAST, pool, CONFIG, T0));
  t.is(a.packet.yiaddr, '10.77.0.50');
  t.is(getOption(a.packet, 12)?.toString(), 'node-7');
  t.is(a.hostname, 'node-7');
});

test('option 57: a reply is trimmed to fit, essential options kept', (t) => {
  const big: ServerModeConfig = {
    ...CONFIG,
    networks: [{ ...CONFIG.networks[0]!, dns: Array.from({ length: 60 }, (_, i) => `10.77.1.${i}`), domain: 'x'.repeat(200) }],
  };
  const d = decodePacket(fixture('busybox-udhcpc-discover')); // 57 = 576
  const a = reply(t, handleServerRequest(d, BCAST, newPool(), big, T0));
  const bytes = encodePacket(a.packet);
  t.true(bytes.length <= 548, `${bytes.length} bytes`);
  for (const code of [53, 54, 51, 1]) t.truthy(getOption(a.packet, code), `option ${code} kept`);
  const untrimmed = fitToSize(a.packet, 10_000);
  t.is(untrimmed.options.length, a.packet.options.length, 'fitToSize keeps everything when it fits');
});

test('orderOptions: fixed first, then option 55 order, then the rest', (t) => {
  const o = (code: number) => ({ code, data: Buffer.from([0]) });
  t.deepEqual(
    orderOptions([o(53), o(54), o(1), o(3), o(6), o(12), o(51)], [6, 12, 3]).map((x) => x.code),
    [53, 54, 51, 6, 12, 3, 1],
  );
});

test('the dhcp npm package (an independent reader) decodes our OFFER', (t) => {
  const codec = independentDhcpCodec();
  const a = reply(t, handleServerRequest(decodePacket(fixture('edk2-ovmf-x64-discover')), BCAST, newPool(), CONFIG, T0));
  const parsed = codec.parse(encodePacket(a.packet));
  t.is(parsed['yiaddr'], '10.77.0.100');
  t.is(parsed['file'], 'snponly.efi');
  t.is(parsed.options[53], 2);
  t.is(parsed.options[54], '10.77.0.1');
  t.is(parsed.options[51], 3600);
  t.is(parsed.options[1], '255.255.255.0');
});

test('no request crashes the decision: mutated fixtures', (t) => {
  const pool = newPool();
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const names = ['edk2-ovmf-x64-discover', 'edk2-ovmf-x64-request', 'ipxe-bios-rom-request', 'busybox-udhcpc-discover', 'ipxe-efi-snponly-request-4011'];
  let decoded = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = Buffer.from(fixture(names[rnd(names.length)]!));
    for (let k = 0; k < 1 + rnd(4); k++) bytes[rnd(bytes.length)] = rnd(256);
    let p: DhcpPacket;
    try {
      p = decodePacket(bytes);
    } catch {
      continue;
    }
    decoded += 1;
    const a = handleServerRequest(p, rnd(2) ? BCAST : { address: `10.77.0.${rnd(256)}`, port: 68 }, pool, CONFIG, T0 + i * 1000);
    if (a.kind === 'reply') encodePacket(a.packet);
  }
  t.true(decoded > 500, `${decoded} mutated packets decoded and handled`);
  const ips = pool
    .snapshot()
    .leases.filter((l) => l.expiresAt > T0 + 3000 * 1000)
    .map((l) => l.ip);
  t.is(new Set(ips).size, ips.length);
});

test('selectNetwork: by giaddr for relayed requests, by ciaddr for a relayed client renewing by unicast, else ours', (t) => {
  const local = { subnet: parseCidr('10.99.0.0/24')! };
  const far = { subnet: parseCidr('10.98.0.0/24')! };
  const nets = [local, far];
  t.is(selectNetwork({ giaddr: '0.0.0.0', ciaddr: '0.0.0.0' }, nets), local);
  t.is(selectNetwork({ giaddr: '10.98.0.1', ciaddr: '0.0.0.0' }, nets), far);
  t.is(selectNetwork({ giaddr: '0.0.0.0', ciaddr: '10.98.0.7' }, nets), far);
  t.is(selectNetwork({ giaddr: '0.0.0.0', ciaddr: '10.99.0.7' }, nets), local);
  t.is(selectNetwork({ giaddr: '10.5.0.1', ciaddr: '0.0.0.0' }, nets), undefined);
});

test('reservations belong to their MAC: a foreign client id neither takes nor blocks it; another MAC claiming it is NAKed with claimOf', (t) => {
  const owner = '52:54:00:12:34:63';
  const pool = newPool([{ mac: owner, ip: '10.77.0.50' }]);
  const initReboot = (mac: string, clientId: Buffer | undefined, xid: number): DhcpPacket => {
    const base = decodePacket(fixture('busybox-udhcpc-discover'));
    const chaddr = Buffer.alloc(16);
    Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
    let options = setOption({ ...base, options: base.options.filter((o) => o.code !== Opt.SERVER_ID) }, Opt.MESSAGE_TYPE, Buffer.from([MessageType.REQUEST]));
    options = setOption({ ...base, options }, Opt.REQUESTED_IP, Buffer.from([10, 77, 0, 50]));
    options = setOption({ ...base, options }, Opt.CLIENT_ID, clientId);
    return { ...base, xid, chaddr, ciaddr: '0.0.0.0', options };
  };
  // A spoofer with the owner's chaddr and a made-up client id: the lease stays the MAC's.
  t.like(handleServerRequest(initReboot(owner, Buffer.from('ff00c0ffee', 'hex'), 1), BCAST, pool, CONFIG, T0), {
    kind: 'reply',
    type: 'ack',
    ip: '10.77.0.50',
  });
  t.is(pool.leaseAt('10.77.0.50')?.key, `mac:${owner}`);
  // The owner with its firmware id, then a DUID: ACK both times, never a NAK.
  t.like(handleServerRequest(initReboot(owner, Buffer.from(`01${owner.replace(/:/g, '')}`, 'hex'), 2), BCAST, pool, CONFIG, T0 + 1), {
    type: 'ack',
    ip: '10.77.0.50',
  });
  t.like(handleServerRequest(initReboot(owner, Buffer.from('ff000000010001000130c8a6a2', 'hex'), 3), BCAST, pool, CONFIG, T0 + 2), {
    type: 'ack',
    ip: '10.77.0.50',
  });
  // Another MAC asking for it.
  const claim = handleServerRequest(initReboot('02:00:00:00:00:66', undefined, 4), BCAST, pool, CONFIG, T0 + 3);
  t.like(claim, { kind: 'reply', type: 'nak', ip: '10.77.0.50', claimOf: owner, reason: `10.77.0.50 is reserved for ${owner}` });
});

test('the new-lease budget: new clients past it are ignored as refused "rate"; a client holding a lease and a reserved one are not counted', async (t) => {
  const { createLeaseRateLimiter } = await import('../../src/dhcp/lease-rate.js');
  const reserved = '52:54:00:12:34:63';
  const pool = newPool([{ mac: reserved, ip: '10.77.0.50' }]);
  const limiter = createLeaseRateLimiter(1);
  const discover = (mac: string, xid: number): DhcpPacket => {
    const p = decodePacket(fixture('busybox-udhcpc-discover'));
    const chaddr = Buffer.alloc(16);
    Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
    return { ...p, xid, chaddr, options: setOption(p, Opt.CLIENT_ID, undefined) };
  };
  t.like(handleServerRequest(discover('02:00:00:00:00:01', 1), BCAST, pool, CONFIG, T0, limiter), { kind: 'reply', type: 'offer' });
  t.like(
    handleServerRequest(discover('02:00:00:00:00:01', 2), BCAST, pool, CONFIG, T0 + 1, limiter),
    { kind: 'reply', type: 'offer' },
    'a repeated DISCOVER of a client holding an offer is not new',
  );
  t.like(handleServerRequest(discover('02:00:00:00:00:02', 3), BCAST, pool, CONFIG, T0 + 2, limiter), { kind: 'ignore', refused: 'rate' });
  t.like(handleServerRequest(discover(reserved, 4), BCAST, pool, CONFIG, T0 + 3, limiter), { kind: 'reply', type: 'offer', ip: '10.77.0.50' });
});
