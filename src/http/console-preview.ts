/**
 * What a machine would boot, for the console's preview: the iPXE script and cloud-config
 * rendered from the same templates, contexts and checks as `/ipxe` and `/cloud-config`, but
 * without their side effects (no boot event, no discovery registration). Each part is either
 * its text or the reason it cannot be built, in the words the machine's console would show.
 */
import { ApplianceError } from '../errors.js';
import { callbackToken } from '../store/lifecycle.js';
import type { RouteEnv } from './context.js';
import { resolveAsset } from './asset-files.js';
import { renderMicrokernelScript, resolveMicrokernel } from './microkernel.js';
import { buildCloudConfigContext, buildIpxeContext, type BootRequest } from './render.js';
import { DEFAULT_CLOUD_CONFIG_TEMPLATE, DEFAULT_IPXE_TEMPLATE, missingAssetMessage } from './routes/boot.js';

/** One rendered part: text, or the error that stops it. */
export type PreviewPart = { text: string; error?: undefined } | { text?: undefined; error: string };

/** The preview of one machine. */
export interface BootPreview {
  mac: string;
  profile: string | null;
  via: string | null;
  ipxe: PreviewPart;
  cloudConfig: PreviewPart;
}

const failed = (err: unknown): PreviewPart => ({ error: err instanceof ApplianceError ? err.message : `internal error: ${(err as Error).message}` });

/** Render the preview for `req` (a MAC and optionally a UUID). */
export async function previewBoot(env: RouteEnv, asked: BootRequest): Promise<BootPreview> {
  const { deps } = env;
  const selection = await env.select(asked);
  if (selection.kind === 'none') {
    return { mac: asked.mac, profile: null, via: null, ipxe: { error: selection.reason }, cloudConfig: { error: selection.reason } };
  }
  const { profile, machine, via } = selection;
  const server = env.server();
  // The callback token is a secret API reads never show: the preview names where it goes.
  const req: BootRequest = callbackToken(machine) === undefined ? asked : { ...asked, callbackToken: 'CALLBACK_TOKEN' };
  let ipxe: PreviewPart;
  try {
    const missing: string[] = [];
    for (const source of [profile.kernel, ...profile.initrd]) {
      if (source.startsWith('/assets/') && !(await resolveAsset(deps.assetsDir, source.slice('/assets/'.length))))
        missing.push(missingAssetMessage(profile.id, source, deps.assetsDir));
    }
    if (missing.length > 0) throw new ApplianceError('ERR_ASSET_NOT_FOUND', missing.join('; '));
    ipxe = { text: env.renderer.render(profile.ipxe ?? DEFAULT_IPXE_TEMPLATE, { ...buildIpxeContext(server, req, profile, machine, via, deps.retrySeconds) }) };
  } catch (err) {
    ipxe = failed(err);
  }
  let cloudConfig: PreviewPart;
  try {
    const context = buildCloudConfigContext(server, req, profile, machine);
    const mk = await resolveMicrokernel({ vars: context.vars, server, mac: req.mac, assetsDir: deps.assetsDir, digests: env.digests });
    if (mk.kind === 'missing') context.warnings.push(mk.warning);
    const microkernel = mk.kind === 'ready' ? { ...mk.plan, script: renderMicrokernelScript(mk.plan) } : null;
    cloudConfig = { text: env.renderer.render(profile.cloudConfig ?? DEFAULT_CLOUD_CONFIG_TEMPLATE, { ...context, microkernel }) };
  } catch (err) {
    cloudConfig = failed(err);
  }
  return { mac: req.mac, profile: profile.id, via, ipxe, cloudConfig };
}
