import test from 'ava';
import path from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { createSilentLogger } from '../../src/log.js';
import { openFileStore } from '../../src/store/file-store.js';
import { dbJsonSchema } from '../../src/store/schema.js';
import { auth, startHarness, TOKEN } from './helpers.js';
import { tempDir } from '../store/helpers.js';

const profile = { kernel: '/assets/p/vmlinuz', initrd: ['/assets/p/initrd'], cmdline: { quiet: '' } };

test('profiles: PUT creates (201) then replaces (200), GET, list, DELETE, 404s', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const c = await h.req('PUT', '/api/profiles/p1', { body: profile, headers: auth });
  t.is(c.status, 201);
  t.deepEqual(c.json, { id: 'p1', ...profile });
  const u = await h.req('PUT', '/api/profiles/p1', { body: { ...profile, id: 'p1', name: 'P one' }, headers: auth });
  t.is(u.status, 200);
  t.is((await h.req('GET', '/api/profiles/p1', { headers: auth })).json.name, 'P one');
  t.deepEqual((await h.req('GET', '/api/profiles', { headers: auth })).json.map((p: { id: string }) => p.id).sort(), ['debian-installer', 'p1', 'rancheros']);
  t.is((await h.req('DELETE', '/api/profiles/p1', { headers: auth })).status, 204);
  const gone = await h.req('GET', '/api/profiles/p1', { headers: auth });
  t.is(gone.status, 404);
  t.deepEqual(gone.json, { error: { code: 'ERR_PROFILE_NOT_FOUND', message: 'profile "p1" does not exist' } });
  t.is((await h.req('DELETE', '/api/profiles/p1', { headers: auth })).json.error.code, 'ERR_PROFILE_NOT_FOUND');
});

test('machines and groups: CRUD, MAC in any notation, 404s', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const m = await h.req('PUT', '/api/machines/52-54-00-AA-BB-CC', { body: { hostname: 'n1', labels: { role: 'db' } }, headers: auth });
  t.is(m.status, 201);
  t.is(m.json.mac, '52:54:00:aa:bb:cc');
  t.is((await h.req('GET', '/api/machines/52:54:00:aa:bb:cc', { headers: auth })).json.declared.hostname, 'n1');
  t.is((await h.req('GET', '/api/machines', { headers: auth })).json.length, 1);
  t.is((await h.req('GET', '/api/machines/52:54:00:00:00:00', { headers: auth })).json.error.code, 'ERR_MACHINE_NOT_FOUND');
  const badMac = await h.req('GET', '/api/machines/not-a-mac', { headers: auth });
  t.is(badMac.status, 400);
  t.is(badMac.json.error.field, 'mac');
  const g = await h.req('PUT', '/api/groups/dbs', { body: { profile: 'rancheros', selector: { labels: { role: 'db' } } }, headers: auth });
  t.is(g.status, 201);
  t.is((await h.req('GET', '/api/groups/dbs', { headers: auth })).json.profile, 'rancheros');
  t.is((await h.req('GET', '/api/groups', { headers: auth })).json.length, 1);
  t.is((await h.req('GET', '/api/groups/nope', { headers: auth })).status, 404);
  t.is((await h.req('DELETE', '/api/groups/dbs', { headers: auth })).status, 204);
  t.is((await h.req('DELETE', '/api/machines/52:54:00:aa:bb:cc', { headers: auth })).status, 204);
  t.is((await h.req('DELETE', '/api/machines/52:54:00:aa:bb:cc', { headers: auth })).status, 404);
});

test('writes need the bearer token (401) and change nothing without it', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const cases: [string, string][] = [
    ['PUT', '/api/profiles/x'],
    ['DELETE', '/api/profiles/rancheros'],
    ['PUT', '/api/machines/52:54:00:00:00:01'],
    ['DELETE', '/api/machines/52:54:00:00:00:01'],
    ['PUT', '/api/groups/g'],
    ['DELETE', '/api/groups/g'],
    ['PUT', '/api/default-profile'],
  ];
  for (const [method, p] of cases) {
    for (const headers of [{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: TOKEN }, { authorization: 'Basic Zm9vOmJhcg==' }] as Record<
      string,
      string
    >[]) {
      const r = await h.req(method, p, { body: { ...profile, profile: 'rancheros' }, headers });
      t.is(r.status, 401, `${method} ${p} ${JSON.stringify(headers)}`);
      t.is(r.json.error.code, 'ERR_UNAUTHORIZED');
      t.regex(String(r.headers['www-authenticate']), /^Bearer/);
    }
  }
  t.deepEqual(
    (await h.store.listProfiles()).map((p) => p.id),
    ['rancheros', 'debian-installer'],
  );
  t.deepEqual(await h.store.listMachines(), []);
});

