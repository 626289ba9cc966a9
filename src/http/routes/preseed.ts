/**
 * `GET /preseed?mac=`: the Debian installer's preseed for one machine, rendered from the
 * profile's `preseed` template (default debian.preseed.njk) with the cloud-config context
 * (mac, hostname, base_url, callback_url when granted, vars). A provisioning machine gets its one-shot
 * profile's preseed. Preseed is line-oriented: templates place values with `| line`, and every
 * value that reaches them is already free of control characters (schema).
 */
import type Router from '@koa/router';
import { ApplianceError } from '../../errors.js';
import { bootRequestFrom, clientIp, type RouteEnv } from '../context.js';
import { callbackDetail, grantedToken } from '../callback-grant.js';
import { buildCloudConfigContext } from '../render.js';

/** Preseed template used when a profile names none. */
export const DEFAULT_PRESEED_TEMPLATE = 'debian.preseed.njk';

/** Register /preseed. */
export function registerPreseedRoutes(router: Router, env: RouteEnv): void {
  const { deps } = env;
  router.get('/preseed', async (ctx) => {
    const ip = clientIp(ctx);
    const req = bootRequestFrom(ctx, deps.events);
    if (!req) throw new ApplianceError('ERR_MAC_REQUIRED', 'pass ?mac=<MAC> (or fetch from the address the machine got by DHCP)');
    const selection = await env.select({ ...req, purpose: 'config' });
    if (selection.kind === 'none') throw new ApplianceError('ERR_NO_PROFILE', `no preseed for ${req.mac}: ${selection.reason}`, { mac: req.mac });
    const { profile, machine } = selection;
    const template = profile.preseed ?? DEFAULT_PRESEED_TEMPLATE;
    // The callback token (late_command) only for the machine's own address (callback-grant.ts).
    const grant = env.grantCallback(machine, req.mac, ip);
    const text = env.renderer.render(template, { ...buildCloudConfigContext(env.server(), { ...req, callbackToken: grantedToken(grant) }, profile, machine) });
    env.log.info({ mac: req.mac, ip, profile: profile.id, template, ...callbackDetail(grant) }, 'sent preseed');
    env.record('http-preseed', req.mac, ip, { profile: profile.id, template, ...callbackDetail(grant) });
    ctx.type = 'text/plain; charset=utf-8';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = text;
  });
}
