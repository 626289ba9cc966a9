/**
 * The appliance as a user runs it (`node bin/appliance ...`, the dist/ build) in a child
 * process: started on ephemeral ports, its JSON log lines collected, stopped by the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'appliance');

/** A running appliance process. */
export interface ApplianceProcess {
  child: ChildProcess;
  ports: Record<string, number>;
  url: string;
  /** Every stdout line so far (JSON). */
  lines: string[];
  /** Resolves with the first log entry (after `from`) whose msg matches. */
  waitFor(msg: string | RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM, resolving with the exit code. */
  stop(): Promise<number | null>;
}

/** A private home: db, templates (copies of the shipped ones), tftpboot and assets in a temp dir. */
export function makeHome(): { dir: string; db: string; templates: string; tftpRoot: string; assets: string } {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-home-'));
  const templates = join(dir, 'templates');
  cpSync(join(ROOT, 'templates'), templates, { recursive: true });
  const tftpRoot = join(dir, 'tftpboot');
  const assets = join(dir, 'assets');
  mkdirSync(assets);
  mkdirSync(tftpRoot);
  return { dir, db: join(dir, 'db.json'), templates, tftpRoot, assets };
}

/** Start `bin/appliance args` and resolve once it logs "netboot appliance ready". */
export function startApplianceProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ApplianceProcess> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: Array<{ match: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }> = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    for (const w of [...waiters]) {
      if (w.match(entry)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(entry);
      }
    }
  });
  const waitFor = (msg: string | RegExp, timeoutMs = 20_000) =>
    new Promise<Record<string, unknown>>((resolveEntry, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line ${String(msg)} in ${timeoutMs} ms: ${lines.join('\n')} ${stderr}`)), timeoutMs);
      waiters.push({
        match: (e) => (typeof msg === 'string' ? e.msg === msg : typeof e.msg === 'string' && msg.test(e.msg)),
        resolve: (e) => {
          clearTimeout(timer);
          resolveEntry(e);
        },
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`appliance exited ${code} before ${String(msg)}: ${stderr} ${lines.join('\n')}`));
      });
    });
  // A start that never gets ready must not leave the process behind (it would outlive the test run).
  const ready = waitFor('netboot appliance ready').catch((err: unknown) => {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw err;
  });
  return ready.then((ready) => {
    const ports = ready.ports as Record<string, number>;
    return {
      child,
      ports,
      url: `http://127.0.0.1:${ports.http}`,
      lines,
      waitFor,
      stop() {
        if (child.exitCode === null) child.kill('SIGTERM');
        return exited;
      },
    };
  });
}

/** The flags for an unprivileged appliance on loopback with everything in `home`. */
export function loopbackArgs(home: ReturnType<typeof makeHome>): string[] {
  return [
    '--dhcp-mode',
    'off',
    '--tftp-port',
    '0',
    '--http-port',
    '0',
    '--address',
    '127.0.0.1',
    '--db',
    home.db,
    '--templates',
    home.templates,
    '--tftp-root',
    home.tftpRoot,
    '--assets',
    home.assets,
  ];
}
