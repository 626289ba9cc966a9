import test from 'ava';
import dgram from 'node:dgram';
import { createEventLog } from '../../src/events.js';
import { createLogger } from '../../src/log.js';
import { decodePacket, encodePacket, getOption, type DhcpPacket } from '../../src/dhcp/packet.js';
import { readOptions } from '../../src/dhcp/options.js';
import { createProxyDhcpServer, type ProxyDhcpServerOptions } from '../../src/dhcp/proxy-policy.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { fixture, fixtureNames, fuzzDatagrams } from './helpers.js';

/** A UDP socket on 127.0.0.1 that queues what it receives. */
async function udpClient(address = '127.0.0.1') {
  const socket = dgram.createSocket('udp4');
  const queue: Array<{ msg: Buffer; from: dgram.RemoteInfo }> = [];
  const waiters: Array<() => void> = [];
  socket.on('message', (msg, from) => {
    queue.push({ msg, from });
    waiters.splice(0).forEach((w) => w());
  });
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  return {
    socket,
    port: socket.address().port,
    queue,
    send(msg: Buffer, port: number, to = '127.0.0.1'): Promise<void> {
      return new Promise((resolve, reject) => socket.send(msg, port, to, (err) => (err ? reject(err) : resolve())));
    },
    async next(timeoutMs = 3000): Promise<{ msg: Buffer; from: dgram.RemoteInfo }> {
      const deadline = Date.now() + timeoutMs;
      while (queue.length === 0) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no datagram within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      return queue.shift()!;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

async function startServer(t: { teardown(fn: () => Promise<void> | void): void }, extra: Partial<ProxyDhcpServerOptions> & { clientPort: number }) {
  const { log, lines } = captureLogger();
  const events = createEventLog();
  const server = createProxyDhcpServer({
    address: '127.0.0.1',
    host: '127.0.0.1',
    dhcpPort: 0,
    proxyPort: 0,
    httpPort: 8080,
    broadcastAddress: '127.0.0.1',
    log,
    events,
    ...extra,
  });
  const ports = await server.start();
  t.teardown(() => server.stop());
  return { server, ports, lines, events };
}

function withAddress(p: DhcpPacket, ciaddr: string): Buffer {
  return encodePacket({ ...p, ciaddr });
}

test('captured EDK2 DISCOVER on 67 gets an OFFER broadcast to the client port; logged and recorded', async (t) => {
  const client = await udpClient();
  t.teardown(() => client.close());
  const { ports, lines, events } = await startServer(t, { clientPort: client.port });
  t.true(ports.dhcpPort > 0 && ports.proxyPort > 0 && ports.dhcpPort !== ports.proxyPort);

  await client.send(fixture('edk2-ovmf-x64-discover'), ports.dhcpPort);
  const { msg, from } = await client.next();
  t.is(from.port, ports.dhcpPort, 'reply leaves from the dhcp port');
  const reply = decodePacket(msg);
  const o = readOptions(reply);
  t.is(o.messageType, 2);
  t.is(reply.xid, 0x76653592);
  t.is(reply.yiaddr, '0.0.0.0');
  t.is(reply.siaddr, '127.0.0.1');
  t.is(o.serverId, '127.0.0.1');
  t.is(o.vendorClass, 'PXEClient');
  t.is(reply.file, '', 'UEFI is sent on to 4011 (dnsmasq style)');
  t.is(getOption(reply, 43), undefined);
  t.true((reply.flags & 0x8000) !== 0);

  const info = lines.find((l) => l['msg']?.toString().startsWith('proxydhcp offer'));
  t.truthy(info);
  t.is(info?.['level'], 30);
  t.is(info?.['mac'], '52:54:00:12:34:63');
  t.is(info?.['arch'], 'efi-x64');
  t.is(info?.['xid'], 0x76653592);
  t.is(info?.['file'], '');
  const ev = events.list({ mac: '52:54:00:12:34:63' });
  t.is(ev.length, 1);
  t.is(ev[0]?.type, 'dhcp-offer');
  t.is(ev[0]?.ip, undefined);
  t.deepEqual(ev[0]?.detail, { arch: 'efi-x64', client: 'pxe', file: '', port: ports.dhcpPort });
});

test('4011 REQUEST: the ACK goes back to the source address and port, not to the client port', async (t) => {
  const clientPortSocket = await udpClient();
  const source = await udpClient();
  t.teardown(() => clientPortSocket.close());
  t.teardown(() => source.close());
  const { ports, events } = await startServer(t, { clientPort: clientPortSocket.port });

  const req = decodePacket(fixture('edk2-ovmf-x64-request-4011'));
  await source.send(withAddress(req, '127.0.0.170'), ports.proxyPort);
  const { msg, from } = await source.next();
  t.is(from.port, ports.proxyPort, 'ACK leaves from the 4011 port');
  const ack = decodePacket(msg);
  t.is(readOptions(ack).messageType, 5);
  t.is(ack.file, 'snponly.efi');
  t.is(ack.ciaddr, '127.0.0.170');
  t.is(ack.yiaddr, '0.0.0.0');
  t.deepEqual(getOption(ack, 97), getOption(req, 97));
  // A marker through the dhcp port proves the client-port socket got nothing before it.
  await source.send(fixture('edk2-ovmf-x64-discover'), ports.dhcpPort);
  t.is(decodePacket((await clientPortSocket.next()).msg).xid, 0x76653592, 'first datagram on the client port is the later offer');
  const ack0 = events.list({ mac: '52:54:00:12:34:63' })[0];
  t.is(ack0?.type, 'dhcp-ack');
  t.is(ack0?.ip, '127.0.0.170');
  t.deepEqual(ack0?.detail, { arch: 'efi-x64', client: 'pxe', file: 'snponly.efi', port: ports.proxyPort });
});

test('iPXE fixtures get the boot script URL on 67 and on 4011', async (t) => {
  const client = await udpClient();
  t.teardown(() => client.close());
  const { ports } = await startServer(t, { clientPort: client.port, httpPort: 8081 });
  await client.send(fixture('ipxe-bios-rom-discover'), ports.dhcpPort);
  t.is(decodePacket((await client.next()).msg).file, 'http://127.0.0.1:8081/boot.ipxe');
  const req = decodePacket(fixture('ipxe-bios-rom-request-4011'));
  await client.send(withAddress(req, '127.0.0.169'), ports.proxyPort);
  const ack = decodePacket((await client.next()).msg);
  t.is(ack.file, 'http://127.0.0.1:8081/boot.ipxe');
  t.deepEqual(readOptions(ack).pxe?.bootItem, { type: 0x8002, layer: 0 });
});

test('non-PXE and foreign-subnet requests get nothing; logged at debug', async (t) => {
  const client = await udpClient();
  t.teardown(() => client.close());
  const { server, ports, lines } = await startServer(t, { clientPort: client.port });
  await client.send(fixture('busybox-udhcpc-discover'), ports.dhcpPort);
  // ciaddr outside 127.0.0.0/8: a client of another network
  await client.send(fixture('edk2-ovmf-x64-request-4011'), ports.proxyPort);
  await client.send(fixture('edk2-ovmf-x64-discover'), ports.dhcpPort);
  t.is(decodePacket((await client.next()).msg).xid, 0x76653592, 'only the PXE discover was answered');
  // The 4011 request went to the other socket: its datagram may be handled after the answer on 67.
  for (let waited = 0; server.stats().received < 3 && waited < 2_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
  t.like(server.stats(), { received: 3, ignored: 2 });
  t.truthy(lines.find((l) => l['level'] === 20 && /not PXEClient/.test(String(l['reason']))));
  t.truthy(lines.find((l) => l['level'] === 20 && /ciaddr 10.77.0.170 is outside 127.0.0.0\/8/.test(String(l['reason']))));
});

test('relayed request is answered to the relay at giaddr:67', async (t) => {
  const relay = await udpClient('127.0.0.2');
  t.teardown(() => relay.close());
  const { ports } = await startServer(t, { clientPort: 9, relayPort: relay.port });
  const req = decodePacket(fixture('edk2-ovmf-x64-discover'));
  await relay.send(encodePacket({ ...req, giaddr: '127.0.0.2', hops: 1 }), ports.dhcpPort);
  const reply = decodePacket((await relay.next()).msg);
  t.is(reply.giaddr, '127.0.0.2');
  t.is(reply.xid, req.xid);
});

test('10,000 random and mutated datagrams: no crash, warn for broken PXE, and the server still answers', async (t) => {
  const client = await udpClient();
  t.teardown(() => client.close());
  // allowRelayed false: a random giaddr must never make the server send off loopback.
  const { server, ports, lines } = await startServer(t, { clientPort: client.port, allowRelayed: false });
  const seeds = fixtureNames()
    .filter((n) => !n.startsWith('dnsmasq'))
    .map(fixture);
  const started = Date.now();
  let sent = 0;
  let i = -1;
  for (const buf of fuzzDatagrams({
    seed: 0x9e3779b9,
    count: 10_000,
    seeds,
    randomEvery: 3,
    maxRandomBytes: 700,
    flipFrom: 236,
    maxFlips: 6,
    truncateEvery: 5,
  })) {
    i += 1;
    if (Date.now() - started >= 30_000) break;
    await client.send(buf, i % 2 === 0 ? ports.dhcpPort : ports.proxyPort);
    sent += 1;
    // Flow control: let the server (same process) catch up so its receive buffer never overflows.
    if (i % 100 === 99) {
      const until = Date.now() + 2000;
      while (server.stats().received < sent - 20 && Date.now() < until) await new Promise((r) => setTimeout(r, 1));
    }
  }
  t.is(sent, 10_000);
  // Wait until the server has seen (nearly) everything we sent.
  const deadline = Date.now() + 10_000;
  while (server.stats().received < sent && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const stats = server.stats();
  t.true(stats.received >= sent * 0.99, `received ${stats.received} of ${sent}`);
  t.true(stats.malformed > 1000, `malformed ${stats.malformed}`);
  t.true(
    lines.some((l) => l['level'] === 40 && l['msg'] === 'dropped malformed datagram'),
    'broken PXE is a warning',
  );
  // A fuzz run must not become megabytes of log: at most 10 malformed lines a minute.
  const malformedLines = lines.filter((l) => String(l['msg']).startsWith('dropped malformed datagram')).length;
  t.true(malformedLines <= 11, `${malformedLines} malformed-datagram lines for ${stats.malformed} datagrams`);
  t.false(
    lines.some((l) => l['level'] === 50),
    'no handler failure',
  );
  // The server still answers a good request afterwards.
  client.queue.length = 0;
  const marker = decodePacket(fixture('edk2-ovmf-x64-discover'));
  await client.send(encodePacket({ ...marker, xid: 0x0badcafe }), ports.dhcpPort);
  const deadline2 = Date.now() + 5000;
  let found = false;
  while (!found && Date.now() < deadline2) {
    const { msg } = await client.next(5000);
    found = decodePacket(msg).xid === 0x0badcafe;
  }
  t.true(found);
});

test('start() rejects with ERR_DHCP_BIND when the port is taken, and releases what it opened', async (t) => {
  const holder = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => holder.bind(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())));
  const taken = holder.address().port;
  const server = createProxyDhcpServer({
    address: '127.0.0.1',
    host: '127.0.0.1',
    dhcpPort: 0,
    proxyPort: taken,
    httpPort: 80,
    log: createLogger({ level: 'silent' }),
  });
  await t.throwsAsync(server.start(), { code: 'ERR_DHCP_BIND', message: new RegExp(`port ${taken} on 127.0.0.1: EADDRINUSE`) });
  await t.notThrowsAsync(server.stop());
});

test('start() rejects an address this host does not have, and a wrong interface', async (t) => {
  const log = createLogger({ level: 'silent' });
  const a = createProxyDhcpServer({ address: '192.0.2.77', dhcpPort: 0, proxyPort: 0, httpPort: 80, log });
  await t.throwsAsync(a.start(), { code: 'ERR_DHCP_BIND', message: /address 192.0.2.77 is not assigned to any interface/ });
  const b = createProxyDhcpServer({ address: '127.0.0.1', interface: 'nosuch0', host: '127.0.0.1', dhcpPort: 0, proxyPort: 0, httpPort: 80, log });
  await t.throwsAsync(b.start(), { code: 'ERR_DHCP_BIND', message: /address 127.0.0.1 is on interface lo, not nosuch0/ });
});

test('stop() frees the ports, is idempotent, and a stopped server cannot restart', async (t) => {
  const log = createLogger({ level: 'silent' });
  const server = createProxyDhcpServer({ address: '127.0.0.1', host: '127.0.0.1', dhcpPort: 0, proxyPort: 0, httpPort: 80, log });
  await t.notThrowsAsync(createProxyDhcpServer({ address: '127.0.0.1', dhcpPort: 0, proxyPort: 0, httpPort: 80, log }).stop(), 'stop before start');
  const ports = await server.start();
  await server.stop();
  await server.stop();
  const again = createProxyDhcpServer({ address: '127.0.0.1', host: '127.0.0.1', dhcpPort: ports.dhcpPort, proxyPort: ports.proxyPort, httpPort: 80, log });
  t.deepEqual(await again.start(), ports);
  await again.stop();
  await t.throwsAsync(server.start(), { code: 'ERR_DHCP_BIND', message: /stopped/ });
});

test('stop() during start(): start rejects instead of leaving sockets open', async (t) => {
  const log = createLogger({ level: 'silent' });
  const server = createProxyDhcpServer({ address: '127.0.0.1', host: '127.0.0.1', dhcpPort: 0, proxyPort: 0, httpPort: 80, log });
  const starting = server.start();
  await server.stop();
  await t.throwsAsync(starting, { code: 'ERR_DHCP_BIND', message: /stopped while starting/ });
});

test('a subnet override must be a cidr; a valid one widens admission', async (t) => {
  const log = createLogger({ level: 'silent' });
  const bad = createProxyDhcpServer({ address: '127.0.0.1', host: '127.0.0.1', subnet: '10.0.0.0/40', dhcpPort: 0, proxyPort: 0, httpPort: 80, log });
  await t.throwsAsync(bad.start(), { code: 'ERR_DHCP_BIND', message: /subnet "10.0.0.0\/40" is not a cidr/ });
  const source = await udpClient();
  t.teardown(() => source.close());
  const { ports } = await startServer(t, { clientPort: source.port, subnet: '0.0.0.0/0' });
  // ciaddr 10.77.0.170 is outside 127/8 but inside 0.0.0.0/0: answered, back to the source port.
  await source.send(fixture('edk2-ovmf-x64-request-4011'), ports.proxyPort);
  t.is(decodePacket((await source.next()).msg).file, 'snponly.efi');
});

test('a configured client of another network asking our address on 4011 directly (EDK2 behind a relay) is answered; one whose ciaddr is not its source is not', async (t) => {
  const far = await udpClient('127.0.1.5');
  t.teardown(() => far.close());
  const { ports } = await startServer(t, { clientPort: far.port, subnet: '127.0.0.0/24' });
  const req = decodePacket(fixture('edk2-ovmf-x64-request-4011'));
  await far.send(withAddress(req, '127.0.1.5'), ports.proxyPort);
  const ack = decodePacket((await far.next()).msg);
  t.is(ack.file, 'snponly.efi');
  await far.send(encodePacket({ ...req, xid: 0x51, ciaddr: '127.0.1.6' }), ports.proxyPort);
  await t.throwsAsync(far.next(700));
});

test('secure boot over UEFI HTTP boot is not answered (signed grub has no http): warned, in the timeline; PXE from the same machine is', async (t) => {
  const client = await udpClient();
  t.teardown(() => client.close());
  const { chooseLoader } = await import('../../src/boot/loader.js');
  const { parseDb } = await import('../../src/store/schema.js');
  const db = parseDb({});
  const { ports, lines, events } = await startServer(t, {
    clientPort: client.port,
    chooseBootFile: (b) => {
      const c = chooseLoader(db, { mac: b.mac, firmware: b.firmware, client: b.client === 'ipxe' ? 'pxe' : b.client }, true);
      return c.kind === 'refuse' ? { kind: 'refuse', reason: c.reason } : { kind: 'file', file: c.file };
    },
  });
  const pxe = decodePacket(fixture('edk2-ovmf-x64-discover'));
  // The same DISCOVER as OVMF's HTTPv4 boot option sends it: vendor class HTTPClient, arch 16.
  const http: DhcpPacket = {
    ...pxe,
    options: pxe.options.map((o) =>
      o.code === 60 ? { code: 60, data: Buffer.from('HTTPClient:Arch:00016:UNDI:003000') } : o.code === 93 ? { code: 93, data: Buffer.from([0, 16]) } : o,
    ),
  };
  await client.send(encodePacket(http), ports.dhcpPort);
  await t.throwsAsync(client.next(700), { message: /no datagram/ });
  t.truthy(lines.find((l) => l['level'] === 40 && /debian's signed grub has none.*falls back to pxe/.test(String(l['reason']))));
  const diagnosis = events.list().find((e) => e.type === 'boot-diagnosis');
  t.like(diagnosis?.detail, { problem: 'not-answered', client: 'http', arch: 'efi-x64' });
  await client.send(encodePacket(pxe), ports.dhcpPort);
  t.is(decodePacket((await client.next()).msg).xid, pxe.xid, 'the PXE DISCOVER is answered');
});
