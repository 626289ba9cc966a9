/**
 * `GET|HEAD /boot/<file>`: the iPXE binaries over HTTP, for UEFI HTTP boot clients (option 93
 * 15/16/19), whose DHCP reply carries `http://ADDRESS:PORT/boot/<file>` instead of a TFTP name.
 * Names resolve exactly as TFTP resolves them (src/tftp/files.ts): the TFTP root first, then the
 * system iPXE directories, with the same refusals (`..`, symlinks out of the root).
 */
import type Koa from 'koa';
import type Router from '@koa/router';
import { ApplianceError } from '../../errors.js';
import { normalizeRequestName, resolveFile } from '../../tftp/files.js';
import { clientIp, type RouteEnv } from '../context.js';

const PREFIX = '/boot/';

/** Register the boot-file route. Without `deps.bootDirs` every name is not found. */
export function registerBootFileRoutes(router: Router, env: RouteEnv): void {
  const handler: Koa.Middleware = async (ctx) => {
    ctx.state.route = '/boot/:file';
    let raw: string;
    try {
      raw = decodeURIComponent(ctx.path.slice(PREFIX.length));
    } catch {
      throw new ApplianceError('ERR_BAD_REQUEST', 'the boot file name is not valid percent-encoding');
    }
    const checked = normalizeRequestName(raw);
    if (checked.kind === 'refused') throw new ApplianceError('ERR_ASSET_NOT_FOUND', `boot file ${JSON.stringify(raw)} is not served (${checked.reason})`);
    const found = await resolveFile(checked.name, env.deps.bootDirs ?? []);
    if (found.kind === 'refused') {
      env.log.warn({ ip: clientIp(ctx), file: checked.name, reason: found.reason }, 'boot file refused');
      throw new ApplianceError(
        'ERR_ASSET_NOT_FOUND',
        `boot file ${checked.name} is not available (${found.reason}); install Debian's ipxe package or run: node bin/appliance fetch ipxe`,
      );
    }
    ctx.type = checked.name.endsWith('.efi') ? 'application/efi' : 'application/octet-stream';
    ctx.length = found.size;
    if (ctx.method === 'HEAD') {
      await found.handle.close();
      ctx.status = 200;
      return;
    }
    ctx.body = found.handle.createReadStream({ autoClose: true });
    const ip = clientIp(ctx);
    const mac = env.deps.events.timelineMac(ip) ?? '';
    env.record('http-asset', mac, ip, { file: checked.name, bytes: found.size, via: 'http-boot' });
    env.log.info({ mac, ip, file: checked.name, bytes: found.size }, 'served boot file over http');
  };
  router.get('/boot/*file', handler);
  router.head('/boot/*file', handler);
}
