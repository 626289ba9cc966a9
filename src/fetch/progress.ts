/**
 * Progress reporting for downloads: a `cli-progress` bar when the stream is a terminal,
 * otherwise an info log line every few seconds (CI logs and systemd journals are not TTYs and
 * would fill with carriage returns).
 */
import cliProgress from 'cli-progress';
import type { Logger } from '../log.js';
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
export function createProgressReporter(options: {
  log: Logger;
  stream?: NodeJS.WriteStream;
  intervalMs?: number;
}): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  return stream.isTTY ? createBarReporter(stream) : createLogReporter(options.log, options.intervalMs ?? 5000);
}

function createBarReporter(stream: NodeJS.WriteStream): ProgressReporter {
  let bar: cliProgress.SingleBar | undefined;
  let current: string | undefined;
  const stop = (): void => {
    bar?.stop();
    bar = undefined;
    current = undefined;
  };
  const onProgress = (p: DownloadProgress): void => {
    const key = `${p.file} ${p.url}`;
    if (bar === undefined || current !== key) {
      stop();
      bar = new cliProgress.SingleBar(
        {
          stream,
          format: p.total !== undefined ? '{file} [{bar}] {percentage}% | {size} | ETA {eta_formatted}' : '{file} {size}',
          hideCursor: true,
          fps: 10,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(p.total ?? 0, p.received, { file: p.file, size: formatSize(p.received, p.total) });
      current = key;
    }
    bar.update(p.received, { size: formatSize(p.received, p.total) });
    if (p.done) stop();
  };
  return { onProgress, stop };
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
