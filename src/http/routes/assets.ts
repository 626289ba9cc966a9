/**
 * `GET|HEAD /assets/...`: kernels, initrds and images from the assets directory, streamed by
 * `send` (Range, HEAD, ETag, If-Range and Last-Modified done right; docs/NETBOOT-FACTS.md section 4). Paths
 * are resolved to real paths first and must stay inside the directory. `send` decides the
 * status, headers and byte range; the bytes themselves go out through streamFileRange (1 MiB
 * reads into reused buffers) instead of send's 64 KiB fs.ReadStream.
 */
import type { ServerResponse } from 'node:http';
import type Koa from 'koa';
import send from 'send';
import { ApplianceError } from '../../errors.js';
import { normalizeMac } from '../../identity.js';
import { streamFileRange } from '../file-stream.js';
import { resolveAsset } from '../asset-files.js';
import { clientIp, type RouteEnv } from '../context.js';

const PREFIX = '/assets/';

const SEND_ERRORS: Record<number, string> = {
  412: 'ERR_PRECONDITION_FAILED',
  416: 'ERR_RANGE_NOT_SATISFIABLE',
};

/** The parts of send's SendStream this module replaces or calls (send 1.x, see its index.js). */
interface SendInternals {
  res: ServerResponse;
  stream(path: string, options: { start: number; end: number }): void;
  onStatError(err: Error): void;
  emit(event: 'end'): boolean;
}

/**
 * Replace SendStream#stream (which pipes an fs.ReadStream) with streamFileRange; send has done
 * everything else (conditional requests, Range, headers) by the time it calls it.
 */
function useLargeReads(stream: send.SendStream): void {
  const internals = stream as unknown as SendInternals;
  internals.stream = function (path, options) {
    streamFileRange(path, options.start, options.end, this.res).then(
      () => this.emit('end'),
      // Only an open failure gets here (nothing was written): send answers it (404/500).
      (err: Error) => this.onStatError(err),
    );
  };
}

/** Middleware serving /assets/ (before the router, so any file name is allowed). */
export function assetsMiddleware(env: RouteEnv): Koa.Middleware {
  return async (ctx, next) => {
    if (!ctx.path.startsWith(PREFIX)) return next();
    ctx.state.route = '/assets';
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.set('Allow', 'GET, HEAD');
      throw new ApplianceError('ERR_METHOD_NOT_ALLOWED', `${ctx.method} is not allowed on assets; use GET or HEAD`);
    }
    const urlPath = ctx.path.slice(PREFIX.length);
    const found = await resolveAsset(env.deps.assetsDir, urlPath);
    if (!found) throw new ApplianceError('ERR_ASSET_NOT_FOUND', `asset ${ctx.path} does not exist`);
    const encoded = found.rel.split('/').map(encodeURIComponent).join('/');
    const stream = send(ctx.req, `/${encoded}`, { root: found.root, index: false, dotfiles: 'allow', etag: true, lastModified: true });
    useLargeReads(stream);

    await new Promise<void>((resolve, reject) => {
      stream.on('error', (err: { status?: number; headers?: Record<string, string> }) => {
        // send may have set file headers before deciding on an error (416 comes after ETag).
        for (const h of ['ETag', 'Last-Modified', 'Accept-Ranges', 'Cache-Control', 'Content-Range']) ctx.res.removeHeader(h);
        const status = err.status ?? 500;
        const code = SEND_ERRORS[status] ?? (status === 404 ? 'ERR_ASSET_NOT_FOUND' : 'ERR_INTERNAL');
        reject(
          new ApplianceError(
            code,
            status === 416 ? 'requested range is not satisfiable' : `cannot send asset ${ctx.path} (${status})`,
            err.headers ? { headers: err.headers } : {},
          ),
        );
      });
      stream.on('directory', () => reject(new ApplianceError('ERR_ASSET_NOT_FOUND', `asset ${ctx.path} is a directory`)));
      // Koa starts every response at 404; send only sets non-200 statuses itself.
      ctx.res.statusCode = 200;
      ctx.res.once('finish', () => resolve());
      ctx.res.once('close', () => resolve());
      stream.pipe(ctx.res);
    });
    // send wrote the whole response itself (200/206/304/HEAD); Koa must not touch it.
    ctx.respond = false;

    const status = ctx.res.statusCode;
    if (ctx.method === 'GET' && (status === 200 || status === 206)) {
      const ip = clientIp(ctx);
      const q = typeof ctx.query.mac === 'string' ? normalizeMac(ctx.query.mac) : undefined;
      const mac = q ?? env.deps.events.timelineMac(ip) ?? '';
      env.record('http-asset', mac, ip, { file: `/assets/${found.rel}`, status, ...(ctx.get('Range') ? { range: ctx.get('Range').slice(0, 64) } : {}) });
      env.log.info({ mac, ip, file: found.rel, status }, 'served asset');
    }
  };
}
