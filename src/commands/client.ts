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

/** One server-sent event: its `event:` name and `data:` text. */
export interface ServerSentEvent {
  event: string;
  data: string;
}

/** A minimal JSON client for the appliance API. */
export interface ApiClient {
  readonly base: string;
  get<T>(path: string): Promise<T>;
  /** Read a `text/event-stream` until it ends or `signal` aborts; yields each event. */
  stream(path: string, signal: AbortSignal): AsyncGenerator<ServerSentEvent>;
}

/** The token for API calls: the setting, else the token file beside the database, else none (the API then answers 401). */
export function clientToken(config: { apiToken: string | undefined; db: string }): string | undefined {
  if (config.apiToken !== undefined) return config.apiToken;
  try {
    const token = readFileSync(join(dirname(config.db), API_TOKEN_FILE), 'utf8').trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

/** Split an event-stream text into complete events; returns them and the unfinished rest. */
export function parseEventStream(text: string): { events: ServerSentEvent[]; rest: string } {
  const events: ServerSentEvent[] = [];
  const blocks = text.replace(/\r\n?/g, '\n').split('\n\n');
  const rest = blocks.pop() ?? '';
  for (const block of blocks) {
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length > 0) events.push({ event, data: data.join('\n') });
  }
  return { events, rest };
}

/** Create a client for `base` (an http(s) URL). */
export function createApiClient(options: { base: string; token: string | undefined; timeoutMs?: number }): ApiClient {
  const base = parseHttpUrl(options.base, '--url').href.replace(/\/+$/, '');
  const headers = (accept: string) => ({ accept, ...(options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {}) });

  async function request(path: string, accept: string, signal: AbortSignal): Promise<Response> {
    const url = `${base}${path}`;
    let res: Response;
    try {
      res = await fetch(url, { headers: headers(accept), signal });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      throw new ApplianceError(
        'ERR_API_UNREACHABLE',
        `no appliance answers at ${base} (${cause}); is it running? pass --url or --http-port`,
        { url },
        { cause: err },
      );
    }
    if (!res.ok) {
      const text = await res.text();
      let message = text.slice(0, 200);
      try {
        message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? message;
      } catch {
        // not JSON: keep the text
      }
      const hint = res.status === 401 ? '; pass --api-token, or --db of that appliance so its token file is read' : '';
      throw new ApplianceError('ERR_API_STATUS', `${url} answered ${res.status}: ${message}${hint}`, { url, status: res.status });
    }
    return res;
  }

  return {
    base,
    async get<T>(path: string): Promise<T> {
      const res = await request(path, 'application/json', AbortSignal.timeout(options.timeoutMs ?? 10_000));
      const text = await res.text();
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new ApplianceError('ERR_API_STATUS', `${base}${path} did not answer JSON; is it the appliance?`, { url: `${base}${path}` });
      }
    },
    async *stream(path: string, signal: AbortSignal): AsyncGenerator<ServerSentEvent> {
      const res = await request(path, 'text/event-stream', signal);
      if (!res.body) return;
      const decoder = new TextDecoder();
      let buffered = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          const { events, rest } = parseEventStream(buffered + decoder.decode(chunk, { stream: true }));
          // Bounded: an event larger than 1 MiB is not one of ours.
          buffered = rest.length > 1 << 20 ? '' : rest;
          yield* events;
        }
      } catch (err) {
        if (signal.aborted) return;
        throw new ApplianceError(
          'ERR_API_UNREACHABLE',
          `the event stream from ${base} broke: ${(err as Error).message}`,
          { url: `${base}${path}` },
          { cause: err },
        );
      }
    },
  };
}
