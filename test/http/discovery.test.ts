import test from 'ava';
import { createSilentLogger } from '../../src/log.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createDiscovery } from '../../src/store/discovery.js';
import { createMemoryStore } from '../../src/store/store.js';
import { FACTS_LIMITS } from '../../src/store/schema.js';
import { addRancherAssets, auth, startHarness } from './helpers.js';

const MAC = '52:54:00:12:34:56';
const FACTS = { mac: MAC, hostname: 'rancher', cpu: { model: 'QEMU Virtual CPU', count: 2 }, memory: { totalKiB: 2048000 }, nics: [{ name: 'eth0', mac: MAC }], disks: [] };

/** Poll `check` (bounded: 100 x 20 ms) until it is true. */
async function eventually(check: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

test('facts from an unknown MAC register it as discovered (201), without a token', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const r = await h.req('POST', `/api/machines/${MAC.replace(/:/g, '-')}/facts`, { body: FACTS });
  t.is(r.status, 201);
  t.like(r.json, { mac: MAC, outcome: 'registered', state: 'discovered' });
  const m = (await h.req('GET', `/api/machines/${MAC}`)).json;
  t.is(m.state, 'discovered');
  t.deepEqual(m.facts, FACTS);
  t.is(m.lastSeenIp, '127.0.0.1');
  t.is(m.factsAt, r.json.factsAt);
  t.is(m.discoveredAt, m.factsAt);
  t.is(m.profile, undefined);
  t.is(h.events.list({ mac: MAC }).at(-1)?.type, 'facts');
  // Lookups answer with the last address.
  t.like((await h.req('GET', `/api/lookups?q=${MAC}`)).json, { mac: MAC, ip: '127.0.0.1', machine: { state: 'discovered' } });
});

test('facts for an existing machine update facts, factsAt and lastSeenIp only', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const machine = { mac: MAC, hostname: 'web-1', profile: 'rancheros', labels: { role: 'web' }, vars: { password: 'pw' }, state: 'ready' };
  t.is((await h.req('PUT', `/api/machines/${MAC}`, { body: machine, headers: auth })).status, 201);
  const first = await h.req('POST', `/api/machines/${MAC}/facts`, { body: FACTS });
  t.is(first.status, 200);
  t.is(first.json.outcome, 'updated');
  const second = await h.req('POST', `/api/machines/${MAC}/facts`, { body: { ...FACTS, hostname: 'again', profile: 'evil', state: 'provisioned' } });
  t.is(second.status, 200);
  const m = (await h.req('GET', `/api/machines/${MAC}`)).json;
  t.like(m, machine);
  t.is(m.facts.hostname, 'again');
  t.is(m.facts.profile, 'evil'); // a fact, not the machine's profile
  t.is(m.factsAt, second.json.factsAt);
  t.is(m.lastSeenIp, '127.0.0.1');
  t.is(m.discoveredAt, undefined);
});

test('bad reports get a clear 4xx and change nothing', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const deep: Record<string, unknown> = {};
  let cur = deep;
  for (let i = 0; i < FACTS_LIMITS.depth + 1; i++) cur = (cur.x = {}) as Record<string, unknown>;
  const cases: Array<[string, { body?: unknown; raw?: string; headers?: Record<string, string> }, number, string, string?]> = [
    ['oversized', { raw: JSON.stringify({ blob: 'x'.repeat(70_000) }), headers: { 'content-type': 'application/json' } }, 413, 'ERR_BODY_TOO_LARGE'],
    ['not json', { raw: '{"a":', headers: { 'content-type': 'application/json' } }, 400, 'ERR_BAD_JSON'],
    ['not an object', { body: [1, 2] }, 422, 'ERR_VALIDATION', '(root)'],
    ['wrong media type', { raw: 'a=b', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, 'ERR_UNSUPPORTED_MEDIA_TYPE'],
    ['long string', { body: { cpu: { model: 'x'.repeat(FACTS_LIMITS.stringLength + 1) } } }, 422, 'ERR_VALIDATION', 'facts.cpu.model'],
    ['too deep', { body: deep }, 422, 'ERR_VALIDATION'],
    ['bad key', { body: { 'has space': 1 } }, 422, 'ERR_VALIDATION', 'facts.has space'],
    ['too many keys', { body: Object.fromEntries(Array.from({ length: FACTS_LIMITS.keysPerObject + 1 }, (_, i) => [`k${i}`, i])) }, 422, 'ERR_VALIDATION'],
  ];
  for (const [name, opts, status, code, field] of cases) {
    const r = await h.req('POST', `/api/machines/${MAC}/facts`, opts);
    t.is(r.status, status, name);
    t.is(r.json?.error?.code, code, name);
    if (field) t.is(r.json.error.field, field, name);
    t.truthy(r.json?.error?.message, name);
  }
  const badMac = await h.req('POST', '/api/machines/zz/facts', { body: FACTS });
  t.is(badMac.status, 400);
  t.is((await h.req('GET', '/api/machines')).json.length, 0);
  t.is(h.events.list({ mac: MAC }).length, 0);
});

