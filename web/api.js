// The console's only way to the appliance: the REST API with the bearer token from
// sessionStorage (gone when the tab closes), and the event stream read with fetch so the token
// travels in the Authorization header, never in a URL.
const KEY = 'netboot.apiToken';

/** The token of this browser tab. */
export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An API error: HTTP status plus the appliance's { code, message, field }. */
export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message ?? `http ${status}`);
    this.status = status;
    this.code = error?.code ?? 'ERR_HTTP';
    this.field = error?.field;
  }
}

function headers(extra = {}) {
  const t = token.get();
  return { Accept: 'application/json', ...(t ? { Authorization: `Bearer ${t}` } : {}), ...extra };
}

/** Call the API; resolves with the JSON body (or text for non-JSON), rejects with ApiError. */
export async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: headers(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
    body: body !== undefined ? JSON.stringify(body) : undefined,
    cache: 'no-store',
  });
  const type = res.headers.get('content-type') ?? '';
  const data = res.status === 204 ? null : type.includes('json') ? await res.json() : await res.text();
  if (!res.ok) {
    if (res.status === 401) window.dispatchEvent(new CustomEvent('netboot:unauthorized'));
    throw new ApiError(res.status, data?.error);
  }
  return data;
}

/** Split a text/event-stream buffer into complete events; returns [events, rest]. */
export function parseSse(buffer) {
  const events = [];
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    const ev = { event: 'message', data: '' };
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') ev.event = value;
      else if (field === 'data') ev.data += (ev.data ? '\n' : '') + value;
      else if (field === 'retry' && /^\d+$/.test(value)) ev.retry = Number(value);
    }
    if (ev.data || ev.event !== 'message' || ev.retry) events.push(ev);
  }
  return [events, rest];
}

/**
 * Follow `GET /api/events/stream` (one machine's events when `mac` is given): `onEvent(bootEvent)`
 * for the backlog and every live event, `onState('live' | 'reconnecting')`. Reconnects after the
 * server's retry delay; a reconnect replays the backlog, so `onReset()` is called first.
 * Returns a function that stops it.
 */
export function followEvents({ mac, onEvent, onState = () => {}, onReset = () => {} }) {
  const ctl = new AbortController();
  let retry = 3000;
  const url = `/api/events/stream${mac ? `?mac=${encodeURIComponent(mac)}` : ''}`;
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const res = await fetch(url, { headers: headers({ Accept: 'text/event-stream' }), signal: ctl.signal, cache: 'no-store' });
        if (res.status === 401) {
          window.dispatchEvent(new CustomEvent('netboot:unauthorized'));
          return;
        }
        if (!res.ok || !res.body) throw new Error(`event stream: http ${res.status}`);
        onReset();
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const [events, rest] = parseSse(buffer + value);
          buffer = rest;
          for (const ev of events) {
            if (ev.retry) retry = ev.retry;
            if (ev.event === 'ready') onState('live');
            else if (ev.event === 'boot') onEvent(JSON.parse(ev.data));
          }
        }
      } catch (err) {
        if (ctl.signal.aborted) return;
      }
      onState('reconnecting');
      await new Promise((r) => setTimeout(r, retry));
    }
  })();
  return () => ctl.abort();
}
