/**
 * What an operator does to a machine, beyond editing its record: one-shot boots
 * (`POST /api/machines/:mac/boot`), power through its BMC (`POST .../power`), the callback that
 * ends a provisioning (`POST .../callback`, the installed OS's or microkernel's, authenticated
 * by the provisioning's callback token, callback-grant.ts), and why a machine boots what it boots (`GET .../selection`).
 */
import type Router from '@koa/router';
import type Koa from 'koa';
import { z } from 'zod';
import { ApplianceError } from '../../errors.js';
import { normalizeMac } from '../../identity.js';
import { BOOT_DEVICES, POWER_ACTIONS, bmcName, rebootThroughBmc, type IpmiResult } from '../../power/ipmi.js';
import { LOCAL_DISK_PROFILE_ID } from '../../store/schema.js';
import { CALLBACK_STATES, completeProvisioning, DEFAULT_CALLBACK_TOKEN_SECONDS, newCallbackToken, publicMachine, requestBoot } from '../../store/lifecycle.js';
import { IdSchema, parseOrThrow, type Machine } from '../../store/schema.js';
import { explainGroup, selectProfile } from '../../store/select.js';
import { readJsonBody } from '../body.js';
import { clientIp, type RouteEnv } from '../context.js';
import { createRefusalThrottle } from '../refusal-throttle.js';
import { assertBearer } from '../token.js';

const BootBody = z
  .object({
    profile: IdSchema,
    once: z.boolean().default(true),
    then: IdSchema.optional().describe('with once: the machine profile afterwards, e.g. local-disk'),
    power: z.enum(['reboot', 'none']).default('none').describe('reboot: chassis bootdev pxe, then power cycle (or on) through the BMC'),
  })
  .strict();

const PowerBody = z
  .object({
    action: z.enum(POWER_ACTIONS),
    bootdev: z.enum(BOOT_DEVICES).optional().describe('set the next boot device first (one-shot)'),
  })
  .strict();

const CallbackBody = z.object({ state: z.enum(CALLBACK_STATES).default('provisioned'), token: z.string().max(64).optional() }).strict();

function macOf(ctx: Koa.Context): string {
  const raw = String(ctx.params.mac ?? '');
  const mac = normalizeMac(raw);
  if (!mac) throw new ApplianceError('ERR_BAD_REQUEST', `${JSON.stringify(raw.slice(0, 40))} in the URL is not a MAC address`, { field: 'mac' });
  return mac;
}