test('bad bodies: 400 bad JSON, 415 media type, 422 naming the field; nothing changes', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const before = await h.store.snapshot();
  const bad = await h.req('PUT', '/api/profiles/x', { raw: '{"kernel": ', headers: { ...auth, 'content-type': 'application/json' } });
  t.is(bad.status, 400);
  t.is(bad.json.error.code, 'ERR_BAD_JSON');
  const empty = await h.req('PUT', '/api/profiles/x', { raw: '', headers: auth });
  t.is(empty.json.error.code, 'ERR_BAD_JSON');
  const media = await h.req('PUT', '/api/profiles/x', { raw: 'kernel=x', headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' } });
  t.is(media.status, 415);
  const arr = await h.req('PUT', '/api/profiles/x', { body: [1, 2], headers: auth });
  t.is(arr.status, 422);
  const field = await h.req('PUT', '/api/profiles/x', { body: { ...profile, initrd: ['/assets/ok', 'ftp://no'] }, headers: auth });
  t.is(field.status, 422);
  t.is(field.json.error.code, 'ERR_VALIDATION');
  t.is(field.json.error.field, 'initrd.1');
  const unknown = await h.req('PUT', '/api/machines/52:54:00:00:00:01', { body: { hostnme: 'typo' }, headers: auth });
  t.is(unknown.status, 422);
  t.regex(unknown.json.error.message, /unknown field "hostnme"/);
  const mismatch = await h.req('PUT', '/api/profiles/x', { body: { ...profile, id: 'y' }, headers: auth });
  t.is(mismatch.status, 422);
  t.is(mismatch.json.error.field, 'id');
  const macMismatch = await h.req('PUT', '/api/machines/52:54:00:00:00:01', { body: { mac: '52:54:00:00:00:02' }, headers: auth });
  t.is(macMismatch.json.error.field, 'mac');
  const badId = await h.req('PUT', '/api/profiles/Bad%20Id', { body: profile, headers: auth });
  t.is(badId.status, 422);
  t.is(badId.json.error.field, 'id');
  const hostile = await h.req('PUT', '/api/machines/52:54:00:00:00:01', { body: { vars: { k: 'line1\nline2' } }, headers: auth });
  t.is(hostile.status, 422);
  t.is(hostile.json.error.field, 'vars.k');
  const big = await h.req('PUT', '/api/profiles/x', {
    raw: JSON.stringify({ ...profile, name: 'x'.repeat(2 * 1024 * 1024) }),
    headers: { ...auth, 'content-type': 'application/json' },
  });
  t.is(big.status, 413);
  t.deepEqual(await h.store.snapshot(), before);
});

test('deleting a profile in use is 409; default profile get/set', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const r = await h.req('DELETE', '/api/profiles/rancheros', { headers: auth });
  t.is(r.status, 409);
  t.is(r.json.error.code, 'ERR_PROFILE_IN_USE');
  t.deepEqual((await h.req('GET', '/api/default-profile', { headers: auth })).json, { id: 'rancheros' });
  t.is((await h.req('PUT', '/api/default-profile', { body: { id: 'nope' }, headers: auth })).status, 404);
  t.is((await h.req('PUT', '/api/default-profile', { body: { id: null }, headers: auth })).status, 200);
  t.deepEqual((await h.req('GET', '/api/default-profile', { headers: auth })).json, { id: null });
  t.is((await h.req('DELETE', '/api/profiles/rancheros', { headers: auth })).status, 204);
});

