/** The one log-capturing logger of the tests: pino JSON lines parsed into `lines`. */
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';

/** A logger (level debug by default) whose JSON lines are kept, parsed, in `lines`. */
export function captureLogger<L = Record<string, unknown>>(level: 'debug' | 'trace' | 'info' = 'debug'): { log: Logger; lines: L[] } {
  const lines: L[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as L);
      cb();
    },
  });
  return { log: createLogger({ level, destination, format: 'json' }), lines };
}
