import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createSilentLogger } from '../../src/log.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createDiscovery } from '../../src/store/discovery.js';
import { openFileStore } from '../../src/store/file-store.js';
import { createStateStore, openStateStore, stateDirFor } from '../../src/store/state-store.js';
import { createMemoryStore } from '../../src/store/store.js';
import { FACTS_LIMITS } from '../../src/store/schema.js';
import { addRancherAssets, auth, startHarness } from './helpers.js';

const MAC = '52:54:00:12:34:56';
const FACTS = {
  mac: MAC,
  hostname: 'rancher',
  cpu: { model: 'QEMU Virtual CPU', count: 2 },
  memory: { totalKiB: 2048000 },
  nics: [{ name: 'eth0', mac: MAC }],
  disks: [],
};

/** Poll `check` (bounded: 100 x 20 ms) until it is true. */
async function eventually(check: () => Promise<boolean> | boolean): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

test('facts from an unknown MAC register it as discovered in the state store (201), without a token; db untouched', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.dhcpSaw(MAC); // the runtime record's lastIp is an address DHCP saw for the MAC
  const r = await h.req('POST', `/api/machines/${MAC.replace(/:/g, '-')}/facts`, { body: FACTS });
  t.is(r.status, 201);
  t.like(r.json, { mac: MAC, outcome: 'registered', discovered: true });
  const m = (await h.req('GET', `/api/machines/${MAC}`, { headers: auth })).json;
  t.is(m.declared, null);
  t.like(m.runtime, { mac: MAC, discovered: true, lastIp: '127.0.0.1', factsAt: r.json.factsAt });
  t.deepEqual(m.facts, FACTS);
  t.is(await h.store.getMachine(MAC), undefined);
  t.deepEqual((await h.store.snapshot()).machines, []);
  t.is(h.events.list({ mac: MAC }).at(-1)?.type, 'facts');
  // Lookups answer with the last address.
  t.like((await h.req('GET', `/api/lookups?q=${MAC}`, { headers: auth })).json, { mac: MAC, ip: '127.0.0.1', machine: null });
  t.like((await h.req('GET', '/api/lookups?q=127.0.0.1', { headers: auth })).json, { mac: MAC });
});

test("facts survive PUT and PATCH of the declared record; the declared part is the operator's only", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  t.is((await h.req('POST', `/api/machines/${MAC}/facts`, { body: FACTS })).status, 201);
  const machine = { hostname: 'web-1', profile: 'rancheros', labels: { role: 'web' }, vars: { password: 'pw' }, state: 'ready' };
  t.is((await h.req('PUT', `/api/machines/${MAC}`, { body: machine, headers: auth })).status, 201);
  const second = await h.req('POST', `/api/machines/${MAC}/facts`, { body: { ...FACTS, hostname: 'again', profile: 'evil', state: 'provisioned' } });
  t.is(second.status, 200);
  t.is(second.json.outcome, 'updated');
  const m = (await h.req('GET', `/api/machines/${MAC}`, { headers: auth })).json;
  t.deepEqual(m.declared, { mac: MAC, ...machine });
  t.is(m.facts.hostname, 'again');
  t.is(m.facts.profile, 'evil'); // a fact, not the machine's profile
  t.is(m.runtime.discovered, false);
  const patched = await h.req('PATCH', `/api/machines/${MAC}`, { body: { hostname: 'web-2', labels: { role: null, zone: 'a' }, vars: null }, headers: auth });
  t.is(patched.status, 200);
  t.deepEqual(patched.json, { mac: MAC, hostname: 'web-2', profile: 'rancheros', labels: { zone: 'a' }, state: 'ready' });
  const after = (await h.req('GET', `/api/machines/${MAC}`, { headers: auth })).json;
  t.is(after.facts.hostname, 'again');
  // PUT replaces the declared part only: facts stay.
  t.is((await h.req('PUT', `/api/machines/${MAC}`, { body: { profile: 'rancheros' }, headers: auth })).status, 200);
  t.is((await h.req('GET', `/api/machines/${MAC}`, { headers: auth })).json.facts.hostname, 'again');
  // A PATCH naming a runtime field is refused like a PUT would be.
  const bad = await h.req('PATCH', `/api/machines/${MAC}`, { body: { facts: {} }, headers: auth });
  t.is(bad.status, 422);
});

