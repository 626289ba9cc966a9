/**
 * The `--log-file` sink: lines are appended without blocking the event loop on the disk. A line
 * is queued; one write(2) at a time carries everything queued since the previous one returned, so
 * a burst of lines costs a few writes, not one each; a line that finds no write in flight waits
 * LOG_FILE_BATCH_MS for others. `reopen()` (SIGHUP, after logrotate moved
 * the file) switches to a fresh file once the write in flight has returned, so no line goes to
 * the old file after the switch; `flush()` resolves once every line queued before it is written
 * (the serve command awaits it before exiting), and `flushSync()` writes what is still queued
 * from a synchronous 'exit' handler.
 *
 * Not pino's SonicBoom with `sync: false`: its `flush(cb)` calls back at once when nothing is
 * buffered by size (minLength 0), before the write in flight has returned, and its `flushSync()`
 * then writes the queue beside that write; so "the last line is in the file at exit" could not
 * be promised.
 */
import { closeSync, openSync, write, writeSync } from 'node:fs';

/**
 * A line waits this long for company before its write starts (unless a write is in flight, or
 * LOG_FILE_BATCH_BYTES are queued): a DHCP flood logs a line per new machine, and one write(2)
 * on the thread pool per line cost ~10 % of the CPU of a ProxyDHCP offer (profiled under
 * perfdhcp at 2,000 offers/s). flush(), reopen() and the exit handler's flushSync() do not wait.
 */
export const LOG_FILE_BATCH_MS = 10;
/** Queued bytes that start a write at once. */
export const LOG_FILE_BATCH_BYTES = 64 * 1024;

/** Lines queued at most while the disk does not keep up (a stalled NFS mount, a full disk): past it lines are dropped and counted. */
export const LOG_FILE_QUEUE_BYTES = 8 * 1024 * 1024;

/** An open log file. */
export interface LogFileSink {
  /** Queue one line (with its newline). Never throws: a failed write is reported to `onError`. */
  write(line: string): void;
  /** Reopen the path (logrotate moved the file); the old file gets no line queued after this. */
  reopen(): void;
  /** Resolves once every line queued so far is written (or failed and was reported). */
  flush(): Promise<void>;
  /** Write the queue synchronously, for an 'exit' handler (best effort). */
  flushSync(): void;
}

/**
 * Open `path` for appending now (so a bad path fails here, with the caller's message) and return
 * the sink. `onError` hears failed writes and reopens; logging goes on with the next line.
 */
export function openLogFile(path: string, onError: (err: NodeJS.ErrnoException, what: 'write' | 'reopen') => void): LogFileSink {
  let fd = openSync(path, 'a', 0o640);
  // Lines, and where a reopen falls between them: what was queued before it goes to the old file.
  const queue: Array<string | typeof REOPEN> = [];
  let queuedBytes = 0;
  let dropped = 0;
  let inFlight = false;
  let waiters: Array<() => void> = [];
  let timer: NodeJS.Timeout | undefined;

  const reopenNow = (): void => {
    let next: number;
    try {
      next = openSync(path, 'a', 0o640);
    } catch (err) {
      // Keep the old file rather than lose lines (e.g. the directory is gone for a moment).
      onError(err as NodeJS.ErrnoException, 'reopen');
      return;
    }
    const old = fd;
    fd = next;
    try {
      closeSync(old);
    } catch {
      // already closed
    }
  };

  /** The lines up to the next reopen (or all), with the drop notice when they reach the end. */
  const take = (): string => {
    const cut = queue.indexOf(REOPEN);
    const lines = (cut < 0 ? queue.splice(0) : queue.splice(0, cut)) as string[];
    if (cut < 0 && dropped > 0) {
      // After the lines queued before the drops, before the next ones.
      lines.push(`${JSON.stringify({ level: 40, time: Date.now(), msg: `${dropped} log lines dropped: the log file did not keep up` })}\n`);
      dropped = 0;
    }
    const text = lines.join('');
    queuedBytes -= text.length;
    if (queuedBytes < 0 || queue.length === 0) queuedBytes = 0;
    return text;
  };

  const later = (): void => {
    if (timer !== undefined) return;
    timer = setTimeout(pump, LOG_FILE_BATCH_MS);
    // The exit handler's flushSync() writes what a pending timer would have.
    timer.unref();
  };

  const pump = (): void => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    if (inFlight) return;
    while (queue[0] === REOPEN) {
      queue.shift();
      reopenNow();
    }
    if (queue.length === 0 && dropped === 0) {
      const done = waiters;
      waiters = [];
      for (const resolve of done) resolve();
      return;
    }
    const chunk = Buffer.from(take());
    inFlight = true;
    const writeFrom = (offset: number): void => {
      write(fd, chunk, offset, chunk.length - offset, null, (err, written) => {
        if (!err && offset + written < chunk.length) return writeFrom(offset + written);
        if (err) onError(err, 'write');
        inFlight = false;
        // Lines that came in meanwhile go now when someone waits for them (or many are queued);
        // else they wait for company like any other line.
        if (waiters.length > 0 || queuedBytes >= LOG_FILE_BATCH_BYTES || queue[0] === REOPEN) pump();
        else if (queue.length > 0 || dropped > 0) later();
      });
    };
    writeFrom(0);
  };

  return {
    write(line) {
      if (queuedBytes + line.length > LOG_FILE_QUEUE_BYTES) {
        dropped += 1;
        return;
      }
      queue.push(line);
      queuedBytes += line.length;
      // A write in flight takes the queue along when it returns; else wait a moment for more.
      if (inFlight) return;
      if (queuedBytes >= LOG_FILE_BATCH_BYTES) pump();
      else later();
    },
    reopen() {
      queue.push(REOPEN);
      pump();
    },
    flush() {
      return new Promise((resolve) => {
        waiters.push(resolve);
        pump();
      });
    },
    flushSync() {
      if (timer !== undefined) {
        clearTimeout(timer);
        timer = undefined;
      }
      // What is in flight is the kernel's (or the thread pool's) now; the queue is written here.
      while (queue.length > 0 || dropped > 0) {
        while (queue[0] === REOPEN) {
          queue.shift();
          reopenNow();
        }
        const text = take();
        if (text === '') continue;
        try {
          writeSync(fd, text);
        } catch (err) {
          onError(err as NodeJS.ErrnoException, 'write');
        }
      }
    },
  };
}

const REOPEN = Symbol('reopen');
