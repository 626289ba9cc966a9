/**
 * Boot endpoints: `/boot.ipxe` (fixed entry script), `/ipxe` (the machine's profile as an iPXE
 * script) and `/cloud-config` (also as bootcfg's `/cloud` and NoCloud's `/nocloud/.../user-data`,
 * nocloud.ts). /ipxe never answers 500: anything that prevents booting (no profile, missing
 * assets, a broken template, an unsafe value) becomes a script that prints the reason on the
 * machine's console and retries.
 */
import type Router from '@koa/router';
import { parse as parseYaml } from 'yaml';
import { ApplianceError } from '../../errors.js';
import { fetchCommandFor } from '../../fetch/hint.js';
import { renderMicrokernelScript, resolveMicrokernel } from '../microkernel.js';
import { resolveAsset } from '../asset-files.js';
import { dhcpAddress } from '../boot-sessions.js';
import { clientIp, identifyMachine, type RouteEnv } from '../context.js';
import { buildCloudConfigContext, buildIpxeContext, renderBootScript, renderRetryScript, type BootRequest } from '../render.js';
import type { EventLog } from '../../events.js';
import { isBuiltinLocalDisk } from '../../store/lifecycle.js';
import { oneShotDetail, settleServedOneShot } from '../one-shot.js';
import { groupDetail } from '../../store/select.js';
import { renderLocalDiskScript } from '../local-disk.js';
import { callbackDetail, grantedToken } from '../callback-grant.js';
import { registerNoCloudRoutes, type SendCloudConfig } from './nocloud.js';

/** iPXE template used when a profile names none (operators may point a profile at others). */
export const DEFAULT_IPXE_TEMPLATE = 'profile.ipxe.njk';
/** cloud-config template used when a profile names none. */
export const DEFAULT_CLOUD_CONFIG_TEMPLATE = 'cloud-config.yaml.njk';

const SCRIPT_TYPE = 'text/plain; charset=utf-8';

/**
 * What the machine's console says when a profile's local boot file is missing: the fetch
 * command that writes it when there is one (src/fetch/hint.ts), else where to put it.
 */
export function missingAssetMessage(profileId: string, source: string, assetsDir: string): string {
  const command = fetchCommandFor(source, assetsDir);
  return command !== undefined
    ? `profile ${profileId}: ${source} is missing on the appliance. Run: ${command}`
    : `profile ${profileId}: ${source} is missing on the appliance (put it under the assets directory)`;
}

