import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** Log levels accepted by `--log-level`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * The one process logger. Each server takes `log.child({ subsystem })`; fields such as `mac`,
 * `xid`, `arch` and `file` are logged, never whole packets.
 */
export function createLogger(options: { level?: LevelWithSilent; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? 'info';
  return options.destination
    ? pino({ level, base: undefined }, options.destination)
    : pino({ level, base: undefined });
}

/** A logger that drops everything: for tests that do not look at logs. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}
