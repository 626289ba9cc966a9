/**
 * Endpoints other netboot tools' users already script against:
 *
 * - matchbox: `/ignition`, `/generic` (the profile's templates of those kinds, rendered for the
 *   machine) and `/metadata` (`KEY=value` lines: the machine's identity and its group's
 *   metadata), all selected by `?uuid=` and/or `?mac=` like `/ipxe`;
 * - Pixiecore API mode: `GET /pixiecore/v1/boot/:mac` answers `{ kernel, initrd, cmdline }`
 *   (danderson/netboot pixiecore/README.api.md), so a Pixiecore started with
 *   `pixiecore api http://APPLIANCE:PORT/pixiecore` boots machines from this appliance's
 *   profiles; any non-200 tells Pixiecore to ignore the machine.
 *
 * Like the boot endpoints they are open (machines fetch them), select from the operator's
 * records and the machine's verified facts only (fact selectors on groups, as /ipxe), place no
 * request value anywhere but the validated MAC/UUID/arch, and give `callback_url` only to the
 * machine's own address (callback-grant.ts).
 */
import type Router from '@koa/router';
import type Koa from 'koa';
import { ApplianceError } from '../../errors.js';
import { normalizeMac } from '../../events.js';
import type { Group, VarValue } from '../../store/schema.js';
import { memberGroup, type Selection } from '../../store/select.js';
import { resolveAsset } from '../asset-files.js';
import { callbackDetail, grantedToken } from '../callback-grant.js';
import { dhcpAddress } from '../boot-sessions.js';
import { clientIp, identifyMachine, type RouteEnv } from '../context.js';
import { oneShotDetail, settleServedOneShot } from '../one-shot.js';
import { buildCloudConfigContext, buildCmdline, bootFile, initrdNames, placeholderValues, type BootRequest } from '../render.js';

/**
 * Text that Go's text/template (which Pixiecore runs the API's cmdline through) renders as
 * itself: every `{{` becomes the action `{{"{{"}}`. Our placeholders are substituted already, but
 * an operator's value may still hold `{{` (`a={{x-y}}` is no placeholder), which Pixiecore would
 * otherwise parse as an action and, failing, ignore the machine.
 */
