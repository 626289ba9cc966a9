/**
 * The REST API: profiles, machines, groups, the default profile, discovery, lookups, events and
 * the JSON Schema. JSON in and out; reads need the API token or the read-only token, writes the
 * API token (the facts POST, routes/facts.ts, is the one open write, bounded). Validation errors (422) name the
 * field and change nothing; unknown ids are 404; a write racing a hand edit is 409.
 *
 * Machines are listed as the operator declared them plus what the appliance saw:
 * `{ mac, declared: Machine | null, runtime: MachineState | null }` (and `facts` for one machine).
 */
import type Router from '@koa/router';
import type Koa from 'koa';
import { isIPv4 } from 'node:net';
import { ApplianceError } from '../../errors.js';
import { normalizeMac, normalizeUuid } from '../../identity.js';
import { keepSecrets, publicMachine } from '../../store/lifecycle.js';
import { assertProfileTemplates, profileAssetWarnings } from '../../store/references.js';
import { applyMergePatch } from '../../store/merge-patch.js';
import { dbJsonSchema, parseOrThrow, ProfileSchema, type Machine } from '../../store/schema.js';
import type { MachineState } from '../../store/state-store.js';
import type { PutResult } from '../../store/store.js';
import { readJsonBody } from '../body.js';
import type { RouteEnv } from '../context.js';
import { bearerAccess } from '../token.js';

/** Largest facts report accepted (the reference agent sends a few KiB). */
export const MAX_FACTS_BYTES = 64 * 1024;

/**
 * Refuse JSON nested deeper than the facts bound before the schema walks it: a 1,000-deep body
 * must be a 422, never a stack overflow. Iterative, so it has no depth of its own.
 */
export function assertShallow(value: unknown, maxDepth: number, field: string): void {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= maxDepth) throw new ApplianceError('ERR_VALIDATION', `${field}: nests deeper than ${maxDepth} levels`, { field });
    for (const x of Object.values(v as object)) stack.push([x, depth + 1]);
  }
}

/** One entry of the machines list: the operator's record and the runtime state, either may be absent. */
export interface MachineView {
  mac: string;
  declared: Machine | null;
  runtime: MachineState | null;
}

function macParam(ctx: Koa.Context): string {
  const raw = String(ctx.params.mac ?? '');
  const mac = normalizeMac(raw);
  if (!mac) throw new ApplianceError('ERR_BAD_REQUEST', `${JSON.stringify(raw.slice(0, 40))} in the URL is not a MAC address`, { field: 'mac' });
  return mac;
}

/** The body with the URL's key filled in; a different key in the body is a 422. */
function withKey(body: Record<string, unknown>, key: 'id' | 'mac', value: string, same: (a: string) => boolean): Record<string, unknown> {
  const given = body[key];
  if (given !== undefined && (typeof given !== 'string' || !same(given))) {
    throw new ApplianceError('ERR_VALIDATION', `${key}: must match the ${key} in the URL (${value})`, { field: key });
  }
  return { ...body, [key]: value };
}

function sendPut<T>(ctx: Koa.Context, result: PutResult<T>, warnings: string[] = []): void {
  ctx.status = result.created ? 201 : 200;
  // RFC 7234 §5.5 warn-code 199 ("miscellaneous warning"): the write was accepted.
  if (warnings.length > 0) ctx.set('Warning', warnings.map((w) => `199 netboot-appliance ${JSON.stringify(w)}`).join(', '));
  ctx.body = result.value;
}

