import test from 'ava';
import { hasCode } from '../../src/errors.js';
import { createSilentLogger } from '../../src/log.js';
import { BROADCAST_FLAG, decodePacket, encodePacket, clientMac } from '../../src/dhcp/packet.js';
import { MessageType, readOptions } from '../../src/dhcp/options.js';
import { buildProbeDiscover, decideAutoMode, probeForDhcpServer, randomLocalMac } from '../../src/dhcp/probe.js';
import { parseRunFlags } from '../../src/dhcp/run.js';

test('the probe DISCOVER: broadcast flag, our MAC and xid, message type DISCOVER; it round-trips', (t) => {
  const p = decodePacket(encodePacket(buildProbeDiscover('02:11:22:33:44:55', 0xdeadbeef)));
  t.is(p.flags & BROADCAST_FLAG, BROADCAST_FLAG);
  t.is(p.xid, 0xdeadbeef);
  t.is(clientMac(p), '02:11:22:33:44:55');
  t.is(p.ciaddr, '0.0.0.0');
  t.is(readOptions(p).messageType, MessageType.DISCOVER);
});

test('randomLocalMac: unicast and locally administered', (t) => {
  for (let i = 0; i < 200; i++) {
    const first = parseInt(randomLocalMac().slice(0, 2), 16);
    t.is(first & 0x01, 0, 'unicast');
    t.is(first & 0x02, 0x02, 'locally administered');
  }
});

test('decideAutoMode: server only with a probe, no answer and no default route on the interface; proxy otherwise, with the reason', (t) => {
  const answer = { serverId: '10.0.0.2', from: '10.0.0.2', offered: '10.0.0.50', messageType: 2, pxe: false };
  const found = decideAutoMode({ probe: { found: true, servers: [answer], mac: '', xid: 1, elapsedMs: 3012 }, interface: 'br0', carriesDefaultRoute: false });
  t.is(found.mode, 'proxy');
  t.is(found.reason, 'dhcp server 10.0.0.2 answered the probe: answering pxe clients beside it');
  const silent = { found: false, servers: [], mac: '', xid: 1, elapsedMs: 5000 };
  const alone = decideAutoMode({ probe: silent, interface: 'br0', carriesDefaultRoute: false });
  t.is(alone.mode, 'server');
  t.regex(alone.reason, /no dhcp server answered within 5000 ms and br0 carries no default route/);
  const uplink = decideAutoMode({ probe: silent, interface: 'eth0', carriesDefaultRoute: true });
  t.is(uplink.mode, 'proxy');
  t.regex(uplink.reason, /eth0 carries this host's default route.*pass --dhcp-mode server/);
  const unprobed = decideAutoMode({ probe: undefined, interface: 'lo', carriesDefaultRoute: false });
  t.is(unprobed.mode, 'proxy');
  t.regex(unprobed.reason, /not probed.*--dhcp-mode server/);
});

test('the probe DISCOVER looks like a BIOS PXE client, so ProxyDHCPs answer it too', (t) => {
  const o = readOptions(decodePacket(encodePacket(buildProbeDiscover('02:11:22:33:44:55', 7))));
  t.is(o.vendorClass, 'PXEClient:Arch:00000:UNDI:002001');
  t.deepEqual(o.clientArch, [0]);
});

test('probeForDhcpServer rejects with ERR_DHCP_PROBE for an address that is not ours or on another interface', async (t) => {
  const log = createSilentLogger();
  const err = await t.throwsAsync(probeForDhcpServer({ address: '10.250.250.250', log }));
  t.true(hasCode(err, 'ERR_DHCP_PROBE'));
  const err2 = await t.throwsAsync(probeForDhcpServer({ address: '127.0.0.1', interface: 'nosuch0', log }));
  t.true(hasCode(err2, 'ERR_DHCP_PROBE'));
  t.regex(err2!.message, /is on interface lo, not nosuch0/);
});

test('run.ts flags: parsed values and clear errors', (t) => {
  t.is(parseRunFlags(['--address', '10.99.0.1']).mode, 'proxy');
  const f = parseRunFlags([
    '--mode',
    'server',
    '--address',
    '10.99.0.1',
    '--range',
    '10.99.0.100-10.99.0.200',
    '--lease-file',
    '/tmp/l.json',
    '--dns',
    '1.1.1.1',
    '--dns',
    '9.9.9.9',
    '--reservation',
    '52:54:00:00:00:01=10.99.0.5=node1',
    '--lease-time',
    '600',
  ]);
  t.is(f.mode, 'server');
  t.deepEqual(f.options.range, { start: '10.99.0.100', end: '10.99.0.200' });
  t.deepEqual(f.options.dns, ['1.1.1.1', '9.9.9.9']);
  t.is(f.options.leaseTime, 600);
  t.deepEqual(f.options.reservations?.(), [{ mac: '52:54:00:00:00:01', ip: '10.99.0.5', hostname: 'node1' }]);
  t.is(f.options.probeIntervalMs, 60_000);
  t.throws(() => parseRunFlags(['--mode', 'server', '--address', '10.99.0.1', '--range', '10.99.0.200-10.99.0.1', '--lease-file', 'x']), {
    code: 'ERR_DHCP_RANGE',
  } as never);
  t.throws(() => parseRunFlags(['--mode', 'server', '--address', '10.99.0.1', '--lease-file', 'x']), { message: /--range START-END is required/ });
  t.throws(() => parseRunFlags(['--address', '10.99.0.1', '--mode', 'maybe']), { message: /use proxy, server, auto or probe/ });
  t.throws(() => parseRunFlags(['--address', '10.99.0.1', '--boot-file', 'efi-x65=a.efi']), { message: /ARCH one of bios, efi-x64/ });
  t.is(parseRunFlags(['--address', '10.99.0.1', '--mode', 'probe']).mode, 'probe');
});
