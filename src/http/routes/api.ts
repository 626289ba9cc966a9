/**
 * The REST API: profiles, machines, groups, the default profile, lookups, events and the JSON
 * Schema. JSON in and out; reads are open, writes need the bearer token. Validation errors
 * (422) name the field and change nothing; unknown ids are 404.
 */
import type Router from '@koa/router';
import type Koa from 'koa';
import { isIPv4 } from 'node:net';
import { ApplianceError } from '../../errors.js';
import { normalizeMac, normalizeUuid } from '../../identity.js';
import { dbJsonSchema, FactsSchema, parseOrThrow } from '../../store/schema.js';
import { keepSecrets, publicMachine } from '../../store/lifecycle.js';
import type { PutResult } from '../../store/store.js';
import { readJsonBody } from '../body.js';
import { clientIp, type RouteEnv } from '../context.js';
import { assertBearer } from '../token.js';

/** Largest facts report accepted (the reference agent sends a few KiB). */
export const MAX_FACTS_BYTES = 64 * 1024;

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

function sendPut<T>(ctx: Koa.Context, result: PutResult<T>): void {
  ctx.status = result.created ? 201 : 200;
  ctx.body = result.value;
}

/** Register /api routes on `router`. */
export function registerApiRoutes(router: Router, env: RouteEnv): void {
  const { store } = env.deps;
  const auth: Koa.Middleware = async (ctx, next) => {
    assertBearer(ctx.get('Authorization') || undefined, env.deps.apiToken);
    await next();
  };
  const audit = (ctx: Koa.Context, what: string): void => {
    env.log.info({ method: ctx.method, path: ctx.path, ip: ctx.request.ip }, what);
  };

  router.get('/api/schema', (ctx) => {
    ctx.type = 'application/schema+json';
    ctx.body = JSON.stringify(dbJsonSchema(), null, 2);
  });

  // Profiles
  router.get('/api/profiles', async (ctx) => {
    ctx.body = await store.listProfiles();
  });
  router.get('/api/profiles/:id', async (ctx) => {
    const p = await store.getProfile(ctx.params.id!);
    if (!p) throw new ApplianceError('ERR_PROFILE_NOT_FOUND', `profile ${JSON.stringify(ctx.params.id)} does not exist`);
    ctx.body = p;
  });
  router.put('/api/profiles/:id', auth, async (ctx) => {
    const id = ctx.params.id!;
    const body = withKey(await readJsonBody(ctx), 'id', id, (g) => g === id);
    sendPut(ctx, await store.putProfile(body));
    audit(ctx, 'profile written');
  });
  router.delete('/api/profiles/:id', auth, async (ctx) => {
    await store.deleteProfile(ctx.params.id!);
    ctx.status = 204;
    audit(ctx, 'profile deleted');
  });

  // Machines
  router.get('/api/machines', async (ctx) => {
    ctx.body = (await store.listMachines()).map(publicMachine);
  });
  router.get('/api/machines/:mac', async (ctx) => {
    const mac = macParam(ctx);
    const m = await store.getMachine(mac);
    if (!m) throw new ApplianceError('ERR_MACHINE_NOT_FOUND', `machine ${mac} does not exist`);
    ctx.body = publicMachine(m);
  });
  router.put('/api/machines/:mac', auth, async (ctx) => {
    const mac = macParam(ctx);
    const body = keepSecrets(withKey(await readJsonBody(ctx), 'mac', mac, (g) => normalizeMac(g) === mac), await store.getMachine(mac));
    const result = await store.putMachine(body);
    sendPut(ctx, { ...result, value: publicMachine(result.value) });
    audit(ctx, 'machine written');
  });
  router.delete('/api/machines/:mac', auth, async (ctx) => {
    await store.deleteMachine(macParam(ctx));
    ctx.status = 204;
    audit(ctx, 'machine deleted');
  });

  // Discovery: facts posted by the microkernel agent. No bearer token: the agent runs in a
  // freshly booted RAM image that has none, so this is the one unauthenticated write. It is
  // bounded instead: 64 KiB bodies, FactsSchema limits (depth, keys, lengths), the discovered-
  // machine cap, and it can change only a machine's facts, factsAt and lastSeenIp (or register
  // an unknown MAC as discovered), never its profile, vars or anything a boot depends on.
  router.post('/api/machines/:mac/facts', async (ctx) => {
    const mac = macParam(ctx);
    const body = await readJsonBody(ctx, MAX_FACTS_BYTES);
    const facts = parseOrThrow(FactsSchema, body, ['facts']);
    const ip = clientIp(ctx);
    const outcome = await env.discovery.reportFacts(mac, facts, isIPv4(ip) ? ip : undefined);
    const machine = await store.getMachine(mac);
    env.log.info({ mac, ip, outcome }, 'facts reported');
    env.record('facts', mac, ip, { outcome });
    ctx.status = outcome === 'registered' ? 201 : 200;
    ctx.body = { mac, outcome, factsAt: machine?.factsAt ?? null, state: machine?.state ?? null };
  });

  // Groups
  router.get('/api/groups', async (ctx) => {
    ctx.body = await store.listGroups();
  });
  router.get('/api/groups/:id', async (ctx) => {
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
  router.delete('/api/groups/:id', auth, async (ctx) => {
    await store.deleteGroup(ctx.params.id!);
    ctx.status = 204;
    audit(ctx, 'group deleted');
  });

  // Default profile
  router.get('/api/default-profile', async (ctx) => {
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
  router.get('/api/lookups', async (ctx) => {
    const q = typeof ctx.query.q === 'string' ? ctx.query.q.trim() : '';
    const { events } = env.deps;
    let mac: string | undefined;
    let ip: string | undefined;
    let machine;
    if (normalizeMac(q)) {
      mac = normalizeMac(q)!;
      machine = await store.getMachine(mac);
      // The event log (DHCP, HTTP) is fresher; the record's lastSeenIp survives restarts.
      ip = events.lastIp(mac) ?? machine?.lastSeenIp;
    } else if (isIPv4(q)) {
      ip = q;
      mac = events.macForIp(q);
      machine = mac ? await store.getMachine(mac) : undefined;
      if (!mac) machine = (await store.listMachines()).find((m) => m.ip === q || m.lastSeenIp === q);
      mac = mac ?? machine?.mac;
    } else if (normalizeUuid(q)) {
      machine = await store.findMachineByUuid(normalizeUuid(q)!);
      mac = machine?.mac;
      ip = (mac ? events.lastIp(mac) : undefined) ?? machine?.lastSeenIp;
    } else {
      throw new ApplianceError('ERR_BAD_REQUEST', 'q must be a MAC address, an IPv4 address or a UUID', { field: 'q' });
    }
    if (!machine && !(mac && ip)) throw new ApplianceError('ERR_LOOKUP_NOT_FOUND', `nothing known about ${JSON.stringify(q)}`);
    ctx.body = { q, mac: mac ?? null, ip: ip ?? null, machine: machine ? publicMachine(machine) : null };
  });

  // Boot timeline.
  router.get('/api/events', (ctx) => {
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
