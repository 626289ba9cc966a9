/** `lab` run in-process with captured stdout/stderr and a private signal emitter. */
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { runLabCommand } from '../../src/lab/command.js';

/** A lab command in progress: what it printed so far, the emitter to signal it, its exit code. */
export interface LabRun {
  stdout: () => string;
  stderr: () => string;
  signals: EventEmitter;
  done: Promise<number>;
}

/** Start `lab ARGV` as `node bin/appliance lab ARGV` would run it, in this process. */
export function runLab(argv: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): LabRun {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        append(chunk.toString('utf8'));
        cb();
      },
    });
  const signals = new EventEmitter();
  const io = { stdout: sink((s) => (out += s)), stderr: sink((s) => (err += s)), env: options.env ?? process.env, cwd: options.cwd ?? process.cwd() };
  const done = runLabCommand(argv, io, signals);
  return { stdout: () => out, stderr: () => err, signals, done };
}
