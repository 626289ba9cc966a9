/**
 * The client side of `status`, `machines` and `events`: talk to a running appliance over its
 * HTTP API, with the bearer token from --api-token or the token file beside --db.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ApplianceError } from '../errors.js';
import { API_TOKEN_FILE } from '../http/token.js';
import { parseHttpUrl } from '../fetch/download.js';

/** The settings a client command reads. */
export const CLIENT_SETTINGS = ['httpPort', 'db', 'apiToken'] as const;

/** `--url` for every client command. */
export const URL_FLAG = { name: 'url', type: 'string', arg: 'URL', help: 'the appliance to ask [default: http://127.0.0.1:HTTP-PORT]' } as const;

/** A minimal JSON client for the appliance API. */
export interface ApiClient {
  readonly base: string;
  get<T>(path: string): Promise<T>;
}

/** The token for API calls: the setting, else the token file beside the database, else none (reads are open). */
export function clientToken(config: { apiToken: string | undefined; db: string }): string | undefined {
  if (config.apiToken !== undefined) return config.apiToken;
  try {
    const token = readFileSync(join(dirname(config.db), API_TOKEN_FILE), 'utf8').trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

/** Create a client for `base` (an http(s) URL). */
export function createApiClient(options: { base: string; token: string | undefined; timeoutMs?: number }): ApiClient {
  const base = parseHttpUrl(options.base, '--url').href.replace(/\/+$/, '');
  return {
    base,
    async get<T>(path: string): Promise<T> {
      const url = `${base}${path}`;
      let res: Response;
      try {
        res = await fetch(url, {
          headers: { accept: 'application/json', ...(options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {}) },
          signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
        throw new ApplianceError('ERR_API_UNREACHABLE', `no appliance answers at ${base} (${cause}); is it running? pass --url or --http-port`, { url }, { cause: err });
      }
      const text = await res.text();
      if (!res.ok) {
        let message = text.slice(0, 200);
        try {
          message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
        } catch {
          // not JSON: keep the text
        }
        throw new ApplianceError('ERR_API_STATUS', `${url} answered ${res.status}: ${message}`, { url, status: res.status });
      }
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new ApplianceError('ERR_API_STATUS', `${url} did not answer JSON; is it the appliance?`, { url });
      }
    },
  };
}