export function goTemplateLiteral(text: string): string {
  return text.replace(/\{\{/g, '{{"{{"}}');
}

/** `KEY=value` lines of matchbox's /metadata: keys upper-cased, nested keys joined by `_`. */
export function metadataLines(values: Record<string, VarValue | undefined>): string {
  const out: string[] = [];
  const walk = (prefix: string, v: VarValue | undefined): void => {
    if (v === undefined || v === null) return;
    if (typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(prefix === '' ? k : `${prefix}_${k}`, x);
      return;
    }
    const text = Array.isArray(v) ? v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(',') : String(v);
    // One line per key: a line break in a value must not make another key.
    out.push(`${prefix.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}=${text.replace(/[\r\n\u0085\u2028\u2029]/g, ' ')}`);
  };
  for (const [k, v] of Object.entries(values)) walk(k, v);
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}

/** Register the compatibility routes. */
export function registerCompatRoutes(router: Router, env: RouteEnv): void {
  const { deps } = env;

  const select = async (ctx: Koa.Context) => {
    const req = await identifyMachine(ctx, deps);
    if (!req) throw new ApplianceError('ERR_MAC_REQUIRED', 'pass ?mac=<MAC> or ?uuid=<UUID> of a declared machine');
    // With the machine's verified facts, as /ipxe selects (fact selectors on groups). These
    // documents are fetched by the OS a boot started, like /cloud and cloud-config: a
    // provisioning in progress answers (the one-shot /ipxe served), a one-shot still pending
    // does not (the machine has not booted it yet).
    const selection = await env.select({ ...req, purpose: 'config' });
    if (selection.kind === 'none') throw new ApplianceError('ERR_NO_PROFILE', `no profile for ${req.mac}: ${selection.reason}`, { mac: req.mac });
    return { req, selection };
  };
  // A one-shot (or the provisioning it started) chose the profile, not a group: the machine is
  // still in its group, whose metadata its templates get (`{{ metadata.role }}`), else {}.
  const groupOf = async (req: BootRequest, selection: Extract<Selection, { kind: 'profile' }>): Promise<Group | undefined> => {
    if (selection.group || (selection.via !== 'once' && selection.via !== 'provisioning')) return selection.group;
    return memberGroup(await deps.store.snapshot(), { ...req, facts: await env.discovery.selectionFacts(req.mac) });
  };

  const templated = (kind: 'ignition' | 'generic') => async (ctx: Koa.Context) => {
    const { req, selection } = await select(ctx);
    const { profile, machine } = selection;
    const template = profile[kind];
    if (template === undefined)
      throw new ApplianceError('ERR_NOT_FOUND', `profile ${profile.id} has no ${kind} template (set "${kind}" in the profile)`, { mac: req.mac });
    const ip = clientIp(ctx);
    const grant = env.grantCallback(machine, req.mac, ip);
    const context = {
      ...buildCloudConfigContext(env.server(), { ...req, callbackToken: grantedToken(grant) }, profile, machine),
      metadata: (await groupOf(req, selection))?.metadata ?? {},
    };
    const text = env.renderer.render(template, context);
    env.log.info({ mac: req.mac, ip, profile: profile.id, template, kind }, `sent ${kind}`);
    env.record('http-cloud-config', req.mac, ip, { profile: profile.id, template, kind, ...callbackDetail(grant) });
    let json = false;
    try {
      JSON.parse(text);
      json = true;
    } catch {
      // Not JSON (a Butane/YAML or plain template): served as text.
    }
    ctx.type = json ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = text;
  };
  router.get('/ignition', templated('ignition'));
  router.get('/generic', templated('generic'));

  router.get('/metadata', async (ctx) => {
    const { req, selection } = await select(ctx);
    const { machine } = selection;
    const group = await groupOf(req, selection);
    ctx.type = 'text/plain; charset=utf-8';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = metadataLines({
      mac: req.mac,
      uuid: machine?.uuid ?? req.uuid,
      hostname: machine?.hostname,
      profile: selection.profile.id,
      ...(machine?.labels ?? {}),
      ...(group?.metadata ?? {}),
    });
  });

  router.get('/pixiecore/v1/boot/:mac', async (ctx) => {
    const mac = normalizeMac(String(ctx.params.mac ?? ''));
    if (!mac) throw new ApplianceError('ERR_BAD_REQUEST', 'the URL does not end in a MAC address', { field: 'mac' });
    const selection = await env.select({ mac });
    const ip = clientIp(ctx);
    if (selection.kind === 'none') {
      env.log.info({ mac, ip, reason: selection.reason }, 'pixiecore asked for a machine with no profile; told it to ignore the machine');
      throw new ApplianceError('ERR_NO_PROFILE', selection.reason, { mac });
    }
    const { profile, machine } = selection;
    for (const source of [profile.kernel, ...profile.initrd]) {
      if (source.startsWith('/assets/') && !(await resolveAsset(deps.assetsDir, source.slice('/assets/'.length)))) {
        throw new ApplianceError('ERR_ASSET_NOT_FOUND', `profile ${profile.id}: ${source} is missing on the appliance`, { mac });
      }
    }
    const server = env.server();
    const names = initrdNames(profile.initrd);
    // The request comes from the Pixiecore server, not the machine: the callback token goes to
    // it only where any request may have it (binding none, callback-grant.ts).
    const grant = env.grantCallback(machine, mac, ip);
    const req: BootRequest = { mac, callbackToken: grantedToken(grant) };
    const cmdline = buildCmdline(profile, placeholderValues(server, req, profile, machine));
    void env.discovery.sighted({ mac, ip: dhcpAddress(env.sessions, mac, ip), profile: profile.id });
    // The boot spec is this boot's script: a one-shot it serves is settled as /ipxe settles it,
    // so the machine's cloud-config follows and the next boot does not repeat it. The request
    // is the Pixiecore server's, never the machine's own address: it is consumed only where
    // any request may speak for the MAC (binding none), else kept until the boot's verified facts.
    const once = selection.via === 'once' ? oneShotDetail(await settleServedOneShot(env, mac, ip, 'pixiecore')) : {};
    env.log.info({ mac, ip, profile: profile.id, via: selection.via, ...once }, 'sent pixiecore boot spec');
    env.record('http-script', mac, ip, { outcome: 'boot', profile: profile.id, via: selection.via, api: 'pixiecore', ...once, ...callbackDetail(grant) });
    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      kernel: bootFile(server, profile.kernel, 'kernel').url,
      initrd: profile.initrd.map((s, i) => bootFile(server, s, names[i]!).url),
      cmdline: goTemplateLiteral(cmdline.join(' ')),
      message: `netboot-appliance: booting ${profile.id}`,
    };
  });
}
