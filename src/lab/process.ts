import { execFile, execFileSync, spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { ApplianceError } from '../errors.js';

/** Output of a finished helper command. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

/**
 * Run a short helper command (`ip`, `cp`, ...) and collect its output. Rejects with
 * `ERR_LAB_COMMAND` naming the command and its stderr when it fails or exceeds `timeoutMs`.
 */
export function runCommand(cmd: string, args: readonly string[], options: { timeoutMs?: number } = {}): Promise<CommandResult> {
  const timeout = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    execFile(cmd, [...args], { timeout, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const detail = String(stderr).trim() || err.message;
        reject(new ApplianceError('ERR_LAB_COMMAND', `${cmd} ${args.join(' ')} failed: ${detail}`, { cmd, args: [...args] }, { cause: err }));
        return;
      }
      resolve({ stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** How a managed process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A long-running child (qemu, dnsmasq, httpd) in its own process group. */
export interface ManagedProcess {
  /** PID of the child; also its process group id. */
  readonly pid: number;
  /** Resolves when the child has exited (never rejects). */
  readonly exited: Promise<ProcessExit>;
  /** The exit once known, else undefined. */
  exitStatus(): ProcessExit | undefined;
  /** Subscribe to stdout chunks (only when `stdout: 'pipe'`). */
  onStdout(listener: (chunk: Buffer) => void): void;
  /** SIGTERM the whole process group, SIGKILL it after `graceMs`; resolves once it exited. */
  stop(graceMs?: number): Promise<ProcessExit>;
}

/** Options for {@link spawnManaged}. */
export interface SpawnManagedOptions {
  /** Append stdout to this file (also delivered to `onStdout` listeners). */
  stdoutPath?: string;
  /** Append stderr to this file. */
  stderrPath?: string;
  /** Name used in error messages. */
  label?: string;
  /** Environment of the child (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

// Process groups still alive, killed synchronously if this Node process exits without tearing
// down (a test timeout or an uncaught error must not leave qemu or dnsmasq behind).
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
    runExitCleanups();
  });
}

const exitCleanups = new Set<() => void>();

/**
 * Register a synchronous cleanup that runs if the process exits before it is unregistered
 * (used to delete namespaces when a test run is cut short). Returns the unregister function.
 */
export function registerExitCleanup(fn: () => void): () => void {
  installExitHook();
  exitCleanups.add(fn);
  return () => exitCleanups.delete(fn);
}

function runExitCleanups(): void {
  for (const fn of exitCleanups) {
    try {
      fn();
    } catch {
      // Best effort at exit: nothing left to report to.
    }
  }
  exitCleanups.clear();
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/**
 * Spawn `cmd` detached in a new process group so that `stop()` reaches every child it forks
 * (`ip netns exec` execs in place, so the group leader is the real program).
 */
export function spawnManaged(cmd: string, args: readonly string[], options: SpawnManagedOptions = {}): ManagedProcess {
  installExitHook();
  const child = spawn(cmd, [...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...(options.env ? { env: options.env } : {}) });
  const label = options.label ?? cmd;
  // Without a listener a spawn failure (ENOENT) would be an uncaught 'error' event.
  child.on('error', () => undefined);
  if (child.pid === undefined) {
    throw new ApplianceError('ERR_LAB_SPAWN', `could not start ${label}: ${cmd} was not found or not executable`, { cmd });
  }
  const pid = child.pid;
  liveGroups.add(pid);
  const listeners: Array<(chunk: Buffer) => void> = [];
  let stdoutFile: WriteStream | undefined;
  let stderrFile: WriteStream | undefined;
  if (options.stdoutPath) stdoutFile = createWriteStream(options.stdoutPath, { flags: 'a' });
  if (options.stderrPath) stderrFile = createWriteStream(options.stderrPath, { flags: 'a' });
  child.stdout.on('data', (chunk: Buffer) => {
    stdoutFile?.write(chunk);
    for (const l of listeners) l(chunk);
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderrFile?.write(chunk);
  });
  let status: ProcessExit | undefined;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.on('error', () => {
      // 'close' still follows an 'error' for a spawned child; nothing else to do here.
    });
    child.on('exit', (code, signal) => {
      status = { code, signal };
      liveGroups.delete(pid);
      // Children of the leader may outlive it and hold the pipes open; the group is ours.
      killGroup(pid, 'SIGKILL');
    });
    child.on('close', () => {
      const closing: Promise<void>[] = [];
      for (const f of [stdoutFile, stderrFile]) {
        if (f) closing.push(new Promise((r) => f.end(() => r())));
      }
      void Promise.all(closing).then(() => resolve(status ?? { code: null, signal: null }));
    });
  });
  return {
    pid,
    exited,
    exitStatus: () => status,
    onStdout: (listener) => {
      listeners.push(listener);
    },
    stop: async (graceMs = 3000) => {
      if (status) return exited;
      killGroup(pid, 'SIGTERM');
      const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

/** Synchronous command for exit-time cleanup; errors are ignored. */
export function runCommandSyncQuiet(cmd: string, args: readonly string[]): void {
  try {
    execFileSync(cmd, [...args], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // Best effort: the caller is already tearing down.
  }
}
