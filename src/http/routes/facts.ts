/**
 * `POST /api/machines/:mac/facts`: the microkernel agent's report. The agent runs in a RAM image
 * that has no API token, so this write is open, and bounded: 64 KiB bodies, FactsSchema limits
 * (depth, keys, lengths), the discovered-machine cap; it can change only a machine's facts,
 * factsAt and lastSeenIp (or register an unknown MAC as discovered), never its record.
 *
 * Facts drive group selection only when *verified* (boot-sessions.ts): sent with the facts token
 * of a boot the appliance served to that machine's own address (`Authorization: Bearer TOKEN`
 * or `?token=`), once, before it expires; or with the API token (an operator importing an
 * inventory). A report without a token is stored as unverified (never replacing verified facts)
 * and matches no fact selector; a wrong, expired, replayed or other machine's token is a 403
 * and changes nothing.
 */
import type Router from '@koa/router';
import type Koa from 'koa';
import { isIPv4 } from 'node:net';
import { ApplianceError } from '../../errors.js';
import { normalizeMac } from '../../identity.js';
import { FACTS_LIMITS, FactsSchema, parseOrThrow } from '../../store/schema.js';
import { readJsonBody } from '../body.js';
import { dhcpAddress } from '../boot-sessions.js';
import { clientIp, type RouteEnv } from '../context.js';
import { consumeOneShot } from '../one-shot.js';
import { bearerAccess } from '../token.js';
import { assertShallow, MAX_FACTS_BYTES } from './api.js';

/** The token a facts report presents: the bearer token, else `?token=`. */
function presentedToken(ctx: Koa.Context): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('Authorization'));
  if (m) return m[1];
  const q = ctx.query.token;
  return typeof q === 'string' && q !== '' ? q : undefined;
}

/** Register the facts route. */
export function registerFactsRoutes(router: Router, env: RouteEnv): void {
  const state = env.discovery.state;
  router.post('/api/machines/:mac/facts', async (ctx) => {
    const raw = String(ctx.params.mac ?? '');
    const mac = normalizeMac(raw);
    if (!mac) throw new ApplianceError('ERR_BAD_REQUEST', `${JSON.stringify(raw.slice(0, 40))} in the URL is not a MAC address`, { field: 'mac' });
    const body = await readJsonBody(ctx, MAX_FACTS_BYTES);
    assertShallow(body, FACTS_LIMITS.depth, 'facts');
    const facts = parseOrThrow(FactsSchema, body, ['facts']);
    const ip = clientIp(ctx);
    const token = presentedToken(ctx);
    let verified = false;
    let reason: string | undefined;
    if (token === undefined) {
      reason = 'no facts token: send the boot\'s facts token as "Authorization: Bearer TOKEN"';
    } else if (bearerAccess(`Bearer ${token}`, env.deps.apiToken) === 'write') {
      verified = true;
    } else {
      const check = env.sessions.redeem(token, mac, ip);
      if (check.kind === 'refused') {
        env.log.warn({ mac, ip, reason: check.reason }, 'facts report refused');
        env.record('facts', mac, ip, { outcome: 'refused', reason: check.reason });
        throw new ApplianceError('ERR_FACTS_TOKEN', `facts for ${mac} refused: ${check.reason}`, { mac });
      }
      verified = check.kind === 'trusted';
      if (check.kind === 'untrusted') reason = check.reason;
    }
    // The runtime record's address moves only to an address DHCP saw for the MAC.
    const seenAt = isIPv4(ip) ? dhcpAddress(env.sessions, mac, ip) : undefined;
    const outcome = await env.discovery.reportFacts(mac, facts, seenAt, verified);
    // The machine confirmed the boot its one-shot started (if /ipxe could not tell).
    if (verified) await consumeOneShot(env, mac, ip, 'facts');
    const runtime = state.get(mac);
    const detail = { outcome, verified, ...(reason !== undefined ? { reason } : {}) };
    env.log.info({ mac, ip, ...detail }, verified ? 'facts reported' : 'unverified facts reported; they match no fact selector');
    env.record('facts', mac, ip, detail);
    ctx.status = outcome === 'registered' ? 201 : outcome === 'kept' ? 202 : 200;
    ctx.body = { mac, ...detail, factsAt: runtime?.factsAt ?? null, discovered: runtime?.discovered ?? false };
  });
}
