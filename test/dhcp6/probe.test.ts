/**
 * The DHCPv6 probe (src/dhcp6/probe.ts): the messages it sends, which answers count (captured
 * dnsmasq Advertises must not: they answer another client), the auto decision, the IPv6
 * default-route parser, and one probe over UDP on [::1] against a real server socket of ours
 * with another DUID standing in for "another server".
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSilentLogger } from '../../src/log.js';
import { createDhcp6Server } from '../../src/dhcp6/server.js';
import {
  buildProbeMessages,
  decideAuto6,
  describeServers6,
  parseDefaultRoute6Interfaces,
  probeClientDuid,
  probeForDhcp6Server,
  readProbeAnswer,
  type Probe6Result,
} from '../../src/dhcp6/probe.js';
import { decodeMessage, duidLl, encodeIaNa, encodeMessage, encodeVendorClass, Msg6, Opt6, readClientMessage, type Message6 } from '../../src/dhcp6/packet.js';
import { loopbackOptions, SERVER_DUID } from './helpers.js';

const fixture = (f: string) => readFileSync(join(import.meta.dirname, '..', 'fixtures', 'dhcp6', f));
const DUID = probeClientDuid('fd00:126::1');
const OTHER = duidLl('52:54:00:aa:bb:cc');

test('the probe sends a Solicit with an IA_NA and PXE vendor class, and an Information-request, both with its own DUID', (t) => {
  const [sol, inf] = buildProbeMessages(DUID, 0x010203, 0x040506).map((m) => readClientMessage(decodeMessage(encodeMessage(m))));
  t.is(sol!.type, Msg6.SOLICIT);
  t.is(sol!.iaNa.length, 1);
  t.deepEqual(sol!.arches, [7]);
  t.regex(sol!.vendorClass!.items[0]!.toString(), /^PXEClient/);
  t.is(inf!.type, Msg6.INFORMATION_REQUEST);
  t.is(inf!.iaNa.length, 0);
  t.true(sol!.clientId!.raw.equals(DUID));
  t.is(DUID.readUInt16BE(0), 4, 'a DUID-UUID');
  t.false(DUID.equals(probeClientDuid('fd00:126::2')));
});

test('answers: an Advertise echoing our DUID from another server counts, with its addresses; ours, other xids and other clients do not', (t) => {
  const xids = new Set([0x010203]);
  const advertise = (serverId: Buffer, clientId: Buffer, xid = 0x010203, extra: Message6['options'] = []): Buffer =>
    encodeMessage({
      type: Msg6.ADVERTISE,
      transactionId: xid,
      options: [
        { code: Opt6.CLIENT_ID, data: clientId },
        { code: Opt6.SERVER_ID, data: serverId },
        encodeIaNa({ iaid: 1, t1: 0, t2: 0, addresses: [{ address: 'fd00:126::5ab', preferredLifetime: 100, validLifetime: 200 }] }),
        ...extra,
      ],
    });
  const a = readProbeAnswer(advertise(OTHER, DUID), 'fe80::5054:ff:feaa:bbcc%br0', { duid: DUID, xids, ownServerDuid: SERVER_DUID });
  t.deepEqual(a, { duid: OTHER.toString('hex'), from: 'fe80::5054:ff:feaa:bbcc', addresses: ['fd00:126::5ab'], pxe: false, messageType: 'advertise' });
  t.is(describeServers6([a!]), 'fe80::5054:ff:feaa:bbcc (DUID 00030001525400aabbcc, advertised fd00:126::5ab)');
  const pxe = readProbeAnswer(advertise(OTHER, DUID, 0x010203, [encodeVendorClass({ enterprise: 343, items: [Buffer.from('PXEClient')] })]), 'fe80::1', {
    duid: DUID,
    xids,
  });
  t.true(pxe?.pxe);
  t.is(readProbeAnswer(advertise(SERVER_DUID, DUID), 'fe80::1', { duid: DUID, xids, ownServerDuid: SERVER_DUID }), undefined, 'our own server');
  t.is(readProbeAnswer(advertise(OTHER, DUID, 0x999999), 'fe80::1', { duid: DUID, xids }), undefined, 'another transaction');
  t.is(readProbeAnswer(advertise(OTHER, duidLl('02:00:00:00:00:09')), 'fe80::1', { duid: DUID, xids }), undefined, 'another client');
  for (const f of ['dnsmasq-advertise-to-edk2-pxe.bin', 'dnsmasq-reply-to-ipxe.bin'])
    t.is(readProbeAnswer(fixture(f), 'fe80::1', { duid: DUID, xids: new Set([decodeMessage(fixture(f)).transactionId]) }), undefined, f);
  for (const junk of [Buffer.alloc(0), Buffer.from('0102', 'hex'), fixture('edk2-ovmf-x64-pxe-solicit.bin')])
    t.is(readProbeAnswer(junk, 'fe80::1', { duid: DUID, xids }), undefined);
});

test('auto: server only when probed, nobody answered and no default route on the interface', (t) => {
  const none: Probe6Result = { found: false, servers: [], elapsedMs: 3000 };
  const one: Probe6Result = { found: true, servers: [{ duid: 'aa', from: 'fe80::2', addresses: [], pxe: false, messageType: 'reply' }], elapsedMs: 40 };
  t.is(decideAuto6({ probe: none, interface: 'br0', carriesDefaultRoute: false }).mode, 'server');
  t.like(decideAuto6({ probe: one, interface: 'br0', carriesDefaultRoute: false }), { mode: 'proxy' });
  t.regex(decideAuto6({ probe: one, interface: 'br0', carriesDefaultRoute: false }).reason, /fe80::2 \(DUID aa\)/);
  t.regex(decideAuto6({ probe: none, interface: 'eth0', carriesDefaultRoute: true }).reason, /eth0 carries a default route/);
  t.is(decideAuto6({ probe: undefined, interface: 'br0', carriesDefaultRoute: false }).mode, 'proxy');
});

test('the IPv6 default route of /proc/net/ipv6_route', (t) => {
  const text = [
    'fd000099000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     br0',
    '00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003    eth0',
    '00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200      lo',
  ].join('\n');
  t.deepEqual(parseDefaultRoute6Interfaces(text), ['eth0']);
  t.deepEqual(parseDefaultRoute6Interfaces('garbage\n'), []);
});

test('a probe over UDP on [::1]: a real server socket with another DUID answers the Solicit and the Information-request', async (t) => {
  const other = createDhcp6Server(loopbackOptions({ proxyPort: -1, serverDuid: OTHER }));
  const { port } = await other.start();
  t.teardown(() => other.stop());
  const result = await probeForDhcp6Server({
    interface: 'lo',
    address: 'fd00:126::1',
    ownServerDuid: SERVER_DUID,
    clientPort: 0,
    serverPort: port,
    destination: '::1',
    timeoutMs: 2000,
    log: createSilentLogger(),
  });
  t.true(result.found);
  t.is(result.servers.length, 1, 'one entry per server DUID');
  t.like(result.servers[0], { duid: OTHER.toString('hex'), from: '::1' });
  t.regex(result.servers[0]!.addresses[0] ?? '', /^fd00:126::1[0-9a-f]{2}$/);
  t.true(result.elapsedMs < 2000, 'it stops soon after the first answer');

  // Our own server ignores our own probe's DUID: a probe with it as the only server finds nobody.
  const self = createDhcp6Server(loopbackOptions({ proxyPort: -1, ignoreClientDuids: [DUID] }));
  const mine = await self.start();
  t.teardown(() => self.stop());
  const quiet = await probeForDhcp6Server({
    interface: 'lo',
    address: 'fd00:126::1',
    clientPort: 0,
    serverPort: mine.port,
    destination: '::1',
    timeoutMs: 600,
    log: createSilentLogger(),
  });
  t.false(quiet.found);
});