test('bad reports get a clear 4xx and change nothing, including a 1,000-deep body', async (t) => {
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
    ['1000 deep', { raw: `${'{"a":'.repeat(1000)}1${'}'.repeat(1000)}`, headers: { 'content-type': 'application/json' } }, 422, 'ERR_VALIDATION', 'facts'],
    [
      '1000 deep arrays',
      { raw: `{"a":${'['.repeat(1000)}${']'.repeat(1000)}}`, headers: { 'content-type': 'application/json' } },
      422,
      'ERR_VALIDATION',
      'facts',
    ],
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
  t.is((await h.req('GET', '/api/machines', { headers: auth })).json.length, 0);
  t.is(h.events.list({ mac: MAC }).length, 0);
});

test('first boot: an unknown MAC is registered as discovered in the state store, and boots the default', async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  await addRancherAssets(h.assetsDir);
  const uuid = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
  h.dhcpSaw(MAC);
  const r = await h.req('GET', `/ipxe?mac=52-54-00-12-34-56&uuid=${uuid}&arch=x86_64&platform=efi`);
  t.regex(r.text, /^kernel /m); // the boot itself is not held up
  let list: any[] = [];
  t.true(await eventually(async () => (list = (await h.req('GET', '/api/machines', { headers: auth })).json).length === 1));
  t.like(list[0], { mac: MAC, declared: null, runtime: { discovered: true, uuid, lastIp: '127.0.0.1', lastProfile: 'rancheros' } });
  t.deepEqual((await h.store.snapshot()).machines, []);
  const again = await h.req('GET', `/ipxe?mac=${MAC}&uuid=${uuid}`);
  t.regex(again.text, /booting rancheros on 52:54:00:12:34:56/);
  // The operator declares it: listed once, declared, with its runtime state.
  t.is((await h.req('PUT', `/api/machines/${MAC}`, { body: { state: 'ready', profile: 'rancheros' }, headers: auth })).status, 201);
  const declared = (await h.req('GET', '/api/machines', { headers: auth })).json;
  t.is(declared.length, 1);
  t.like(declared[0], { mac: MAC, declared: { profile: 'rancheros' }, runtime: { uuid } });
});

test("attack: /ipxe?mac=ATTACKER&uuid=VICTIM never outranks the operator's MAC record of the victim", async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  await addRancherAssets(h.assetsDir);
  const victim = '52:54:00:00:00:01';
  const victimUuid = '11111111-2222-3333-4444-555555555555';
  await h.req('PUT', '/api/profiles/keys', {
    body: { kernel: '/assets/rancheros/v1.5.8/vmlinuz', initrd: ['/assets/rancheros/v1.5.8/initrd'], cmdline: { 'netboot.keys': 'victim-keys' } },
    headers: auth,
  });
  await h.req('PUT', `/api/machines/${victim}`, { body: { profile: 'keys' }, headers: auth });
  // The attacker replays the victim's UUID (option 97 is broadcast) with its own MAC.
  for (let i = 0; i < 3; i++) await h.req('GET', `/ipxe?mac=66:66:66:66:66:66&uuid=${victimUuid}`);
  await new Promise((r) => setTimeout(r, 300));
  const boot = await h.req('GET', `/ipxe?mac=${victim}&uuid=${victimUuid}`);
  t.regex(boot.text, /netboot\.keys=victim-keys/);
  t.regex(boot.text, /selected by machine-mac/);
});

test('a flood of unknown MACs: capped at the discovered-machine limit; facts over the cap are 503', async (t) => {
  const store = createMemoryStore(createDefaultDb());
  const state = createStateStore({ log: createSilentLogger(), limits: { maxDiscovered: 50 } });
  const discovery = createDiscovery({ store, state, log: createSilentLogger() });
  const h = await startHarness({ store, discovery });
  t.teardown(() => h.close());
  const macs = Array.from({ length: 120 }, (_, i) => `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`);
  await Promise.all(macs.map((mac) => h.req('GET', `/ipxe?mac=${mac}`)));
  await discovery.flush();
  t.is(state.list().length, 50);
  t.deepEqual((await store.snapshot()).machines, []);
  const full = await h.req('POST', '/api/machines/02:00:00:00:ff:ff/facts', { body: FACTS });
  t.is(full.status, 503);
  t.is(full.json.error.code, 'ERR_DISCOVERY_FULL');
  t.is((await h.req('POST', `/api/machines/${macs[0]}/facts`, { body: FACTS })).status, 200);
  // Bulk delete of the discovered frees the slots; declared machines keep their state.
  await h.req('PUT', `/api/machines/${macs[1]}`, { body: { profile: 'rancheros' }, headers: auth });
  t.is((await h.req('DELETE', '/api/machines', { headers: auth })).status, 400);
  const del = await h.req('DELETE', '/api/machines?discovered=true', { headers: auth });
  t.is(del.status, 200);
  t.is(del.json.deleted, 49);
  t.is(state.list().length, 1);
  t.is((await h.req('POST', '/api/machines/02:00:00:00:ff:ff/facts', { body: FACTS })).status, 201);
});

