import { pino, type Logger, type LevelWithSilent } from 'pino';
import { ConfigError } from './errors.js';
import { openLogFile, type LogFileSink } from './log-file.js';
import { isTerminal, terminalFor } from './terminal.js';

export type { Logger };

/** Log levels accepted by `--log-level`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** `--log-format`: `auto` is human on a terminal and JSON otherwise (pipes, files, journald). */
export const LOG_FORMATS = ['auto', 'human', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Options of the process logger. */
export interface LoggerOptions {
  level?: LevelWithSilent;
  /** Where lines go (default stdout). Ignored when `file` is given. */
  destination?: NodeJS.WritableStream;
  /** Default `auto`. */
  format?: LogFormat;
  /** Append to this file instead (JSON unless format is `human`), asynchronously (log-file.ts); `reopen()` reopens it. */
  file?: string;
}

/** The logger and the handle on its output (SIGHUP reopens a log file that logrotate moved). */
export interface LogOutput {
  log: Logger;
  /** The format chosen after resolving `auto`. */
  format: 'human' | 'json';
  /** Reopen the log file (a no-op for streams). */
  reopen(): void;
  /** Resolves once every line logged so far is written out (await it before exiting). */
  flush(): Promise<void>;
  /** Write what is still queued synchronously: for an 'exit' handler, where nothing can be awaited. */
  flushSync(): void;
}

/**
 * The one process logger. Each server takes `log.child({ subsystem })`; fields such as `mac`,
 * `xid`, `arch` and `file` are logged, never whole packets.
 */
export function createLogOutput(options: LoggerOptions = {}): LogOutput {
  const level = options.level ?? 'info';
  const requested = options.format ?? 'auto';
  if (options.file !== undefined) {
    // A failed write (disk full) is said once on stderr per kind and the logger goes on: logging must not stop the appliance.
    const said = new Set<string>();
    const path = options.file;
    let file: LogFileSink;
    try {
      file = openLogFile(path, (err, what) => {
        if (said.has(`${what}:${err.code}`)) return;
        said.add(`${what}:${err.code}`);
        process.stderr.write(`appliance: cannot ${what} log file ${path}: ${err.code ?? err.message}\n`);
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new ConfigError(`--log-file ${path} cannot be opened for appending (${code}); create its directory or pass another`, { setting: 'logFile' });
    }
    const format = requested === 'human' ? 'human' : 'json';
    const sink = format === 'human' ? { write: (line: string) => file.write(`${formatHumanLine(line, { color: false })}\n`) } : file;
    return { log: pino({ level, base: null }, sink), format, reopen: () => file.reopen(), flush: () => file.flush(), flushSync: () => file.flushSync() };
  }
  const stream = options.destination ?? process.stdout;
  const tty = isTerminal(stream);
  const format = requested === 'auto' ? (tty ? 'human' : 'json') : requested;
  let sink: { write(line: string): void } = stream;
  if (tty) {
    // Through the terminal's writer, so a progress bar on the same stream is redrawn below.
    const terminal = terminalFor(stream);
    const color = process.env.NO_COLOR === undefined;
    sink = { write: (line) => terminal.writeLine(format === 'human' ? formatHumanLine(line, { color }) : line.replace(/\n$/, '')) };
  } else if (format === 'human') {
    sink = { write: (line) => void stream.write(`${formatHumanLine(line, { color: false })}\n`) };
  }
  return { log: pino({ level, base: null }, sink), format, reopen: () => undefined, flush: () => Promise.resolve(), flushSync: () => undefined };
}

/** The process logger alone (tests, helpers): see createLogOutput. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return createLogOutput(options).log;
}

/** A logger that drops everything: for tests that do not look at logs. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
// SGR colours: dim, default, yellow, red, red, magenta.
const LEVEL_COLORS: Record<number, string> = { 10: '2', 20: '2', 30: '32', 40: '33', 50: '31', 60: '35' };
const SHOWN_APART = new Set(['level', 'time', 'msg', 'subsystem', 'mac', 'pid', 'hostname', 'v']);

/**
 * One pino JSON line as one human line: `HH:MM:SS.mmm LEVEL subsystem MAC message key=value ...`.
 * Strings with spaces or quotes are JSON-quoted; objects are compact JSON; an `err` shows its
 * message. A line that is not pino JSON is returned as it is.
 */
export function formatHumanLine(line: string, options: { color: boolean }): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.replace(/\n$/, '');
  }
  if (entry === null || typeof entry !== 'object') return line.replace(/\n$/, '');
  const levelNumber = typeof entry.level === 'number' ? entry.level : 30;
  const time = typeof entry.time === 'number' ? new Date(entry.time) : new Date();
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const clock = `${pad(time.getHours())}:${pad(time.getMinutes())}:${pad(time.getSeconds())}.${pad(time.getMilliseconds(), 3)}`;
  let levelText = (LEVEL_NAMES[levelNumber] ?? String(levelNumber)).padEnd(5);
  if (options.color) levelText = `\x1b[${LEVEL_COLORS[levelNumber] ?? '0'}m${levelText}\x1b[0m`;
  const parts = [clock, levelText];
  parts.push(typeof entry.subsystem === 'string' ? entry.subsystem.padEnd(6) : ''.padEnd(6));
  if (typeof entry.mac === 'string' && entry.mac !== '') parts.push(entry.mac);
  if (typeof entry.msg === 'string') parts.push(entry.msg);
  for (const [key, value] of Object.entries(entry)) {
    if (SHOWN_APART.has(key) || value === undefined) continue;
    parts.push(`${key}=${formatValue(key, value)}`);
  }
  return parts.join(' ').replace(/[\r\n]+/g, ' ');
}

function formatValue(key: string, value: unknown): string {
  if (key === 'err' && value !== null && typeof value === 'object' && typeof (value as { message?: unknown }).message === 'string') {
    return JSON.stringify((value as { message: string }).message);
  }
  if (typeof value === 'string') return /^[^\s"'=]+$/.test(value) ? value : JSON.stringify(value);
  return JSON.stringify(value);
}