test('lookups by MAC, IP and UUID; 400 and 404', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  await h.req('PUT', '/api/machines/52:54:00:00:00:01', { body: { uuid: 'AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE', hostname: 'n1' }, headers: auth });
  h.events.record({ mac: '52:54:00:00:00:01', type: 'dhcp-ack', ip: '10.0.0.50' });
  const byMac = await h.req('GET', '/api/lookups?q=52-54-00-00-00-01', { headers: auth });
  t.like(byMac.json, { mac: '52:54:00:00:00:01', ip: '10.0.0.50', machine: { hostname: 'n1' } });
  const byIp = await h.req('GET', '/api/lookups?q=10.0.0.50', { headers: auth });
  t.like(byIp.json, { mac: '52:54:00:00:00:01', ip: '10.0.0.50', machine: { hostname: 'n1' } });
  const byUuid = await h.req('GET', '/api/lookups?q=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', { headers: auth });
  t.like(byUuid.json, { mac: '52:54:00:00:00:01', ip: '10.0.0.50' });
  // Seen by DHCP but not in the store: still answered.
  h.events.record({ mac: '52:54:00:00:00:77', type: 'dhcp-offer', ip: '10.0.0.77' });
  t.like((await h.req('GET', '/api/lookups?q=10.0.0.77', { headers: auth })).json, { mac: '52:54:00:00:00:77', machine: null });
  t.is((await h.req('GET', '/api/lookups?q=10.9.9.9', { headers: auth })).status, 404);
  const bad = await h.req('GET', '/api/lookups?q=nonsense', { headers: auth });
  t.is(bad.status, 400);
  t.is(bad.json.error.field, 'q');
  t.is((await h.req('GET', '/api/lookups', { headers: auth })).status, 400);
});

test('events per MAC (boot timeline) and recent events', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  h.events.record({ mac: '52:54:00:00:00:01', type: 'dhcp-offer', ip: '10.0.0.5' });
  h.events.record({ mac: '52:54:00:00:00:01', type: 'tftp-file', ip: '10.0.0.5', detail: { file: 'undionly.kpxe' } });
  h.events.record({ mac: '52:54:00:00:00:02', type: 'dhcp-offer' });
  await h.req('GET', '/ipxe?mac=52:54:00:00:00:01');
  const r = await h.req('GET', '/api/events?mac=52-54-00-00-00-01', { headers: auth });
  t.deepEqual(
    r.json.map((e: { type: string }) => e.type),
    ['dhcp-offer', 'tftp-file', 'http-script'],
  );
  t.is((await h.req('GET', '/api/events?limit=2', { headers: auth })).json.length, 2);
  t.is((await h.req('GET', '/api/events?mac=zz', { headers: auth })).status, 400);
  t.is((await h.req('GET', '/api/events?limit=0', { headers: auth })).status, 400);
});

test('schema, healthz, metrics, unknown route, wrong method', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const s = await h.req('GET', '/api/schema', { headers: auth });
  t.is(s.status, 200);
  t.deepEqual(s.json, dbJsonSchema());
  t.deepEqual(s.json, JSON.parse(await readFile(new URL('../../schema/appliance-db.schema.json', import.meta.url), 'utf8')));
  const hz = await h.req('GET', '/healthz');
  t.like(hz.json, { status: 'ok', store: { ok: true } });
  await h.req('GET', '/ipxe?mac=52:54:00:00:00:01');
  await h.req('GET', '/api/profiles/nope', { headers: auth });
  const m = await h.req('GET', '/metrics');
  t.is(m.status, 200);
  t.regex(m.text, /netboot_http_requests_total\{method="GET",route="\/ipxe",status="200"\} 1/);
  t.regex(m.text, /netboot_http_requests_total\{method="GET",route="\/api\/profiles\/:id",status="404"\} 1/);
  t.regex(m.text, /netboot_boot_events_total\{type="http-script"\} 1/);
  const nf = await h.req('GET', '/nope');
  t.deepEqual(nf.json, { error: { code: 'ERR_NOT_FOUND', message: 'no route for GET /nope' } });
  const wm = await h.req('POST', '/api/profiles', { body: {}, headers: auth });
  t.is(wm.status, 405);
  t.is(wm.json.error.code, 'ERR_METHOD_NOT_ALLOWED');
});

