import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplianceError } from '../errors.js';
import type { BootServer } from './baseline.js';
import type { Lab } from './netns.js';
import type { ManagedProcess } from './process.js';

/** Options for {@link startProcessBootServer}. */
export interface ProcessBootServerOptions {
  /** Report name, e.g. `appliance`. */
  name: string;
  /** Program and arguments, run as `ip netns exec LAB cmd ...args`. */
  cmd: string;
  args: readonly string[];
  /**
   * Ready when a GET of this URL (fetched from inside the lab namespace with busybox wget)
   * succeeds, e.g. `http://10.99.X.1:8080/boot.ipxe`.
   */
  readyUrl?: string;
  /** Or ready when stdout matches this pattern. At least one of the two is required. */
  readyPattern?: RegExp;
  /** Give up after this long (default 15 s). */
  readyTimeoutMs?: number;
  /** Environment of the program (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Run any boot server program inside the lab namespace (the appliance: `node bin/appliance
 * --interface br0 --address 10.99.X.1 ...`) and resolve once it serves. Its stdout and stderr
 * go to `WORKDIR/NAME.stdout.log` / `.stderr.log` and are exposed as `logPaths`. Rejects with
 * `ERR_LAB_SERVER` (and the log tail) if it exits first, `ERR_LAB_TIMEOUT` if never ready.
 */
export async function startProcessBootServer(lab: Lab, options: ProcessBootServerOptions): Promise<BootServer & { readonly process: ManagedProcess }> {
  if (!options.readyUrl && !options.readyPattern) {
    throw new ApplianceError('ERR_LAB_CONFIG', 'startProcessBootServer needs readyUrl or readyPattern');
  }
  const stdoutPath = join(lab.workDir, `${options.name}.stdout.log`);
  const stderrPath = join(lab.workDir, `${options.name}.stderr.log`);
  const proc = lab.spawn(options.cmd, options.args, { stdoutPath, stderrPath, label: options.name, ...(options.env ? { env: options.env } : {}) });
  let out = '';
  proc.onStdout((c) => {
    out += c.toString('utf8');
  });
  const timeoutMs = options.readyTimeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  const logTail = () => {
    const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : '');
    return `${read(stdoutPath)}${read(stderrPath)}`.slice(-3000);
  };
  try {
    for (;;) {
      const byPattern = options.readyPattern ? options.readyPattern.test(out) : true;
      const byUrl =
        byPattern && options.readyUrl
          ? await lab.exec('busybox', ['wget', '-q', '-O', '/dev/null', options.readyUrl]).then(
              () => true,
              () => false,
            )
          : true;
      if (byPattern && byUrl) break;
      if (proc.exitStatus()) {
        // 'exit' can come before the last output reached the log files; they are complete
        // once `exited` resolves (after 'close' and the file streams ended).
        await proc.exited;
        throw new ApplianceError('ERR_LAB_SERVER', `${options.name} exited during startup:\n${logTail()}`, { name: options.name });
      }
      if (Date.now() > deadline) {
        throw new ApplianceError('ERR_LAB_TIMEOUT', `${options.name} was not ready within ${timeoutMs} ms:\n${logTail()}`, { name: options.name });
      }
      await new Promise((r) => setTimeout(r, 150));
    }
  } catch (err) {
    await proc.stop(2000);
    throw err;
  }
  return {
    name: options.name,
    logPaths: { stdout: stdoutPath, stderr: stderrPath },
    process: proc,
    stop: async () => {
      await proc.stop(3000);
    },
  };
}
