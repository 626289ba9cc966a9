/**
 * The boot timeline on disk: every boot event appended as one JSON line to `timeline.jsonl` in
 * the state directory, rotated to `timeline.1.jsonl` when it reaches half the bound (so the two
 * files never hold more than `maxBytes` together), and replayed into the in-memory EventLog at
 * start, so `GET /api/events` shows what happened before a restart. Appends are buffered and
 * written in order by one writer; a failed write is logged once and reported by `status()`,
 * never thrown at the server that recorded the event.
 */
import { appendFile, readFile, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { createEventLog, type BootEvent, type EventLog } from '../events.js';
import type { Logger } from '../log.js';

/** Default bound of both timeline files together. */
export const DEFAULT_TIMELINE_BYTES = 16 * 1024 * 1024;
/**
 * Appends are gathered for this long: a boot storm or a DHCP flood records thousands of events a
 * second, and one append (open, write, close on the thread pool) per event loop turn cost more
 * CPU than answering the packets (measured with perfdhcp at 1,000 PXE DISCOVERs/s).
 */
const BATCH_MS = 50;
/** Largest single event line kept (details are small; anything larger is cut to a stub). */
const MAX_LINE = 4096;

/** An EventLog that also persists, with health and a flush for tests and shutdown. */
export interface PersistentEventLog extends EventLog {
  readonly file: string;
  status(): { ok: boolean; error?: string };
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Options for {@link openTimeline}. */
export interface TimelineOptions {
  dir: string;
  log: Logger;
  maxBytes?: number;
  /** The in-memory log to fill (default: a new createEventLog()). */
  events?: EventLog;
}

function isEvent(v: unknown): v is BootEvent {
  const e = v as BootEvent;
  return typeof e === 'object' && e !== null && typeof e.at === 'string' && typeof e.mac === 'string' && typeof e.type === 'string';
}

/** Open the timeline in `dir`, replay it, and return an EventLog that appends to it. */
export async function openTimeline(options: TimelineOptions): Promise<PersistentEventLog> {
  const log = options.log.child({ subsystem: 'timeline' });
  const maxBytes = options.maxBytes ?? DEFAULT_TIMELINE_BYTES;
  const file = path.join(options.dir, 'timeline.jsonl');
  const old = path.join(options.dir, 'timeline.1.jsonl');
  const inner = options.events ?? createEventLog();

  let replayed = 0;
  for (const f of [old, file]) {
    const text = await readFile(f, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        const e: unknown = JSON.parse(line);
        if (isEvent(e)) {
          inner.record(e);
          replayed++;
        }
      } catch {
        // A torn last line after a crash: skip it.
      }
    }
  }
  let size = await stat(file).then(
    (s) => s.size,
    () => 0,
  );
  if (replayed > 0) log.info({ file, events: replayed }, 'boot timeline replayed');

  let buffer: string[] = [];
  let writing: Promise<void> = Promise.resolve();
  let scheduled = false;
  let error: string | undefined;

  const writeOut = async (): Promise<void> => {
    scheduled = false;
    const lines = buffer;
    buffer = [];
    if (lines.length === 0) return;
    try {
      // Lines go out in chunks that fit the current file's half of the bound; a full file is
      // rotated to timeline.1.jsonl (replacing the older one).
      let chunk = '';
      const half = maxBytes / 2;
      for (const line of lines) {
        if (size + chunk.length + line.length > half && size + chunk.length > 0) {
          if (chunk !== '') await appendFile(file, chunk);
          await rename(file, old);
          size = 0;
          chunk = '';
        }
        chunk += line;
      }
      if (chunk !== '') {
        await appendFile(file, chunk);
        size += Buffer.byteLength(chunk);
      }
      if (error !== undefined) log.info({ file }, 'boot timeline writes work again');
      error = undefined;
    } catch (err) {
      if (error === undefined) log.warn({ file, err: (err as Error).message }, 'cannot write the boot timeline; events are kept in memory only');
      error = `cannot write ${file}: ${(err as Error).message}`;
    }
  };

  const timeline: PersistentEventLog = {
    file,
    record(input) {
      const event = inner.record(input);
      let line = `${JSON.stringify(event)}\n`;
      if (line.length > MAX_LINE)
        line = `${JSON.stringify({ at: event.at, mac: event.mac, type: event.type, ...(event.ip ? { ip: event.ip } : {}), ...(event.addressTrusted ? { addressTrusted: true } : {}), detail: { truncated: true } })}\n`;
      buffer.push(line);
      if (!scheduled) {
        scheduled = true;
        // One append per batch of events, in order.
        writing = writing.then(() => new Promise<void>((resolve) => setTimeout(resolve, BATCH_MS))).then(writeOut);
      }
      return event;
    },
    subscribe: (listener) => inner.subscribe?.(listener) ?? (() => undefined),
    list: (filter) => inner.list(filter),
    macForIp: (ip) => inner.macForIp(ip),
    lastIp: (mac) => inner.lastIp(mac),
    timelineMac: (ip) => inner.timelineMac(ip),
    status: () => ({ ok: error === undefined, ...(error !== undefined ? { error } : {}) }),
    async flush() {
      await writing;
      if (buffer.length > 0) {
        writing = writing.then(writeOut);
        await writing;
      }
    },
    async close() {
      await timeline.flush();
    },
  };
  return timeline;
}