/** Register /api routes on `router`. */
export function registerApiRoutes(router: Router, env: RouteEnv): void {
  const { store } = env.deps;
  const state = env.discovery.state;
  const access = (ctx: Koa.Context) => bearerAccess(ctx.get('Authorization') || undefined, env.deps.apiToken, env.deps.apiReadToken);
  const auth: Koa.Middleware = async (ctx, next) => {
    const a = access(ctx);
    if (a === undefined) throw new ApplianceError('ERR_UNAUTHORIZED', 'the api needs "Authorization: Bearer <token>" with the appliance api token');
    if (a !== 'write') throw new ApplianceError('ERR_FORBIDDEN', 'this token may only read; writes need the api token');
    await next();
  };
  const read: Koa.Middleware = async (ctx, next) => {
    if (access(ctx) === undefined)
      throw new ApplianceError('ERR_UNAUTHORIZED', 'the api needs "Authorization: Bearer <token>" with the api token or the read-only token');
    await next();
  };
  const view = (mac: string, declared: Machine | undefined): MachineView => ({
    mac,
    declared: declared ? publicMachine(declared) : null,
    runtime: state.get(mac) ?? null,
  });
  const audit = (ctx: Koa.Context, what: string): void => {
    env.log.info({ method: ctx.method, path: ctx.path, ip: ctx.request.ip }, what);
  };

  router.get('/api/schema', read, (ctx) => {
    ctx.type = 'application/schema+json';
    ctx.body = JSON.stringify(dbJsonSchema(), null, 2);
  });

  // Profiles
  router.get('/api/profiles', read, async (ctx) => {
    ctx.body = await store.listProfiles();
  });
  router.get('/api/profiles/:id', read, async (ctx) => {
    const p = await store.getProfile(ctx.params.id!);
    if (!p) throw new ApplianceError('ERR_PROFILE_NOT_FOUND', `profile ${JSON.stringify(ctx.params.id)} does not exist`);
    ctx.body = p;
  });
  router.put('/api/profiles/:id', auth, async (ctx) => {
    const id = ctx.params.id!;
    const body = withKey(await readJsonBody(ctx), 'id', id, (g) => g === id);
    assertProfileTemplates(parseOrThrow(ProfileSchema, body), env.deps.templatesDir);
    const result = await store.putProfile(body);
    sendPut(ctx, result, profileAssetWarnings(result.value, env.deps.assetsDir));
    audit(ctx, 'profile written');
  });
  router.patch('/api/profiles/:id', auth, async (ctx) => {
    const id = ctx.params.id!;
    const patch = await readJsonBody(ctx);
    const current = await store.getProfile(id);
    if (current) assertProfileTemplates(parseOrThrow(ProfileSchema, { ...(applyMergePatch(current, patch) as object), id }), env.deps.templatesDir);
    const result = await store.patchProfile(id, patch);
    sendPut(ctx, result, profileAssetWarnings(result.value, env.deps.assetsDir));
    audit(ctx, 'profile patched');
  });
  router.delete('/api/profiles/:id', auth, async (ctx) => {
    await store.deleteProfile(ctx.params.id!);
    ctx.status = 204;
    audit(ctx, 'profile deleted');
  });

  // Machines: declared (db.json) and seen (state store) together.
  router.get('/api/machines', read, async (ctx) => {
    const declared = await store.listMachines();
    const known = new Set(declared.map((m) => m.mac));
    const list: MachineView[] = declared.map((m) => view(m.mac, m));
    for (const r of state.list()) if (!known.has(r.mac)) list.push({ mac: r.mac, declared: null, runtime: r });
    const filter = typeof ctx.query.discovered === 'string' ? ctx.query.discovered === 'true' : undefined;
    ctx.body = filter === undefined ? list : list.filter((m) => (m.declared === null) === filter);
  });
  router.get('/api/machines/:mac', read, async (ctx) => {
    const mac = macParam(ctx);
    const m = await store.getMachine(mac);
    const runtime = state.get(mac);
    if (!m && !runtime) throw new ApplianceError('ERR_MACHINE_NOT_FOUND', `machine ${mac} does not exist`);
    ctx.body = { ...view(mac, m), facts: (await state.getFacts(mac)) ?? null };
  });
  router.put('/api/machines/:mac', auth, async (ctx) => {
    const mac = macParam(ctx);
    const body = keepSecrets(
      withKey(await readJsonBody(ctx), 'mac', mac, (g) => normalizeMac(g) === mac),
      await store.getMachine(mac),
    );
    const result = await store.putMachine(body);
    sendPut(ctx, { ...result, value: publicMachine(result.value) });
    audit(ctx, 'machine written');
  });
  router.patch('/api/machines/:mac', auth, async (ctx) => {
    const mac = macParam(ctx);
    const patch = await readJsonBody(ctx);
    if (patch.mac !== undefined && (typeof patch.mac !== 'string' || normalizeMac(patch.mac) !== mac)) {
      throw new ApplianceError('ERR_VALIDATION', `mac: must match the mac in the URL (${mac})`, { field: 'mac' });
    }
    const patched = await store.patchMachine(mac, patch);
    sendPut(ctx, { ...patched, value: publicMachine(patched.value) });
    audit(ctx, 'machine patched');
  });
  // Bulk: forget every discovered machine (seen, never declared). `?discovered=true` is required
  // so a bare DELETE /api/machines cannot be sent by mistake.
  router.delete('/api/machines', auth, async (ctx) => {
    if (ctx.query.discovered !== 'true')
      throw new ApplianceError('ERR_BAD_REQUEST', 'pass ?discovered=true to delete every discovered machine', { field: 'discovered' });
    const declared = new Set((await store.listMachines()).map((m) => m.mac));
    const deleted = await state.deleteDiscovered((mac) => declared.has(mac));
    ctx.body = { deleted: deleted.length, macs: deleted };
    audit(ctx, 'discovered machines deleted');
  });
  router.delete('/api/machines/:mac', auth, async (ctx) => {
    const mac = macParam(ctx);
    const hadState = await state.delete(mac);
    if (await store.getMachine(mac)) await store.deleteMachine(mac);
    else if (!hadState) throw new ApplianceError('ERR_MACHINE_NOT_FOUND', `machine ${mac} does not exist`, { mac });
    ctx.status = 204;
    audit(ctx, 'machine deleted');
  });

  // Discovery on/off at runtime (the --discovery flag sets the value at start).
  router.get('/api/discovery', read, (ctx) => {
    ctx.body = discoveryView();
  });
  router.put('/api/discovery', auth, async (ctx) => {
    const body = await readJsonBody(ctx);
    if (typeof body.enabled !== 'boolean') throw new ApplianceError('ERR_VALIDATION', 'enabled: must be true or false', { field: 'enabled' });
    state.discovery = body.enabled;
    ctx.body = discoveryView();
    audit(ctx, `discovery ${body.enabled ? 'on' : 'off'}`);
  });
  const discoveryView = () => {
    const records = state.list();
    return { enabled: state.discovery, discovered: records.filter((r) => r.discovered).length, cap: state.limits.maxDiscovered, store: state.status() };
  };

  // Facts: routes/facts.ts.

  // Groups
  router.get('/api/groups', read, async (ctx) => {
    ctx.body = await store.listGroups();
  });
  router.get('/api/groups/:id', read, async (ctx) => {
    const g = await store.getGroup(ctx.params.id!);
    if (!g) throw new ApplianceError('ERR_GROUP_NOT_FOUND', `group ${JSON.stringify(ctx.params.id)} does not exist`);
    ctx.body = g;
  });
  router.put('/api/groups/:id', auth, async (ctx) => {
    const id = ctx.params.id!;
    const body = withKey(await readJsonBody(ctx), 'id', id, (g) => g === id);
    sendPut(ctx, await store.putGroup(body));
    audit(ctx, 'group written');
  });
  router.patch('/api/groups/:id', auth, async (ctx) => {
    sendPut(ctx, await store.patchGroup(ctx.params.id!, await readJsonBody(ctx)));
    audit(ctx, 'group patched');
  });
  router.delete('/api/groups/:id', auth, async (ctx) => {
    await store.deleteGroup(ctx.params.id!);
    ctx.status = 204;
    audit(ctx, 'group deleted');
  });

  // Default profile
  router.get('/api/default-profile', read, async (ctx) => {
    ctx.body = { id: (await store.getDefaultProfileId()) ?? null };
  });
  router.put('/api/default-profile', auth, async (ctx) => {
    const body = await readJsonBody(ctx);
    const id = body.id;
    if (id !== null && typeof id !== 'string') throw new ApplianceError('ERR_VALIDATION', 'id: must be a profile id or null', { field: 'id' });
    await store.setDefaultProfileId(id ?? undefined);
    ctx.body = { id };
    audit(ctx, 'default profile set');
  });

  // Lookups: the machine and the address it was last seen at (like RackHD's /lookups).
  router.get('/api/lookups', read, async (ctx) => {
    const q = typeof ctx.query.q === 'string' ? ctx.query.q.trim() : '';
    const { events } = env.deps;
    let mac: string | undefined;
    let ip: string | undefined;
    let machine;
    if (normalizeMac(q)) {
      mac = normalizeMac(q)!;
      machine = await store.getMachine(mac);
      // The event log (DHCP, HTTP) is fresher; the record's lastSeenIp survives restarts.
      ip = events.lastIp(mac) ?? state.get(mac)?.lastIp;
    } else if (isIPv4(q)) {
      ip = q;
      mac = events.macForIp(q) ?? state.list().find((r) => r.lastIp === q)?.mac;
      machine = mac ? await store.getMachine(mac) : undefined;
      if (!mac) machine = (await store.listMachines()).find((m) => m.ip === q);
      mac = mac ?? machine?.mac;
    } else if (normalizeUuid(q)) {
      machine = await store.findMachineByUuid(normalizeUuid(q)!);
      mac = machine?.mac;
      ip = mac ? (events.lastIp(mac) ?? state.get(mac)?.lastIp) : undefined;
    } else {
      throw new ApplianceError('ERR_BAD_REQUEST', 'q must be a MAC address, an IPv4 address or a UUID', { field: 'q' });
    }
    if (!machine && !(mac && ip)) throw new ApplianceError('ERR_LOOKUP_NOT_FOUND', `nothing known about ${JSON.stringify(q)}`);
    ctx.body = { q, mac: mac ?? null, ip: ip ?? null, machine: machine ? publicMachine(machine) : null };
  });

  // Boot timeline.
  router.get('/api/events', read, (ctx) => {
    const raw = typeof ctx.query.mac === 'string' ? ctx.query.mac : undefined;
    const limitRaw = typeof ctx.query.limit === 'string' ? Number(ctx.query.limit) : undefined;
    if (limitRaw !== undefined && !(Number.isInteger(limitRaw) && limitRaw > 0 && limitRaw <= 10_000)) {
      throw new ApplianceError('ERR_BAD_REQUEST', 'limit must be an integer from 1 to 10000', { field: 'limit' });
    }
    let mac: string | undefined;
    if (raw !== undefined) {
      mac = normalizeMac(raw);
      if (!mac) throw new ApplianceError('ERR_BAD_REQUEST', 'mac is not a MAC address', { field: 'mac' });
    }
    ctx.body = env.deps.events.list({ ...(mac !== undefined ? { mac } : {}), ...(limitRaw !== undefined ? { limit: limitRaw } : {}) });
  });
}
