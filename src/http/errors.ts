/**
 * The one place where error codes become HTTP statuses, and the middleware that writes every
 * error as `{ error: { code, message, field? } }`. Handlers only throw coded ApplianceErrors.
 */
import type Koa from 'koa';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';

const STATUS: Record<string, number> = {
  ERR_BAD_JSON: 400,
  ERR_BAD_REQUEST: 400,
  ERR_MAC_REQUIRED: 400,
  ERR_UNAUTHORIZED: 401,
  ERR_NOT_FOUND: 404,
  ERR_PROFILE_NOT_FOUND: 404,
  ERR_MACHINE_NOT_FOUND: 404,
  ERR_GROUP_NOT_FOUND: 404,
  ERR_ASSET_NOT_FOUND: 404,
  ERR_LOOKUP_NOT_FOUND: 404,
  ERR_NO_PROFILE: 404,
  ERR_METHOD_NOT_ALLOWED: 405,
  ERR_PROFILE_IN_USE: 409,
  ERR_NOT_PROVISIONING: 409,
  ERR_NO_BMC: 409,
  ERR_CALLBACK_TOKEN: 403,
  ERR_FACTS_TOKEN: 403,
  ERR_SELECTOR: 422,
  ERR_BMC: 502,
  ERR_STORE_FILE_INVALID: 409,
  ERR_STORE_CONFLICT: 409,
  ERR_FORBIDDEN: 403,
  ERR_FACTS_TOO_LARGE: 413,
  ERR_PRECONDITION_FAILED: 412,
  ERR_BODY_TOO_LARGE: 413,
  ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  ERR_RANGE_NOT_SATISFIABLE: 416,
  ERR_VALIDATION: 422,
  ERR_UNSAFE_VALUE: 422,
  ERR_TEMPLATE: 500,
  ERR_CLOUD_CONFIG_INVALID: 500,
  ERR_STORE_WRITE: 503,
  ERR_DISCOVERY_FULL: 503,
  ERR_DISCOVERY_BUSY: 503,
  ERR_TOO_MANY_STREAMS: 503,
  ERR_DISCOVERY_OFF: 403,
  ERR_STATE_FULL: 507,
};

/** HTTP status for an error code (500 for codes this edge does not know). */
export function statusForCode(code: string): number {
  return STATUS[code] ?? 500;
}

/** Body of every error response. */
export interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

/** Koa middleware: turn thrown errors into coded JSON responses; log 5xx with the cause. */
export function errorMiddleware(log: Logger): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.respond !== false) {
        throw new ApplianceError('ERR_NOT_FOUND', `no route for ${ctx.method} ${ctx.path}`);
      }
    } catch (err) {
      let code = 'ERR_INTERNAL';
      let message = 'internal error';
      let field: string | undefined;
      let status = 500;
      if (err instanceof ApplianceError) {
        code = err.code;
        message = err.message;
        status = statusForCode(code);
        const f = err.detail?.field;
        if (typeof f === 'string') field = f;
      } else if (typeof (err as { status?: unknown }).status === 'number' && (err as { expose?: boolean }).expose) {
        // http-errors from Koa/router internals (e.g. 405 from allowedMethods).
        status = (err as { status: number }).status;
        code = status === 405 ? 'ERR_METHOD_NOT_ALLOWED' : 'ERR_BAD_REQUEST';
        message = (err as Error).message.toLowerCase();
      }
      if (status >= 500) log.error({ code, path: ctx.path, err }, 'request failed');
      else log.debug({ code, path: ctx.path, status }, message);
      if (ctx.headerSent || !ctx.writable) return;
      const body: ErrorBody = { error: { code, message, ...(field !== undefined ? { field } : {}) } };
      ctx.status = status;
      ctx.set('Cache-Control', 'no-store');
      if (status === 401) ctx.set('WWW-Authenticate', 'Bearer realm="netboot-appliance"');
      const headers = err instanceof ApplianceError ? err.detail?.headers : undefined;
      if (headers && typeof headers === 'object') for (const [k, v] of Object.entries(headers)) ctx.set(k, String(v));
      ctx.body = body;
    }
  };
}