test('two apps in one process keep separate metrics registries', async (t) => {
  const a = await startHarness();
  const b = await startHarness();
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  await a.req('GET', '/healthz');
  t.regex((await a.req('GET', '/metrics')).text, /route="\/healthz",status="200"\} 1/);
  t.notRegex((await b.req('GET', '/metrics')).text, /route="\/healthz"/);
});

test('a store failure is a coded 5xx, not a crash', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const broken = h.store;
  broken.listProfiles = async () => {
    throw new Error('disk on fire');
  };
  const r = await h.req('GET', '/api/profiles', { headers: auth });
  t.is(r.status, 500);
  t.deepEqual(r.json, { error: { code: 'ERR_INTERNAL', message: 'internal error' } });
  // /ipxe turns a store failure into a retry script.
  broken.selectProfile = async () => {
    throw new Error('disk on fire');
  };
  const s = await h.req('GET', '/ipxe?mac=52:54:00:00:00:01');
  t.is(s.status, 200);
  t.regex(s.text, /internal error while building the boot script/);
});

test('200 concurrent API writes against the file store are all present afterwards', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const store = await openFileStore({ path: file, log: createSilentLogger(), watch: false });
  const h = await startHarness({ store });
  t.teardown(async () => {
    await h.close();
    await store.close();
  });
  const mac = (i: number) => `52:54:00:01:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
  const results = await Promise.all(
    Array.from({ length: 200 }, (_, i) => h.req('PUT', `/api/machines/${mac(i)}`, { body: { hostname: `n${i}` }, headers: auth })),
  );
  t.true(
    results.every((r) => r.status === 201),
    JSON.stringify(
      results
        .filter((r) => r.status !== 201)
        .slice(0, 2)
        .map((r) => r.json),
    ),
  );
  t.is((await h.req('GET', '/api/machines', { headers: auth })).json.length, 200);
  const onDisk = JSON.parse(await readFile(file, 'utf8')) as { machines: { mac: string }[] };
  t.deepEqual(new Set(onDisk.machines.map((m) => m.mac)), new Set(Array.from({ length: 200 }, (_, i) => mac(i))));
});

test('a refused hand edit answers 409 on writes and is visible in /healthz', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const store = await openFileStore({ path: file, log: createSilentLogger(), watch: false });
  const h = await startHarness({ store });
  t.teardown(async () => {
    await h.close();
    await store.close();
  });
  await writeFile(file, '{"profiles": [{"id": "x"}]}');
  const w = await h.req('PUT', '/api/profiles/p', { body: profile, headers: auth });
  t.is(w.status, 409);
  t.is(w.json.error.code, 'ERR_STORE_FILE_INVALID');
  t.regex(w.json.error.message, /profiles\.0\.kernel/);
  t.like((await h.req('GET', '/healthz')).json, { status: 'degraded', store: { ok: false } });
  // Still serving the last good state.
  t.is((await h.req('GET', '/api/profiles/rancheros', { headers: auth })).status, 200);
});

test('instrumentEventLog counts events from every subsystem once, in the shared registry', async (t) => {
  const { Registry } = await import('prom-client');
  const { createEventLog } = await import('../../src/events.js');
  const { instrumentEventLog } = await import('../../src/http/metrics.js');
  const registry = new Registry();
  const events = instrumentEventLog(createEventLog(), registry);
  const h = await startHarness({ events, registry });
  t.teardown(() => h.close());
  events.record({ mac: '52:54:00:00:00:01', type: 'dhcp-offer', ip: '127.0.0.1' });
  events.record({ mac: '52:54:00:00:00:01', type: 'tftp-file', ip: '127.0.0.1' });
  await h.req('GET', '/boot.ipxe');
  await h.req('GET', '/ipxe?mac=52:54:00:00:00:01');
  const m = (await h.req('GET', '/metrics')).text;
  t.regex(m, /netboot_boot_events_total\{type="dhcp-offer"\} 1/);
  t.regex(m, /netboot_boot_events_total\{type="tftp-file"\} 1/);
  t.regex(m, /netboot_boot_events_total\{type="http-script"\} 2/);
  t.deepEqual(
    h.events.list({ mac: '52:54:00:00:00:01' }).map((e) => e.type),
    ['dhcp-offer', 'tftp-file', 'http-script', 'http-script'],
  );
});