test('first boot: an unknown MAC asking for its script is registered as discovered, once', async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  await addRancherAssets(h.assetsDir);
  const uuid = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
  const r = await h.req('GET', `/ipxe?mac=52-54-00-12-34-56&uuid=${uuid}&arch=x86_64&platform=efi`);
  t.regex(r.text, /^kernel /m); // the boot itself is not held up
  t.true(await eventually(async () => (await h.store.getMachine(MAC)) !== undefined));
  const m = (await h.req('GET', `/api/machines/${MAC}`)).json;
  t.like(m, { mac: MAC, uuid, state: 'discovered', lastSeenIp: '127.0.0.1' });
  t.truthy(m.discoveredAt);
  // Still boots the default profile, and a second boot writes nothing new.
  const again = await h.req('GET', `/ipxe?mac=${MAC}&uuid=${uuid}`);
  t.regex(again.text, /booting rancheros on 52:54:00:12:34:56/);
  t.deepEqual((await h.req('GET', `/api/machines/${MAC}`)).json, m);
  // A known machine booting from another NIC (found by UUID) is not registered twice.
  await h.req('GET', `/ipxe?mac=52:54:00:12:34:57&uuid=${uuid}`);
  await new Promise((resolve) => setTimeout(resolve, 250));
  t.is((await h.store.listMachines()).length, 1);
  // The registered machine can be assigned a profile by an operator.
  const put = await h.req('PUT', `/api/machines/${MAC}`, { body: { ...m, state: 'ready', profile: 'rancheros' }, headers: auth });
  t.is(put.status, 200);
});

test('a flood of unknown MACs: batched writes, capped at the discovered-machine limit', async (t) => {
  const store = createMemoryStore(createDefaultDb());
  let writes = 0;
  const counting = { ...store, recordDiscoveries: (u: Parameters<typeof store.recordDiscoveries>[0], o: { cap: number }) => (writes++, store.recordDiscoveries(u, o)) };
  const discovery = createDiscovery({ store: counting, log: createSilentLogger(), cap: 50, batchMs: 20 });
  const h = await startHarness({ store: counting, discovery });
  t.teardown(() => h.close());
  const macs = Array.from({ length: 120 }, (_, i) => `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`);
  await Promise.all(macs.map((mac) => h.req('GET', `/ipxe?mac=${mac}`)));
  await discovery.flush();
  const machines = await store.listMachines();
  t.is(machines.length, 50);
  t.true(machines.every((m) => m.state === 'discovered'));
  t.true(writes >= 1);
  // Sightings that arrive within one batch window cost one store write, not one each.
  const burstStore = createMemoryStore(createDefaultDb());
  let burstWrites = 0;
  const burst = createDiscovery({
    store: { ...burstStore, recordDiscoveries: (u, o) => (burstWrites++, burstStore.recordDiscoveries(u, o)) },
    log: createSilentLogger(),
    batchMs: 50,
  });
  const outcomes = await Promise.all([...macs, ...macs].map((mac) => burst.sighted({ mac })));
  t.is(burstWrites, 1);
  t.is(outcomes.filter((o) => o === 'registered').length, 240);
  t.is((await burstStore.listMachines()).length, 120);
  // Over the cap, a facts report from a new machine is refused with 503; known ones still update.
  const full = await h.req('POST', '/api/machines/02:00:00:00:ff:ff/facts', { body: FACTS });
  t.is(full.status, 503);
  t.is(full.json.error.code, 'ERR_DISCOVERY_FULL');
  t.is((await h.req('POST', `/api/machines/${machines[0]!.mac}/facts`, { body: FACTS })).status, 200);
  // Assigning a state frees a slot.
  await store.putMachine({ ...machines[0]!, state: 'ready' });
  t.is((await h.req('POST', '/api/machines/02:00:00:00:ff:ff/facts', { body: FACTS })).status, 201);
});

test('lookups by IP find a machine by the address it reported from, after the event log forgot it', async (t) => {
  const store = createMemoryStore(createDefaultDb());
  await store.recordDiscoveries([{ mac: MAC, at: new Date().toISOString(), ip: '10.0.0.42', facts: FACTS }], { cap: 10 });
  const h = await startHarness({ store });
  t.teardown(() => h.close());
  t.like((await h.req('GET', '/api/lookups?q=10.0.0.42')).json, { mac: MAC, ip: '10.0.0.42', machine: { state: 'discovered' } });
  t.like((await h.req('GET', `/api/lookups?q=${MAC}`)).json, { ip: '10.0.0.42' });
});
