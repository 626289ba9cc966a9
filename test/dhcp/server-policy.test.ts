/**
 * createDhcpServer and probeForDhcpServer on 127.0.0.1 with ephemeral ports: the socket
 * layer, persistence before ACK, restarts, the 4011 port, the probe and start errors.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createEventLog } from '../../src/events.js';
import { createSilentLogger } from '../../src/log.js';
import { decodePacket, encodePacket, type DhcpPacket } from '../../src/dhcp/packet.js';
import { MessageType, Opt, readOptions } from '../../src/dhcp/options.js';
import { createDhcpServer, type DhcpServerOptions } from '../../src/dhcp/server-policy.js';
import { probeForDhcpServer } from '../../src/dhcp/probe.js';
import { loadLeaseFile } from '../../src/dhcp/lease-file.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { fixture } from './helpers.js';
import { ip4, lease, request, udpClient } from './loopback-client.js';

async function setup(t: { teardown(fn: () => Promise<void> | void): void }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dhcpsrv-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const client = await udpClient();
  t.teardown(() => client.close());
  const leaseFile = path.join(dir, 'leases.json');
  const base = (extra: Partial<DhcpServerOptions> = {}): DhcpServerOptions => ({
    address: '127.0.0.1',
    host: '127.0.0.1',
    dhcpPort: 0,
    proxyPort: 0,
    httpPort: 8080,
    range: { start: '127.0.0.100', end: '127.0.0.102' },
    leaseFile,
    clientPort: client.port,
    broadcastAddress: '127.0.0.1',
    log: createSilentLogger(),
    ...extra,
  });
  return { client, leaseFile, base };
}

test('DISCOVER/REQUEST over UDP: OFFER then ACK; the lease is on disk before the ACK; events and logs carry mac and ip', async (t) => {
  const { client, leaseFile, base } = await setup(t);
  const { log, lines } = captureLogger();
  const events = createEventLog();
  const server = createDhcpServer(base({ log, events, reservations: () => [{ mac: '52:54:00:00:00:0b', ip: '127.0.0.50', hostname: 'node-b' }] }));
  const { dhcpPort, proxyPort } = await server.start();
  t.teardown(() => server.stop());
  t.true(dhcpPort > 0 && proxyPort > 0);
  const { offer, ack } = await lease(client, dhcpPort, '52:54:00:00:00:0a', 0x1000);
  t.is(offer.yiaddr, '127.0.0.100');
  t.is(readOptions(offer).messageType, MessageType.OFFER);
  t.is(ack.yiaddr, '127.0.0.100');
  t.is(readOptions(ack).messageType, MessageType.ACK);
  const onDisk = await loadLeaseFile(leaseFile);
  t.like(onDisk.leases[0], { ip: '127.0.0.100', state: 'bound', mac: '52:54:00:00:00:0a' });
  t.deepEqual(
    events.list({ mac: '52:54:00:00:00:0a' }).map((e) => [e.type, e.ip]),
    [
      ['dhcp-offer', '127.0.0.100'],
      ['dhcp-ack', '127.0.0.100'],
    ],
  );
  t.truthy(
    lines.find((l) => l['msg'] === 'dhcp ack' && l['mac'] === '52:54:00:00:00:0a' && l['ip'] === '127.0.0.100' && l['xid'] === 0x1001 && l['level'] === 30),
  );
  const b = await lease(client, dhcpPort, '52:54:00:00:00:0b', 0x2000);
  t.is(b.ack.yiaddr, '127.0.0.50', 'reservation');
  t.like(server.stats(), { offers: 2, acks: 2, leases: { bound: 2 } });
  // Release then decline are silent but recorded.
  await client.send(
    request(MessageType.RELEASE, '52:54:00:00:00:0b', 0x2002, { ciaddr: '127.0.0.50', flags: 0 }, [{ code: Opt.SERVER_ID, data: ip4('127.0.0.1') }]),
    dhcpPort,
  );
  await client.send(
    request(MessageType.DECLINE, '52:54:00:00:00:0a', 0x2003, {}, [
      { code: Opt.SERVER_ID, data: ip4('127.0.0.1') },
      { code: Opt.REQUESTED_IP, data: ip4('127.0.0.100') },
    ]),
    dhcpPort,
  );
  for (let i = 0; i < 50 && server.stats().declines < 1; i++) await new Promise((r) => setTimeout(r, 20));
  t.like(server.stats(), { releases: 1, declines: 1 });
  t.deepEqual(
    events
      .list({ mac: '52:54:00:00:00:0b' })
      .map((e) => e.type)
      .slice(-1),
    ['dhcp-release'],
  );
  t.deepEqual(
    events
      .list({ mac: '52:54:00:00:00:0a' })
      .map((e) => e.type)
      .slice(-1),
    ['dhcp-decline'],
  );
});

test('a restart keeps leases: the same client gets the same address, another client does not', async (t) => {
  const { client, base } = await setup(t);
  const first = createDhcpServer(base());
  const p1 = await first.start();
  const a = await lease(client, p1.dhcpPort, '52:54:00:00:00:0a', 0x3000);
  const b = await lease(client, p1.dhcpPort, '52:54:00:00:00:0b', 0x3100);
  await first.stop();
  const events = createEventLog();
  const second = createDhcpServer(base({ events }));
  const p2 = await second.start();
  t.teardown(() => second.stop());
  t.like(second.stats(), { leases: { bound: 2 } });
  // A new client first, so it would take the lowest address if the leases were lost.
  const c = await lease(client, p2.dhcpPort, '52:54:00:00:00:0c', 0x3200);
  t.is(c.ack.yiaddr, '127.0.0.102');
  await client.send(request(MessageType.DISCOVER, '52:54:00:00:00:0b', 0x3300), p2.dhcpPort);
  t.is((await client.next(0x3300)).yiaddr, b.ack.yiaddr);
  await client.send(request(MessageType.DISCOVER, '52:54:00:00:00:0a', 0x3400), p2.dhcpPort);
  t.is((await client.next(0x3400)).yiaddr, a.ack.yiaddr);
  // The pool is full now: a fourth client gets nothing, never a duplicate.
  await client.send(request(MessageType.DISCOVER, '52:54:00:00:00:0d', 0x3500), p2.dhcpPort);
  await t.throwsAsync(client.next(0x3500, 500));
  t.like(second.stats(), { exhausted: 1 });
  // ... and the refusal is on that machine's boot timeline.
  t.like(events.list({ mac: '52:54:00:00:00:0d' }).at(-1), { type: 'dhcp-refused', detail: { reason: 'pool exhausted' } });
});

test('port 4011 is answered as the ProxyDHCP does', async (t) => {
  const { client, base } = await setup(t);
  const server = createDhcpServer(base());
  const { proxyPort } = await server.start();
  t.teardown(() => server.stop());
  const req = decodePacket(fixture('edk2-ovmf-x64-request-4011'));
  await client.send(encodePacket({ ...req, xid: 0x4011, ciaddr: '127.0.0.100' }), proxyPort);
  const ack = await client.next(0x4011);
  t.like(ack, { file: 'snponly.efi', siaddr: '127.0.0.1', yiaddr: '0.0.0.0' });
  t.is(readOptions(ack).messageType, MessageType.ACK);
});

test('the server keeps answering after 2000 broken datagrams', async (t) => {
  const { client, base } = await setup(t);
  // Mutated copies that still decode are real DISCOVERs from random MACs: give them room.
  const { log, lines } = captureLogger();
  const server = createDhcpServer(base({ log, range: { start: '127.0.0.100', end: '127.0.3.200' } }));
  const { dhcpPort } = await server.start();
  t.teardown(() => server.stop());
  const good = fixture('busybox-udhcpc-discover');
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(good.subarray(0, (i * 7) % good.length));
    if (b.length > 10) b[i % b.length] = i & 0xff;
    await client.send(b, dhcpPort);
    // Flow control: the server shares this process; never overflow its receive buffer.
    if (i % 100 === 99) {
      const until = Date.now() + 2000;
      while (server.stats().received < i - 20 && Date.now() < until) await new Promise((r) => setTimeout(r, 1));
    }
  }
  await client.send(request(MessageType.DISCOVER, '52:54:00:00:00:0e', 0x5000), dhcpPort);
  const offer = await client.next(0x5000);
  t.regex(offer.yiaddr, /^127\.0\.[0-3]\.\d+$/);
  t.true(server.stats().malformed > 1000, JSON.stringify(server.stats()));
  t.false(
    lines.some((l) => (l['level'] as number) >= 50),
    'no handler failure',
  );
});

test('bad options reject before binding', async (t) => {
  const { base } = await setup(t);
  await t.throwsAsync(createDhcpServer(base({ range: { start: '10.0.0.1', end: '10.0.0.5' } })).start(), { code: 'ERR_DHCP_RANGE' } as never);
  await t.throwsAsync(createDhcpServer(base({ leaseTime: 5 })).start(), { code: 'ERR_DHCP_CONFIG' } as never);
  await t.throwsAsync(createDhcpServer(base({ router: 'gateway' })).start(), {
    code: 'ERR_DHCP_CONFIG',
    message: /router "gateway" is not an ipv4 address/,
  } as never);
  await t.throwsAsync(createDhcpServer(base({ dns: ['1.1.1.1', '1.1.1'] })).start(), { code: 'ERR_DHCP_CONFIG', message: /dns "1.1.1"/ } as never);
  await t.throwsAsync(createDhcpServer(base({ domain: 'bad domain' })).start(), { code: 'ERR_DHCP_CONFIG' } as never);
  await t.throwsAsync(createDhcpServer(base({ address: '10.250.250.250' })).start(), { code: 'ERR_DHCP_BIND' } as never);
});

test('a corrupt lease file is moved aside with an error; the server starts with an empty table and keeps leasing', async (t) => {
  const { client, base, leaseFile } = await setup(t);
  await writeFile(leaseFile, '{ not json');
  const { log, lines } = captureLogger();
  const server = createDhcpServer(base({ log }));
  const { dhcpPort } = await server.start();
  t.teardown(() => server.stop());
  t.deepEqual(server.leases().leases, []);
  const error = lines.find((l) => l['level'] === 50);
  t.regex(String(error?.['msg']), /corrupt or empty: moved to/);
  t.is(await readFile(String(error?.['movedTo']), 'utf8'), '{ not json');
  const { ack } = await lease(client, dhcpPort, '52:54:00:00:00:0a', 0x7000);
  t.is(ack.yiaddr, '127.0.0.100');
  t.like((await loadLeaseFile(leaseFile)).leases[0], { ip: '127.0.0.100', state: 'bound' });
});

test('probeForDhcpServer: reports a server that answers, and none when nobody does', async (t) => {
  // Our own server plays "the other server": its replies go to the probe's port.
  const probeSocket = dgram.createSocket('udp4');
  await new Promise<void>((r) => probeSocket.bind(0, '127.0.0.1', r));
  const probePort = probeSocket.address().port;
  await new Promise<void>((r) => probeSocket.close(() => r()));
  const { base } = await setup(t);
  const server = createDhcpServer(base({ clientPort: probePort }));
  const { dhcpPort } = await server.start();
  t.teardown(() => server.stop());
  const log = createSilentLogger();
  // On loopback the other server's id is our own address, which the probe ignores by default.
  const found = await probeForDhcpServer({
    address: '127.0.0.1',
    clientPort: probePort,
    serverPort: dhcpPort,
    broadcastAddress: '127.0.0.1',
    timeoutMs: 2000,
    log,
    ignoreServers: [],
    mac: '02:00:00:00:00:01',
  });
  t.true(found.found);
  t.like(found.servers[0], { from: '127.0.0.1', offered: '127.0.0.100', messageType: MessageType.OFFER });
  t.true(found.elapsedMs < 2000);
  const none = await probeForDhcpServer({ address: '127.0.0.1', clientPort: 0, serverPort: dhcpPort + 0, broadcastAddress: '127.0.0.2', timeoutMs: 600, log });
  t.false(none.found);
  t.true(none.elapsedMs >= 550);
});

test('a relayed DISCOVER is served from the relay network and answered to giaddr on the relay port', async (t) => {
  const { base } = await setup(t);
  // The "relay" is a socket on 127.1.0.1 (loopback); its network is served as a relayed one.
  const relay = dgram.createSocket('udp4');
  const got: DhcpPacket[] = [];
  relay.on('message', (m) => got.push(decodePacket(m)));
  await new Promise<void>((r) => relay.bind(0, '127.1.0.1', r));
  t.teardown(() => new Promise<void>((r) => relay.close(() => r())));
  const relayPort = relay.address().port;
  const server = createDhcpServer(
    base({ relayPort, relayedNetworks: [{ subnet: '127.1.0.0/16', range: { start: '127.1.0.100', end: '127.1.0.110' }, router: '127.1.0.1' }] }),
  );
  const { dhcpPort } = await server.start();
  t.teardown(() => server.stop());
  const msg = request(MessageType.DISCOVER, '52:54:00:00:00:1a', 0x6000, { giaddr: '127.1.0.1', hops: 1 }, [
    { code: 82, data: Buffer.from('01020a0b', 'hex') },
  ]);
  await new Promise<void>((resolve, reject) => relay.send(msg, dhcpPort, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  const offer = got[0];
  t.truthy(offer, 'the relay received the offer');
  t.like(offer, { xid: 0x6000, yiaddr: '127.1.0.100', giaddr: '127.1.0.1' });
  t.is(offer?.options.at(-1)?.code, 82);
});

test('refusals reach the boot timeline: a claim for a reserved address (both machines), a full pool, a spent budget; logs stay a few lines', async (t) => {
  const { client, base } = await setup(t);
  const { log, lines } = captureLogger();
  const events = createEventLog();
  const owner = '52:54:00:00:00:0b';
  const server = createDhcpServer(base({ log, events, newLeasesPerMinute: 2, reservations: () => [{ mac: owner, ip: '127.0.0.50' }] }));
  const { dhcpPort } = await server.start();
  t.teardown(() => server.stop());
  for (let i = 0; i < 5; i++) {
    await client.send(request(MessageType.REQUEST, '52:54:00:00:00:0c', 0x7000 + i, {}, [{ code: Opt.REQUESTED_IP, data: ip4('127.0.0.50') }]), dhcpPort);
    t.is(readOptions(await client.next(0x7000 + i)).messageType, MessageType.NAK);
  }
  t.like(
    events.list({ mac: '52:54:00:00:00:0c' }).find((e) => e.type === 'dhcp-refused'),
    { ip: '127.0.0.50', detail: { reason: 'reserved for another mac', reservedFor: owner } },
  );
  t.like(
    events.list({ mac: owner }).find((e) => e.type === 'dhcp-refused'),
    { detail: { claimedBy: '52:54:00:00:00:0c' } },
  );
  t.is(lines.filter((l) => /is reserved for/.test(String(l['msg']))).length, 5, 'claims: five lines a minute at most');
  // Two new leases a minute: the third new client is refused, once in the log, on its timeline.
  for (let i = 0; i < 4; i++) await client.send(request(MessageType.DISCOVER, `52:54:00:00:01:0${i}`, 0x7100 + i), dhcpPort);
  await client.next(0x7100);
  await client.next(0x7101);
  for (let k = 0; k < 50 && server.stats().rateLimited < 2; k++) await new Promise((r) => setTimeout(r, 20));
  t.like(server.stats(), { rateLimited: 2, reservationClaims: 5 });
  t.is(lines.filter((l) => /new-lease budget spent/.test(String(l['msg']))).length, 1);
  t.like(events.list({ mac: '52:54:00:00:01:02' }).at(-1), { type: 'dhcp-refused', detail: { reason: 'new-lease rate' } });
});