/** Register the boot routes on `router`. */
export function registerBootRoutes(router: Router, env: RouteEnv): void {
  const { deps } = env;

  router.get('/boot.ipxe', (ctx) => {
    // The MAC is known here only if DHCP already saw this address; record it for the timeline.
    const ip = clientIp(ctx);
    const mac = deps.events.macForIp(ip);
    if (mac !== undefined) env.record('http-script', mac, ip, { script: 'boot.ipxe' });
    ctx.type = SCRIPT_TYPE;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = renderBootScript(env.server());
  });

  router.get('/ipxe', async (ctx) => {
    ctx.type = SCRIPT_TYPE;
    ctx.set('Cache-Control', 'no-store');
    const ip = clientIp(ctx);
    const server = env.server();
    const req = await identifyMachine(ctx, deps);
    if (!req) {
      env.log.warn({ ip }, 'ipxe script requested without a usable mac');
      ctx.body = renderRetryScript(
        server,
        undefined,
        'cannot identify this machine: the request carried no valid MAC address and no UUID of a declared machine (chain /boot.ipxe)',
        deps.retrySeconds,
      );
      return;
    }
    const fail = (reason: string, detail: Record<string, unknown>): void => {
      env.log.info({ mac: req.mac, ip, reason, ...detail }, 'machine cannot boot yet; sent retry script');
      env.record('http-script', req.mac, ip, { outcome: 'retry', reason, ...detail });
      ctx.body = renderRetryScript(server, req, reason, deps.retrySeconds);
    };
    try {
      // Selection reads only the operator's records (db.json), plus the machine's own verified
      // facts for fact selectors on groups: a sighting, a replayed UUID or a facts report
      // without a trusted boot's token never changes it.
      const selection = await env.select({ ...req, purpose: 'boot' });
      // Every boot is noted in the state store (last seen, address, profile served); an
      // unknown MAC is registered as discovered there (capped, switchable), never in db.json.
      // Detected here rather than from DHCP: in proxy mode DHCP sees every device on the
      // segment, while /ipxe is reached only by machines that really netboot from this
      // appliance, with the MAC of the NIC that booted and the SMBIOS UUID. The address is kept
      // only when DHCP saw the MAC there (anyone can ask for `?mac=VICTIM`).
      const seenAt = dhcpAddress(env.sessions, req.mac, ip);
      void env.discovery.sighted({ mac: req.mac, uuid: req.uuid, ip: seenAt, ...(selection.kind === 'profile' ? { profile: selection.profile.id } : {}) });
      if (selection.kind === 'none') return fail(selection.reason, {});
      const { profile, machine, via } = selection;
      if (isBuiltinLocalDisk(profile)) {
        const once = via === 'once' ? oneShotDetail(await settleServedOneShot(env, req.mac, ip)) : {};
        env.log.info({ mac: req.mac, ip, profile: profile.id, via, platform: req.platform, ...once }, 'sent local-disk script');
        env.record('http-script', req.mac, ip, { outcome: 'local-disk', profile: profile.id, via, ...groupDetail(selection), ...once });
        ctx.body = renderLocalDiskScript(req.mac);
        return;
      }
      for (const source of [profile.kernel, ...profile.initrd]) {
        if (source.startsWith('/assets/') && !(await resolveAsset(deps.assetsDir, source.slice('/assets/'.length)))) {
          return fail(missingAssetMessage(profile.id, source, deps.assetsDir), { profile: profile.id, asset: source });
        }
      }
      const template = profile.ipxe ?? DEFAULT_IPXE_TEMPLATE;
      // This boot's facts token ({{ facts_token }}): bound to the MAC and this address. The
      // callback token only when this address is the machine's own (callback-grant.ts).
      const session = env.sessions.issue(req.mac, ip, 'ipxe');
      const grant = env.grantCallback(machine, req.mac, ip);
      const script = env.renderer.render(template, {
        ...buildIpxeContext(server, { ...req, factsToken: session.token, callbackToken: grantedToken(grant) }, profile, machine, via, deps.retrySeconds),
      });
      if (!script.startsWith('#!ipxe')) {
        return fail(`template ${template} does not start with #!ipxe`, { profile: profile.id, template });
      }
      const once = via === 'once' ? oneShotDetail(await settleServedOneShot(env, req.mac, ip)) : {};
      env.log.info(
        { mac: req.mac, ip, profile: profile.id, via, template, arch: req.arch, platform: req.platform, ...groupDetail(selection), ...once },
        'sent ipxe script',
      );
      env.record('http-script', req.mac, ip, {
        outcome: 'boot',
        profile: profile.id,
        via,
        template,
        ...(req.platform ? { platform: req.platform } : {}),
        ...(req.uuid ? { uuid: req.uuid } : {}),
        ...groupDetail(selection),
        ...once,
        ...callbackDetail(grant),
      });
      ctx.body = script;
    } catch (err) {
      const reason = err instanceof ApplianceError ? err.message : 'internal error while building the boot script';
      if (!(err instanceof ApplianceError)) env.log.error({ mac: req.mac, err }, 'ipxe script failed');
      fail(reason, { code: err instanceof ApplianceError ? err.code : 'ERR_INTERNAL' });
    }
  });

  // `/cloud` is bootcfg's name for the same document, `/nocloud/[ID/]user-data` cloud-init NoCloud's.
  const sendCloudConfig: SendCloudConfig = async (ctx, identified) => {
    const ip = clientIp(ctx);
    const req = withBootUuid(identified, deps.events);
    if (!req) throw new ApplianceError('ERR_MAC_REQUIRED', 'pass ?mac=<MAC> (or fetch from the address the machine got by DHCP)');
    const selection = await env.select({ ...req, purpose: 'config' });
    if (selection.kind === 'none') throw new ApplianceError('ERR_NO_PROFILE', `no cloud-config for ${req.mac}: ${selection.reason}`, { mac: req.mac });
    const { profile, machine } = selection;
    const template = profile.cloudConfig ?? DEFAULT_CLOUD_CONFIG_TEMPLATE;
    const server = env.server();
    // The OS (or the microkernel it starts) reports facts with this token, from this address.
    const factsToken = env.sessions.issue(req.mac, ip, 'config').token;
    const grant = env.grantCallback(machine, req.mac, ip);
    const context = buildCloudConfigContext(server, { ...req, factsToken, callbackToken: grantedToken(grant) }, profile, machine);
    const mk = await resolveMicrokernel({ vars: context.vars, server, mac: req.mac, assetsDir: deps.assetsDir, digests: env.digests, factsToken });
    if (mk.kind === 'missing') {
      env.log.warn({ mac: req.mac, profile: profile.id, image: mk.image }, 'microkernel image missing; cloud-config rendered without it');
      context.warnings.push(mk.warning);
    }
    const microkernel = mk.kind === 'ready' ? { ...mk.plan, script: renderMicrokernelScript(mk.plan) } : null;
    const text = env.renderer.render(template, { ...context, microkernel });
    // cloud-init and RancherOS only accept user data whose first line is #cloud-config.
    if (!text.startsWith('#cloud-config\n')) {
      throw new ApplianceError('ERR_CLOUD_CONFIG_INVALID', `template ${template} must start with a "#cloud-config" line`, { template });
    }
    try {
      const doc: unknown = parseYaml(text);
      if (doc !== null && (typeof doc !== 'object' || Array.isArray(doc))) throw new Error('top level is not a mapping');
    } catch (err) {
      throw new ApplianceError(
        'ERR_CLOUD_CONFIG_INVALID',
        `template ${template} rendered invalid YAML for ${req.mac}: ${(err as Error).message.split('\n')[0]}`,
        { template },
      );
    }
    const mkDetail = mk.kind === 'off' ? {} : { microkernel: mk.kind === 'ready' ? mk.plan.image : `missing ${mk.image}` };
    env.log.info({ mac: req.mac, ip, profile: profile.id, template, ...mkDetail }, 'sent cloud-config');
    env.record('http-cloud-config', req.mac, ip, { profile: profile.id, template, path: ctx.path, ...mkDetail, ...callbackDetail(grant) });
    ctx.type = 'text/cloud-config; charset=utf-8';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = text;
  };
  router.get(['/cloud-config', '/cloud'], async (ctx) => sendCloudConfig(ctx, await identifyMachine(ctx, deps)));
  registerNoCloudRoutes(router, env, sendCloudConfig);
}

/**
 * The cloud-config URL on a kernel line carries only `?mac=` (a cmdline cannot hold `&`), so a
 * machine matched by SMBIOS UUID would get the MAC's (default) cloud-config. Take the UUID from
 * the same machine's latest booted /ipxe request, which is seconds old when the OS asks.
 */
function withBootUuid(req: BootRequest | undefined, events: EventLog): BootRequest | undefined {
  if (!req || req.uuid !== undefined) return req;
  const booted = events.list({ mac: req.mac }).filter((e) => e.type === 'http-script' && e.detail?.['outcome'] === 'boot');
  const uuid = booted.at(-1)?.detail?.['uuid'];
  return typeof uuid === 'string' ? { ...req, uuid } : req;
}