test('discovery off: unknown machines are not registered, declared ones still tracked; switchable at runtime', async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  t.is((await h.req('PUT', '/api/discovery', { body: { enabled: false }, headers: auth })).status, 200);
  t.like((await h.req('GET', '/api/discovery', { headers: auth })).json, { enabled: false });
  await h.req('GET', '/ipxe?mac=02:00:00:00:00:01');
  const off = await h.req('POST', '/api/machines/02:00:00:00:00:02/facts', { body: FACTS });
  t.is(off.status, 403);
  t.is(off.json.error.code, 'ERR_DISCOVERY_OFF');
  await h.req('PUT', `/api/machines/${MAC}`, { body: { profile: 'rancheros' }, headers: auth });
  t.is((await h.req('POST', `/api/machines/${MAC}/facts`, { body: FACTS })).status, 201);
  const list = (await h.req('GET', '/api/machines', { headers: auth })).json;
  t.deepEqual(
    list.map((m: { mac: string }) => m.mac),
    [MAC],
  );
  await h.req('PUT', '/api/discovery', { body: { enabled: true }, headers: auth });
  t.is((await h.req('POST', '/api/machines/02:00:00:00:00:02/facts', { body: FACTS })).status, 201);
  t.is((await h.req('PUT', '/api/discovery', { body: { enabled: 'yes' }, headers: auth })).status, 422);
});

test("attack: 120 unknown machines chaining /ipxe and posting facts leave the operator's hand-edited db.json byte for byte", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-db-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'db.json');
  // Hand-edited: odd indentation, keys in the operator's order, a trailing newline.
  const text = `{\n      "defaultProfile": "rancheros",\n  "profiles": [ { "kernel": "/assets/rancheros/v1.5.8/vmlinuz", "id": "rancheros",\n "initrd": ["/assets/rancheros/v1.5.8/initrd"] } ],\n  "machines": [], "groups": []\n}\n`;
  await writeFile(file, text);
  const store = await openFileStore({ path: file, log: createSilentLogger(), watch: false });
  const state = await openStateStore({ dir: stateDirFor(file), log: createSilentLogger(), flushMs: 5 });
  const discovery = createDiscovery({ store, state, log: createSilentLogger() });
  const h = await startHarness({ store, discovery });
  t.teardown(async () => {
    await h.close();
    await state.close();
    await store.close();
  });
  await addRancherAssets(h.assetsDir);
  const macs = Array.from({ length: 120 }, (_, i) => `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`);
  for (let round = 0; round < 3; round++) {
    for (const mac of macs) t.regex((await h.req('GET', `/ipxe?mac=${mac}`)).text, /^kernel /m);
  }
  for (const mac of macs.slice(0, 20)) t.is((await h.req('POST', `/api/machines/${mac}/facts`, { body: { ...FACTS, mac } })).status, 200);
  await discovery.flush();
  await state.flush();
  t.is(state.list().length, 120);
  t.is(await readFile(file, 'utf8'), text);
});

test('values from the network never reach a script: hostile facts and a reported hostname stay out of /ipxe, cloud-configs and metadata', async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  await addRancherAssets(h.assetsDir);
  const hostile = 'evil\nshell || reboot ${net0/ip} "q"';
  const facts = { ...FACTS, hostname: hostile, labels: { role: hostile }, vars: { password: hostile } };
  t.is((await h.req('POST', `/api/machines/${MAC}/facts`, { body: facts })).status, 201);
  // Declared with a hostname of the operator's: that one is placed, the reported one never.
  t.is((await h.req('PUT', `/api/machines/${MAC}`, { body: { hostname: 'op-name' }, headers: auth })).status, 201);
  for (const p of [
    `/ipxe?mac=${MAC}`,
    `/cloud-config?mac=${MAC}`,
    `/cloud?mac=${MAC}`,
    `/metadata?mac=${MAC}`,
    `/nocloud/${MAC}/meta-data`,
    `/nocloud/${MAC}/user-data`,
  ]) {
    const r = await h.req('GET', p);
    t.is(r.status, 200, p);
    t.notRegex(r.text, /evil|shell|net0\/ip/, p);
  }
  t.regex((await h.req('GET', `/cloud-config?mac=${MAC}`)).text, /hostname: "op-name"/);
});
