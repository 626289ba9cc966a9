/**
 * The DHCP service on 127.0.0.1 with ephemeral ports and injected probe results: refusals and
 * --force, the auto decision, stepping down to the proxy policy and back. The same rules with
 * real clients and a real dnsmasq are in service-netns.test.ts.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createEventLog } from '../../src/events.js';
import { createSilentLogger } from '../../src/log.js';
import { decodePacket, encodePacket, type DhcpPacket } from '../../src/dhcp/packet.js';
import type { ProbeAnswer, ProbeResult } from '../../src/dhcp/probe.js';
import { createDhcpService, type DhcpServiceOptions } from '../../src/dhcp/service.js';
import { fixture } from './helpers.js';

const answer = (serverId: string, offered: string, pxe: boolean): ProbeAnswer => ({ serverId, from: serverId, offered, messageType: 2, pxe });
const result = (servers: ProbeAnswer[]): ProbeResult => ({ found: servers.length > 0, servers, mac: '02:00:00:00:00:01', xid: 1, elapsedMs: 10 });

async function setup(t: { teardown(fn: () => Promise<void> | void): void }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dhcp-service-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const socket = dgram.createSocket('udp4');
  const got: DhcpPacket[] = [];
  socket.on('message', (m) => got.push(decodePacket(m)));
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => socket.close(() => r())));
  let probeAnswer = result([]);
  const events = createEventLog();
  const options = (extra: Partial<DhcpServiceOptions> = {}): DhcpServiceOptions => ({
    mode: 'server',
    address: '127.0.0.1',
    host: '127.0.0.1',
    dhcpPort: 0,
    proxyPort: 0,
    httpPort: 8080,
    range: { start: '127.0.0.100', end: '127.0.0.102' },
    leaseFile: path.join(dir, 'leases.json'),
    clientPort: socket.address().port,
    broadcastAddress: '127.0.0.1',
    probe: async () => probeAnswer,
    probeIntervalMs: 0,
    portHolders: async () => [],
    defaultRouteInterfaces: () => [],
    log: createSilentLogger(),
    events,
    ...extra,
  });
  const ask = async (port: number, name: string, xid: number): Promise<DhcpPacket | undefined> => {
    const bytes = encodePacket({ ...decodePacket(fixture(name)), xid });
    await new Promise<void>((r, j) => socket.send(bytes, port, '127.0.0.1', (e) => (e ? j(e) : r())));
    for (let i = 0; i < 40; i++) {
      const hit = got.find((p) => p.xid === xid);
      if (hit) return hit;
      await new Promise((r) => setTimeout(r, 25));
    }
    return undefined;
  };
  return { options, ask, events, setProbe: (r: ProbeResult) => (probeAnswer = r) };
}

test('a server steps down to the proxy policy while another server answers, and resumes after two quiet probes', async (t) => {
  const { options, ask, events, setProbe } = await setup(t);
  const service = createDhcpService(options());
  const { dhcpPort, mode } = await service.start();
  t.teardown(() => service.stop());
  t.is(mode, 'server');
  t.not((await ask(dhcpPort, 'edk2-ovmf-x64-discover', 1))?.yiaddr, '0.0.0.0');

  setProbe(result([answer('127.0.0.9', '127.0.0.150', false)]));
  await service.probeNow();
  t.like(service.state(), { steppedDown: true, mode: 'server' });
  t.regex(service.state().reason, /stepped down: dhcp server 127\.0\.0\.9/);
  t.like(events.list({ mac: '' }).at(-1), { type: 'dhcp-mode', detail: { mode: 'proxy', steppedDown: true, servers: ['127.0.0.9'] } });
  // PXE still answered, as a proxy: no address; a plain client gets nothing.
  t.like(await ask(dhcpPort, 'edk2-ovmf-x64-discover', 2), { yiaddr: '0.0.0.0' });
  t.is(await ask(dhcpPort, 'busybox-udhcpc-discover', 3), undefined);

  setProbe(result([]));
  await service.probeNow();
  t.true(service.state().steppedDown, 'one quiet probe is not enough');
  await service.probeNow();
  t.false(service.state().steppedDown);
  t.not((await ask(dhcpPort, 'busybox-udhcpc-discover', 4))?.yiaddr, '0.0.0.0');
  t.like(events.list({ mac: '' }).at(-1), { type: 'dhcp-mode', detail: { mode: 'server', steppedDown: false } });
});

test('start refuses a second responder, another dhcp server (server mode) and shared ports, naming them; --force warns instead', async (t) => {
  const { options, setProbe } = await setup(t);
  setProbe(result([answer('127.0.0.7', '0.0.0.0', true)]));
  for (const mode of ['proxy', 'server', 'auto'] as const) {
    await t.throwsAsync(
      createDhcpService(options({ mode })).start(),
      { code: 'ERR_DHCP_OTHER_RESPONDER', message: /another pxe responder \(127\.0\.0\.7\) already answers pxe clients on lo.*--force/ } as never,
      mode,
    );
  }
  setProbe(result([answer('127.0.0.9', '127.0.0.150', false)]));
  await t.throwsAsync(createDhcpService(options()).start(), {
    code: 'ERR_DHCP_OTHER_SERVER',
    message: /another dhcp server \(127\.0\.0\.9\) answers on lo.*--force/,
  } as never);
  const proxy = createDhcpService(options({ mode: 'proxy' }));
  t.is((await proxy.start()).mode, 'proxy', 'a proxy beside a plain dhcp server is the point');
  await proxy.stop();
  const forced = createDhcpService(options({ force: true }));
  t.is((await forced.start()).mode, 'server');
  await forced.stop();
  setProbe(result([]));
  const holder = { port: 67, address: '0.0.0.0', owner: 'dnsmasq (pid 42)' };
  await t.throwsAsync(createDhcpService(options({ checkPorts: true, portHolders: async () => [holder] })).start(), {
    code: 'ERR_DHCP_PORT_SHARED',
    message: /dnsmasq \(pid 42\) on 0\.0\.0\.0:67/,
  } as never);
});

test('auto: server only without answers and without the default route on the interface; the decision is in the state', async (t) => {
  const { options, setProbe } = await setup(t);
  const uplink = createDhcpService(options({ mode: 'auto', defaultRouteInterfaces: () => ['lo'] }));
  t.is((await uplink.start()).mode, 'proxy');
  t.regex(uplink.state().reason, /lo carries this host's default route/);
  await uplink.stop();
  const alone = createDhcpService(options({ mode: 'auto' }));
  t.is((await alone.start()).mode, 'server');
  await alone.stop();
  setProbe(result([answer('127.0.0.9', '127.0.0.150', false)]));
  const beside = createDhcpService(options({ mode: 'auto' }));
  t.is((await beside.start()).mode, 'proxy');
  await beside.stop();
  const off = createDhcpService(options({ mode: 'off' }));
  t.deepEqual(await off.start(), { mode: 'off', dhcpPort: 0, proxyPort: 0 });
});