/** Register the machine action routes. */
export function registerMachineActionRoutes(router: Router, env: RouteEnv): void {
  const { store } = env.deps;
  const auth: Koa.Middleware = async (ctx, next) => {
    assertBearer(ctx.get('Authorization') || undefined, env.deps.apiToken);
    await next();
  };
  const profileExists = async (id: string): Promise<void> => {
    if (id !== LOCAL_DISK_PROFILE_ID && !(await store.getProfile(id)))
      throw new ApplianceError('ERR_PROFILE_NOT_FOUND', `profile ${JSON.stringify(id)} does not exist`, { id });
  };
  const bmcOf = (machine: Machine) => {
    if (!machine.bmc)
      throw new ApplianceError('ERR_NO_BMC', `machine ${machine.mac} has no bmc; PUT the machine with "bmc": {"address", "user", "password"}`, {
        mac: machine.mac,
      });
    return machine.bmc;
  };
  const powerLog = (mac: string, ip: string, results: IpmiResult[], bmc: string): void => {
    env.log.info({ mac, bmc, steps: results.map((r) => r.step), power: results.at(-1)?.power }, 'bmc steps done');
    env.record('power', mac, ip, { bmc, steps: results.map((r) => r.step), ...(results.at(-1)?.power ? { power: results.at(-1)!.power } : {}) });
  };

  router.post('/api/machines/:mac/boot', auth, async (ctx) => {
    const mac = macOf(ctx);
    const body = parseOrThrow(BootBody, await readJsonBody(ctx, 4096));
    await profileExists(body.profile);
    if (body.then !== undefined) await profileExists(body.then);
    if (!(await store.getMachine(mac))) await store.putMachine({ mac });
    const at = new Date().toISOString();
    const machine = await store.updateMachine(mac, (m) => requestBoot(m, body, at, newCallbackToken()));
    const ip = clientIp(ctx);
    env.log.info({ mac, profile: body.profile, once: body.once, then: body.then, ip: ctx.request.ip }, 'boot requested');
    env.record('boot-once', mac, undefined, { profile: body.profile, once: body.once, ...(body.then ? { then: body.then } : {}) });
    let power: IpmiResult[] | undefined;
    if (body.power === 'reboot') {
      const bmc = bmcOf(machine);
      power = await rebootThroughBmc(env.power, bmc, { bootdev: 'pxe' });
      powerLog(mac, ip, power, bmcName(bmc));
    }
    ctx.body = { machine: publicMachine(machine), ...(power ? { power } : {}) };
  });

  router.post('/api/machines/:mac/power', auth, async (ctx) => {
    const mac = macOf(ctx);
    const body = parseOrThrow(PowerBody, await readJsonBody(ctx, 1024));
    const machine = await store.getMachine(mac);
    if (!machine) throw new ApplianceError('ERR_MACHINE_NOT_FOUND', `machine ${mac} does not exist`);
    const bmc = bmcOf(machine);
    const results: IpmiResult[] = [];
    if (body.bootdev) results.push(await env.power.run(bmc, { bootdev: body.bootdev }));
    results.push(await env.power.run(bmc, { power: body.action }));
    if (body.action !== 'status') powerLog(mac, clientIp(ctx), results, bmcName(bmc));
    ctx.body = { mac, bmc: bmcName(bmc), steps: results, ...(results.at(-1)?.power ? { power: results.at(-1)!.power } : {}) };
  });

  // Unauthenticated on purpose: the installed OS has no API token. It carries the
  // provisioning's callback token instead (callback_url), which only documents sent to the
  // machine's own address carry (callback-grant.ts). Accepted from any address, once, until the
  // deadline; anything else is a 403 that says why and changes nothing.
  const callbackRefusals = createRefusalThrottle();
  router.post('/api/machines/:mac/callback', async (ctx) => {
    const mac = macOf(ctx);
    const ip = clientIp(ctx);
    // A bare `curl -X POST URL` (no body) is the common case: it means "provisioned".
    const bodyless = ctx.get('Content-Length') === '0' || (ctx.get('Content-Length') === '' && ctx.get('Transfer-Encoding') === '');
    const raw = bodyless ? {} : await readJsonBody(ctx, 1024);
    const body = parseOrThrow(CallbackBody, raw);
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : body.token;
    const before = await store.getMachine(mac);
    const refused = (err: unknown): never => {
      if (err instanceof ApplianceError && err.code === 'ERR_CALLBACK_TOKEN') {
        const reason = err.detail?.['reason'];
        env.log.warn({ mac, ip, reason }, 'callback refused');
        // In the timeline of a declared machine only, throttled (refusal-throttle.ts): made-up
        // MACs must not evict real machines' histories. The requester goes in the detail, not
        // as the event's address: a callback is accepted from anywhere, so its address says
        // nothing about where the machine is, and a stranger must not move its last address.
        const admitted = before ? callbackRefusals.admit(mac) : { record: false as const };
        if (admitted.record)
          env.record('callback-refused', mac, undefined, { reason, from: ip, ...(admitted.suppressed > 0 ? { suppressed: admitted.suppressed } : {}) });
      }
      throw err;
    };
    if (!before)
      refused(new ApplianceError('ERR_CALLBACK_TOKEN', `callback for ${mac} refused: no machine ${mac} is declared`, { mac, reason: 'no such machine' }));
    const lifetime = env.deps.callbackTokenSeconds ?? DEFAULT_CALLBACK_TOKEN_SECONDS;
    const after = await store.updateMachine(mac, (m) => completeProvisioning(m, token, body.state, Date.now(), lifetime)).catch(refused);
    env.log.info({ mac, ip, from: before!.state, to: after.state, profile: before!.provisioning?.profile }, 'machine state changed by callback');
    env.record('state', mac, ip, { from: before!.state ?? null, to: after.state ?? null, profile: before!.provisioning?.profile, by: 'callback' });
    ctx.body = { mac, state: after.state };
  });

  router.get('/api/machines/:mac/selection', auth, async (ctx) => {
    const mac = macOf(ctx);
    const db = await store.snapshot();
    // Only verified facts drive selection (routes/facts.ts); say which the machine has.
    const query = { mac, ...(typeof ctx.query.arch === 'string' ? { arch: ctx.query.arch } : {}), facts: await env.discovery.selectionFacts(mac) };
    const runtime = env.discovery.state.get(mac);
    const machine = db.machines.find((m) => m.mac === mac);
    const selection = selectProfile(db, { ...query, purpose: 'boot' });
    ctx.body = {
      mac,
      ...(selection.kind === 'profile'
        ? { profile: selection.profile.id, via: selection.via, group: selection.group?.id ?? null, reasons: selection.reasons ?? [] }
        : { profile: null, reason: selection.reason }),
      facts: runtime?.factsAt ? { at: runtime.factsAt, verified: runtime.factsVerified === true } : null,
      groups: db.groups.map((g) => explainGroup(g, query, machine)),
    };
  });
}
