/**
 * Progress reporting for downloads: a bar on the terminal's status line when the stream is a
 * terminal (log lines go above it, never into it),
 * otherwise an info log line every few seconds (CI logs and systemd journals are not TTYs and
 * would fill with carriage returns).
 */
import type { Logger } from '../log.js';
import { terminalFor } from '../terminal.js';
import type { DownloadProgress, ProgressListener } from './download.js';

/** A progress listener plus `stop()` to tear down a bar left open by an error. */
export interface ProgressReporter {
  onProgress: ProgressListener;
  stop(): void;
}

/**
 * Create the default reporter for interactive and non-interactive use.
 * `stream` defaults to process.stderr (stdout stays clean for scripts); `intervalMs` paces the
 * log lines when it is not a TTY.
 */
export function createProgressReporter(options: { log: Logger; stream?: NodeJS.WriteStream; intervalMs?: number }): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  return stream.isTTY ? createBarReporter(stream) : createLogReporter(options.log, options.intervalMs ?? 5000);
}

function createBarReporter(stream: NodeJS.WriteStream): ProgressReporter {
  // The bar is the terminal's status line: log lines printed meanwhile go above it.
  const terminal = terminalFor(stream);
  let current: string | undefined;
  let started = 0;
  let drawn = 0;
  const stop = (): void => {
    if (current !== undefined) terminal.setStatus(undefined);
    current = undefined;
  };
  const onProgress = (p: DownloadProgress): void => {
    const key = `${p.file} ${p.url}`;
    const now = Date.now();
    if (current !== key) {
      stop();
      current = key;
      started = now;
      drawn = 0;
    }
    // At most 10 redraws a second, and always the last state.
    if (!p.done && now - drawn < 100) return;
    drawn = now;
    terminal.setStatus(formatBar(p, (now - started) / 1000, stream.columns ?? 80));
    if (p.done) {
      terminal.writeLine(formatBar(p, (now - started) / 1000, stream.columns ?? 80));
      stop();
    }
  };
  return { onProgress, stop };
}

/** `file [=====-----] 45% | 12.3 MiB / 45.6 MiB | ETA 3s`, cut to `columns`. */
export function formatBar(p: Pick<DownloadProgress, 'file' | 'received' | 'total'>, elapsedSeconds: number, columns = 80): string {
  const size = formatSize(p.received, p.total);
  if (p.total === undefined || p.total <= 0) return `${p.file} ${size}`.slice(0, columns - 1);
  const fraction = Math.min(1, p.received / p.total);
  const rate = elapsedSeconds > 0 ? p.received / elapsedSeconds : 0;
  const eta = rate > 0 ? `${Math.ceil((p.total - p.received) / rate)}s` : '?';
  const width = 20;
  const filled = Math.round(fraction * width);
  const bar = '='.repeat(filled) + '-'.repeat(width - filled);
  return `${p.file} [${bar}] ${Math.floor(fraction * 100)}% | ${size} | ETA ${eta}`.slice(0, columns - 1);
}

function createLogReporter(log: Logger, intervalMs: number): ProgressReporter {
  let last = 0;
  const onProgress = (p: DownloadProgress): void => {
    const now = Date.now();
    if (!p.done && now - last < intervalMs) return;
    last = p.done ? 0 : now;
    const percent = p.total !== undefined && p.total > 0 ? Math.floor((p.received / p.total) * 100) : undefined;
    log.info({ file: p.file, received: p.received, total: p.total, percent }, p.done ? 'transfer ended' : 'downloading');
  };
  return { onProgress, stop: () => undefined };
}

/** "12.3 MiB / 45.6 MiB" */
export function formatSize(received: number, total: number | undefined): string {
  const mib = (n: number): string => `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  return total !== undefined ? `${mib(received)} / ${mib(total)}` : mib(received);
}
