import test from 'ava';
import { writeFile, mkdtemp, rm, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createSilentLogger } from '../../src/log.js';
import { writeTempFileSynced, type WriteTempFile } from '../../src/store/durable-json-file.js';
import { openFileStore } from '../../src/store/file-store.js';
import { auth, startHarness, TEMPLATES } from './helpers.js';

const READ = 'read-only-token-0123456789';
const readAuth = { authorization: `Bearer ${READ}` };

test('API reads need a token: none is 401 (vars.password stays private), the read-only token reads and cannot write (403)', async (t) => {
  const h = await startHarness({ apiReadToken: READ });
  t.teardown(() => h.close());
  await h.req('PATCH', '/api/profiles/rancheros', { body: { vars: { password: 'secret-pw' } }, headers: auth });
  for (const p of [
    '/api/profiles',
    '/api/profiles/rancheros',
    '/api/machines',
    '/api/groups',
    '/api/default-profile',
    '/api/events',
    '/api/schema',
    '/api/discovery',
    '/api/lookups?q=10.0.0.1',
    '/api/version',
  ]) {
    const r = await h.req('GET', p);
    t.is(r.status, 401, p);
    t.notRegex(r.text, /secret-pw/, p);
    t.is(r.headers['www-authenticate'], 'Bearer realm="netboot-appliance"', p);
    t.is((await h.req('GET', p, { headers: { authorization: 'Bearer wrong-token-000000' } })).status, 401, p);
  }
  const read = await h.req('GET', '/api/profiles/rancheros', { headers: readAuth });
  t.is(read.status, 200);
  t.is(read.json.vars.password, 'secret-pw');
  t.like((await h.req('GET', '/api/version', { headers: readAuth })).json, { name: 'netboot-appliance' });
  const w = await h.req('PUT', '/api/profiles/x', { body: { kernel: '/assets/x' }, headers: readAuth });
  t.is(w.status, 403);
  t.is(w.json.error.code, 'ERR_FORBIDDEN');
  t.is((await h.req('GET', '/api/profiles/x', { headers: auth })).status, 404);
  // Boot endpoints and the facts POST stay open.
  t.is((await h.req('GET', '/boot.ipxe')).status, 200);
  t.is((await h.req('GET', '/healthz')).status, 200);
});

test('every GET route under /api the app registers needs a token: none and a wrong one are 401', async (t) => {
  const h = await startHarness({ apiReadToken: READ });
  t.teardown(() => h.close());
  // The routes as the router holds them, so a route added later without the check fails here.
  const router = h.app.middleware.map((m) => (m as { router?: { stack: { path: string | RegExp; methods: string[] }[] } }).router).find(Boolean);
  const paths = (router?.stack ?? [])
    .filter((l) => l.methods.includes('GET') && typeof l.path === 'string' && l.path.startsWith('/api'))
    .map((l) => (l.path as string).replace(':mac', '52:54:00:00:00:01').replace(':id', 'rancheros'));
  t.true(paths.length >= 20, `routes found: ${paths.join(' ')}`);
  for (const p of ['/api/version', '/api/machines/52:54:00:00:00:01', '/api/events/stream', '/api/console/status']) t.true(paths.includes(p), p);
  for (const p of paths) {
    t.is((await h.req('GET', p)).status, 401, p);
    t.is((await h.req('GET', p, { headers: { authorization: 'Bearer wrong-token-000000' } })).status, 401, p);
  }
});

test('PATCH is a JSON merge patch (RFC 7396) on profiles and groups; null removes a field', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  await h.req('PUT', '/api/profiles/p', { body: { kernel: '/assets/p/k', cmdline: { quiet: '', console: 'ttyS0' }, vars: { a: 1 } }, headers: auth });
  const r = await h.req('PATCH', '/api/profiles/p', {
    body: { cmdline: { quiet: null, ds: 'nocloud-net;s=http://10.0.0.1/' }, vars: null, name: 'P' },
    headers: auth,
  });
  t.is(r.status, 200);
  t.deepEqual(r.json, { id: 'p', name: 'P', kernel: '/assets/p/k', initrd: [], cmdline: { console: 'ttyS0', ds: 'nocloud-net;s=http://10.0.0.1/' } });
  const bad = await h.req('PATCH', '/api/profiles/p', { body: { cmdline: { console: 'tty S0' } }, headers: auth });
  t.is(bad.status, 422);
  t.is(bad.json.error.field, 'cmdline.console');
  t.is((await h.req('PATCH', '/api/profiles/nope', { body: {}, headers: auth })).status, 404);
  await h.req('PUT', '/api/groups/g', { body: { profile: 'p', selector: { arch: 'x86_64' } }, headers: auth });
  const g = await h.req('PATCH', '/api/groups/g', { body: { selector: { arch: null, labels: { role: 'db' } } }, headers: auth });
  t.deepEqual(g.json, { id: 'g', profile: 'p', selector: { labels: { role: 'db' } } });
});

