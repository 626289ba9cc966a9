/**
 * The DHCPv6 service (src/dhcp6/service.ts) on [::1] with ephemeral ports and injected probe
 * results: the refusal beside another server (naming its address and DUID) and --force, the
 * auto decision, stepping down while running (no addresses, router advertisements off, a
 * dhcp-mode event) and back after two quiet probes, and a client naming a foreign server DUID
 * triggering a probe. The same with a real dnsmasq and real clients: probe-netns.test.ts.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { createEventLog } from '../../src/events.js';
import type { Probe6Answer, Probe6Result } from '../../src/dhcp6/probe.js';
import { createDhcp6Service, type Dhcp6ServiceOptions } from '../../src/dhcp6/service.js';
import { decodeMessage, duidLl, encodeIaNa, encodeMessage, findOption, Msg6, Opt6, type Message6 } from '../../src/dhcp6/packet.js';
import { edk2Solicit, loopbackOptions } from './helpers.js';

const other: Probe6Answer = {
  duid: '00030001525400aabbcc',
  from: 'fe80::5054:ff:feaa:bbcc',
  addresses: ['fd00:126::5ab'],
  pxe: false,
  messageType: 'advertise',
};
const found = (servers: Probe6Answer[]): Probe6Result => ({ found: servers.length > 0, servers, elapsedMs: 5 });

async function setup(t: { teardown(fn: () => unknown): void }) {
  const socket = dgram.createSocket('udp6');
  const inbox: Message6[] = [];
  socket.on('message', (m) => inbox.push(decodeMessage(m)));
  await new Promise<void>((r) => socket.bind(0, '::1', r));
  t.teardown(() => new Promise<void>((r) => socket.close(() => r())));
  let answer = found([]);
  let probes = 0;
  const serving: boolean[] = [];
  const events = createEventLog();
  const options = (extra: Partial<Dhcp6ServiceOptions> = {}): Dhcp6ServiceOptions => ({
    ...loopbackOptions({ interface: 'lo', proxyPort: -1, events }),
    mode: 'server',
    probe: async () => {
      probes += 1;
      return answer;
    },
    probeIntervalMs: 0,
    defaultRouteInterfaces: () => [],
    onServing: (on) => void serving.push(on),
    ...extra,
  });
  const ask = async (port: number, m: Message6): Promise<Message6 | undefined> => {
    inbox.length = 0;
    await new Promise<void>((r) => socket.send(encodeMessage(m), port, '::1', () => r()));
    for (let i = 0; i < 40 && inbox.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
    return inbox.shift();
  };
  return { options, ask, events, serving, setProbe: (r: Probe6Result) => (answer = r), probes: () => probes };
}

test('server mode refuses to start beside another DHCPv6 server, naming its address and DUID; --force starts with a warning', async (t) => {
  const s = await setup(t);
  s.setProbe(found([other]));
  const refused = createDhcp6Service(s.options());
  const err = await t.throwsAsync(refused.start(), { code: 'ERR_DHCP6_OTHER_SERVER' });
  t.is(
    err!.message,
    'another dhcpv6 server answers on lo: fe80::5054:ff:feaa:bbcc (DUID 00030001525400aabbcc, advertised fd00:126::5ab); run --dhcp6-mode proxy beside it, stop it, or pass --force',
  );
  t.is(refused.server(), undefined, 'nothing bound');
  const forced = createDhcp6Service(s.options({ force: true }));
  t.teardown(() => forced.stop());
  t.like(await forced.start(), { mode: 'server' });
  t.deepEqual(s.serving, [true]);
});

test('auto: proxy beside another server or on an uplink, server alone; proxy mode starts beside a server', async (t) => {
  const s = await setup(t);
  s.setProbe(found([other]));
  const beside = createDhcp6Service(s.options({ mode: 'auto' }));
  t.teardown(() => beside.stop());
  t.like(await beside.start(), { mode: 'proxy' });
  t.regex(beside.state().reason, /^auto: dhcpv6 server fe80::5054:ff:feaa:bbcc/);
  await beside.stop();
  s.setProbe(found([]));
  const uplink = createDhcp6Service(s.options({ mode: 'auto', defaultRouteInterfaces: () => ['lo'] }));
  t.teardown(() => uplink.stop());
  t.like(await uplink.start(), { mode: 'proxy' });
  await uplink.stop();
  const alone = createDhcp6Service(s.options({ mode: 'auto' }));
  t.teardown(() => alone.stop());
  t.like(await alone.start(), { mode: 'server' });
  await alone.stop();
  s.setProbe(found([other]));
  const proxy = createDhcp6Service(s.options({ mode: 'proxy' }));
  t.teardown(() => proxy.stop());
  t.like(await proxy.start(), { mode: 'proxy' });
});

test('every mode refuses to start beside another PXE responder (boot-file URL or PXEClient), unless --force', async (t) => {
  const s = await setup(t);
  s.setProbe(found([{ ...other, addresses: [], pxe: true }]));
  for (const mode of ['proxy', 'server', 'auto'] as const) {
    const err = await t.throwsAsync(createDhcp6Service(s.options({ mode })).start(), { code: 'ERR_DHCP6_OTHER_RESPONDER' });
    t.regex(err!.message, /^another dhcpv6 pxe responder answers on lo: fe80::5054:ff:feaa:bbcc \(DUID 00030001525400aabbcc\); two would race/);
  }
  const forced = createDhcp6Service(s.options({ mode: 'proxy', force: true }));
  t.teardown(() => forced.stop());
  t.like(await forced.start(), { mode: 'proxy' });
});

test('steps down when another server appears (no addresses, RAs off, an event), resumes after two quiet probes', async (t) => {
  const s = await setup(t);
  const service = createDhcp6Service(s.options());
  t.teardown(() => service.stop());
  const { port } = await service.start();
  const adv = await s.ask(port, edk2Solicit());
  t.truthy(adv && findOption(adv.options, Opt6.IA_NA), 'leasing at first');

  s.setProbe(found([other]));
  await service.probeNow();
  t.true(service.state().steppedDown);
  t.regex(service.state().reason, /stepped down: dhcpv6 server fe80::5054:ff:feaa:bbcc/);
  t.deepEqual(s.serving, [true, false]);
  t.like(
    s.events.list({}).find((e) => e.type === 'dhcp-mode'),
    { detail: { family: 'ipv6', mode: 'proxy', steppedDown: true } },
  );
  // Stepped down: the PXE client gets the proxy Advertise (boot URL, vendor class, no IA).
  const proxied = await s.ask(port, edk2Solicit());
  t.is(proxied?.type, Msg6.ADVERTISE);
  t.is(findOption(proxied!.options, Opt6.IA_NA), undefined);
  t.truthy(findOption(proxied!.options, Opt6.VENDOR_CLASS));

  s.setProbe(found([]));
  await service.probeNow();
  t.true(service.state().steppedDown, 'one quiet probe is not enough');
  await service.probeNow();
  t.false(service.state().steppedDown);
  t.deepEqual(s.serving, [true, false, true]);
  const again = await s.ask(port, edk2Solicit());
  t.truthy(again && findOption(again.options, Opt6.IA_NA));
});

test('--force keeps leasing when another server appears; a Request naming a foreign DUID triggers a probe at once', async (t) => {
  const s = await setup(t);
  const forced = createDhcp6Service(s.options({ force: true }));
  t.teardown(() => forced.stop());
  await forced.start();
  s.setProbe(found([other]));
  await forced.probeNow();
  t.false(forced.state().steppedDown);
  await forced.stop();

  s.setProbe(found([]));
  const service = createDhcp6Service(s.options({ probeIntervalMs: 600_000 }));
  t.teardown(() => service.stop());
  const { port } = await service.start();
  const before = s.probes();
  s.setProbe(found([other]));
  // A client's Request to another server (multicast to ff02::1:2 reaches us too).
  const request: Message6 = {
    type: Msg6.REQUEST,
    transactionId: 9,
    options: [
      { code: Opt6.CLIENT_ID, data: duidLl('52:54:00:00:00:09') },
      { code: Opt6.SERVER_ID, data: Buffer.from(other.duid, 'hex') },
      encodeIaNa({ iaid: 1, t1: 0, t2: 0, addresses: [] }),
    ],
  };
  t.is(await s.ask(port, request), undefined, 'not answered: it is for another server');
  for (let i = 0; i < 40 && !service.state().steppedDown; i++) await new Promise((r) => setTimeout(r, 25));
  t.is(s.probes(), before + 1);
  t.true(service.state().steppedDown);
});
