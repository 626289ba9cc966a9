/**
 * cloud-init's NoCloud datasource over HTTP: a profile with `ds=nocloud-net;s=SEED` on its
 * cmdline makes cloud-init fetch `SEEDmeta-data`, `SEEDuser-data` and `SEEDvendor-data`
 * (cloudinit/util.py read_seeded: the file names are appended to the seed URL, which ends in
 * `/`). The appliance serves those names under `/nocloud/`:
 *
 * - `/nocloud/ID/user-data` (and `meta-data`, `vendor-data`): ID is the machine's MAC in any
 *   common notation (`s=http://A:P/nocloud/${net0/mac}/`, `${mac:hexhyp}`) or the SMBIOS UUID
 *   of a declared machine (`${uuid}`), as iPXE expands them on the kernel line;
 * - `/nocloud/user-data` (a seed URL without an ID, `s=http://A:P/nocloud/`): the machine is
 *   the one last seen at the client's address, or `?mac=` / `?uuid=` as for /cloud-config.
 *
 * user-data is the machine's cloud-config (the same document as /cloud-config); meta-data is
 * `instance-id` (stable per MAC) and `local-hostname` (the declared hostname); vendor-data is
 * empty. `network-config` is not served (404), so cloud-init keeps its own network fallback.
 * Open like the other boot endpoints; nothing from the request reaches a document but the
 * validated MAC/UUID.
 */
import type Router from '@koa/router';
import type Koa from 'koa';
import { stringify as stringifyYaml } from 'yaml';
import { ApplianceError } from '../../errors.js';
import { normalizeMac, normalizeUuid } from '../../identity.js';
import { clientIp, identifyMachine, type RouteEnv } from '../context.js';
import type { BootRequest } from '../render.js';

/** Serves the machine's cloud-config (routes/boot.ts); throws a coded error when it cannot. */
export type SendCloudConfig = (ctx: Koa.Context, req: BootRequest | undefined) => Promise<void>;

/** The `instance-id` of a machine: stable per MAC, so cloud-init runs its per-instance modules once. */
export function nocloudInstanceId(mac: string): string {
  return `iid-netboot-${mac.replace(/:/g, '')}`;
}

/** The meta-data document (YAML) for a machine. */
export function renderNoCloudMetaData(mac: string, hostname: string | undefined): string {
  return stringifyYaml({ 'instance-id': nocloudInstanceId(mac), ...(hostname ? { 'local-hostname': hostname } : {}) });
}

/** Register `/nocloud/[ID/]{user-data,meta-data,vendor-data}`. */
export function registerNoCloudRoutes(router: Router, env: RouteEnv, sendCloudConfig: SendCloudConfig): void {
  const { deps } = env;

  /** The machine a NoCloud request is for: from the path's ID, else as /cloud-config finds it. */
  const identify = async (ctx: Koa.Context): Promise<BootRequest> => {
    const id = ctx.params.id;
    if (id === undefined) {
      const req = await identifyMachine(ctx, deps);
      if (!req) {
        throw new ApplianceError(
          'ERR_MAC_REQUIRED',
          'cannot tell which machine this is: put its MAC or UUID in the seed URL (s=http://ADDRESS:PORT/nocloud/${net0/mac}/)',
        );
      }
      return req;
    }
    const mac = normalizeMac(id);
    if (mac !== undefined) return { mac };
    const uuid = normalizeUuid(id);
    if (uuid === undefined) {
      throw new ApplianceError('ERR_BAD_REQUEST', `${JSON.stringify(id.slice(0, 40))} in the URL is neither a MAC address nor a UUID`, { field: 'id' });
    }
    const machine = await deps.store.findMachineByUuid(uuid);
    if (!machine) throw new ApplianceError('ERR_MACHINE_NOT_FOUND', `no declared machine has uuid ${uuid}`, { uuid });
    return { mac: machine.mac, uuid };
  };

  router.get(['/nocloud/user-data', '/nocloud/:id/user-data'], async (ctx) => sendCloudConfig(ctx, await identify(ctx)));

  router.get(['/nocloud/meta-data', '/nocloud/:id/meta-data'], async (ctx) => {
    const req = await identify(ctx);
    const machine = await deps.store.getMachine(req.mac);
    const ip = clientIp(ctx);
    env.log.info({ mac: req.mac, ip, instanceId: nocloudInstanceId(req.mac) }, 'sent nocloud meta-data');
    env.record('http-cloud-config', req.mac, ip, { kind: 'meta-data', path: ctx.path });
    ctx.type = 'text/yaml; charset=utf-8';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = renderNoCloudMetaData(req.mac, machine?.hostname);
  });

  router.get(['/nocloud/vendor-data', '/nocloud/:id/vendor-data'], async (ctx) => {
    await identify(ctx);
    ctx.type = 'text/plain; charset=utf-8';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = '';
  });
}
