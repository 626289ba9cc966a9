/**
 * The processes of a bench part and the namespaces they run in: started through `ip netns exec`
 * (which execs, so the child's pid is the server's and /proc/PID reads the server), reported when
 * one dies early, and all removed at the end, also when a signal ends the bench through
 * process.exit (scripts/bench.ts), which skips `finally`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

/** What {@link createBenchProcesses} returns. */
export interface BenchProcesses {
  /** Start `cmd` in namespace `ns`; an exit before close() is reported through `progress`. */
  spawnIn: (ns: string, cmd: string, args: string[]) => ChildProcess;
  /** Stop every process (SIGTERM, then SIGKILL), kill whatever else lives in the namespaces, delete them and `dir`. */
  close: () => Promise<void>;
}

/** Own `namespaces` (created by the caller, now or later) and the scratch directory `dir`. */
export function createBenchProcesses(namespaces: readonly string[], dir: string, progress: (line: string) => void): BenchProcesses {
  const children: ChildProcess[] = [];
  let stopping = false;
  const removeAll = (): void => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    for (const ns of namespaces) {
      try {
        // Clients a failed run left behind live in the namespace too.
        for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
      } catch {
        // not created yet, or gone
      }
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // not created yet
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', removeAll);
  return {
    spawnIn(ns, cmd, args) {
      const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr?.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
      child.once('exit', (code, signal) => {
        if (!stopping) progress(`bench: ${cmd} in ${ns} exited (${code ?? signal}): ${err.trim()}`);
      });
      children.push(child);
      return child;
    },
    async close() {
      process.off('exit', removeAll);
      stopping = true;
      for (const child of children) child.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 300));
      removeAll();
    },
  };
}