test('write-time refusals name the field: missing profile, template, reserved address; missing assets are a warning', async (t) => {
  const templates = await mkdtemp(path.join(tmpdir(), 'netboot-tpl-'));
  t.teardown(() => rm(templates, { recursive: true, force: true }));
  await cp(TEMPLATES, templates, { recursive: true });
  await writeFile(path.join(templates, 'matchbox.ign'), '{"ignition":{"version":"3.3.0"}}');
  const h = await startHarness({ templatesDir: templates });
  t.teardown(() => h.close());
  const cases: Array<[string, string, unknown, string]> = [
    ['PUT', '/api/machines/52:54:00:00:00:01', { profile: 'ghost' }, 'profile'],
    ['PUT', '/api/groups/g', { profile: 'ghost' }, 'groups.0.profile'],
    ['PUT', '/api/profiles/p', { kernel: '/assets/p/k', ipxe: 'missing.ipxe.njk' }, 'ipxe'],
    ['PUT', '/api/profiles/p', { kernel: '/assets/p/k', cmdline: 'quiet || reboot' }, 'cmdline'],
    ['PUT', '/api/profiles/p', { kernel: '/assets/p/k', cmdline: { url: 'http://x/?a={{ constructor }}' } }, 'cmdline.url'],
  ];
  for (const [method, p, body, field] of cases) {
    const r = await h.req(method, p, { body, headers: auth });
    t.is(r.status, 422, `${p} ${JSON.stringify(body)}`);
    t.true(String(r.json.error.field).endsWith(field), `${r.json.error.field} vs ${field}`);
  }
  t.is((await h.req('PUT', '/api/machines/52:54:00:00:00:01', { body: { ip: '10.0.0.50' }, headers: auth })).status, 201);
  const dup = await h.req('PUT', '/api/machines/52:54:00:00:00:02', { body: { ip: '10.0.0.50' }, headers: auth });
  t.is(dup.status, 422);
  t.regex(dup.json.error.message, /10\.0\.0\.50 is already reserved by machine 52:54:00:00:00:01/);
  const ok = await h.req('PUT', '/api/profiles/p', { body: { kernel: '/assets/p/k', initrd: ['/assets/p/i'], ignition: 'matchbox.ign' }, headers: auth });
  t.is(ok.status, 201);
  t.regex(String(ok.headers.warning), /^199 netboot-appliance ".*\/assets\/p\/k is not in .* yet/);
});

test('/healthz says degraded while the state store cannot write', async (t) => {
  const { createStateStore } = await import('../../src/store/state-store.js');
  const { createSilentLogger } = await import('../../src/log.js');
  const state = createStateStore({ log: createSilentLogger() });
  const h = await startHarness({ state });
  t.teardown(() => h.close());
  t.like((await h.req('GET', '/healthz')).json, { status: 'ok' });
  state.status = () => ({ ok: false, error: 'disk full', machines: 0, factsBytes: 0 });
  t.like((await h.req('GET', '/healthz')).json, { status: 'degraded', problems: ['state store: disk full'] });
});

test('/healthz says degraded while a database write or a timeline write fails, and ok again once one succeeds', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-health-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let failWrites = false;
  const writeTemp: WriteTempFile = async (tmp, data, mode) => {
    if (failWrites) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    return writeTempFileSynced(tmp, data, mode);
  };
  const store = await openFileStore({ path: path.join(dir, 'db.json'), log: createSilentLogger(), watch: false, writeTemp });
  let timeline: { ok: boolean; error?: string } = { ok: true };
  const h = await startHarness({ store, timelineStatus: () => timeline });
  t.teardown(async () => {
    await h.close();
    await store.close();
  });
  const put = () => h.req('PUT', '/api/machines/52:54:00:00:00:01', { body: { hostname: 'a' }, headers: auth });
  failWrites = true;
  t.is((await put()).status, 503);
  const down = (await h.req('GET', '/healthz')).json;
  t.is(down.status, 'degraded');
  t.regex(down.problems.join(' '), /^database: .*ENOSPC/);
  failWrites = false;
  t.is((await put()).status, 201);
  t.like((await h.req('GET', '/healthz')).json, { status: 'ok' });
  timeline = { ok: false, error: 'EIO appending the timeline' };
  t.like((await h.req('GET', '/healthz')).json, { status: 'degraded', problems: ['timeline: EIO appending the timeline'] });
});
