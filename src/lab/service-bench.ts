/**
 * Service benchmark: the appliance's TFTP and HTTP side by side with the servers lab engineers
 * know (dnsmasq and tftpd-hpa for TFTP, atftpd for windowsize, nginx-light for HTTP), in a
 * network namespace the bench creates and removes. Every server listens on its own loopback
 * address inside the namespace; the clients are curl and atftp (nobody here wrote them), run in
 * the same namespace. Runs are interleaved (ours, anchor, ours, anchor ...) and the medians are
 * compared: ratio = ours / anchor (below 1 is faster than the anchor).
 *
 * The appliance runs as `node bin/appliance --dhcp-mode off` (the build in dist/), exactly as
 * a user starts it; its peak RSS (VmHWM) is read from /proc after the storms.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { APPLIANCE_BIN } from './appliance.js';

const run = promisify(execFile);

/** One compared figure. */
export interface ServiceBenchRow {
  what: string;
  anchor: string;
  /** Median seconds of the appliance and of the anchor. */
  ours: number;
  theirs: number;
  ratio: number;
}

/** Options of runServiceBench. */
export interface ServiceBenchOptions {
  /** Interleaved runs per figure (default 3). */
  runs?: number;
  /** Progress lines. */
  progress?: (line: string) => void;
}

/** Result: the rows and the appliance's peak RSS in MiB. */
export interface ServiceBenchResult {
  rows: ServiceBenchRow[];
  rssPeakMiB: number | undefined;
}

const ADDR = { ours: '127.0.0.10', dnsmasq: '127.0.0.11', tftpdHpa: '127.0.0.12', atftpd: '127.0.0.13', nginx: '127.0.0.14' } as const;

/**
 * atftpd conflicts with tftpd-hpa as a Debian package (both ship /usr/sbin/in.tftpd), so
 * scripts/install unpacks its binary here instead of installing it.
 */
export const ATFTPD = '/usr/local/lib/netboot-appliance/atftpd/usr/sbin/atftpd';

/** The commands the service bench needs and where they come from (scripts/install). */
export const SERVICE_BENCH_TOOLS: ReadonlyArray<[string, string]> = [
  ['dnsmasq', 'dnsmasq-base'],
  ['in.tftpd', 'tftpd-hpa'],
  [ATFTPD, 'atftpd, unpacked by scripts/install'],
  ['atftp', 'atftp'],
  ['nginx', 'nginx-light'],
  ['curl', 'curl'],
];

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Format the rows as the README's markdown table. */
export function formatServiceBench(result: ServiceBenchResult): string {
  const lines = ['| what | anchor | appliance s | anchor s | ratio |', '|---|---|---|---|---|'];
  for (const r of result.rows) lines.push(`| ${r.what} | ${r.anchor} | ${r.ours.toFixed(3)} | ${r.theirs.toFixed(3)} | ${r.ratio.toFixed(2)} |`);
  if (result.rssPeakMiB !== undefined) lines.push('', `appliance peak RSS through the storms: ${result.rssPeakMiB.toFixed(0)} MiB`);
  return lines.join('\n');
}

/** Run the service bench (root: it creates a network namespace). */
export async function runServiceBench(options: ServiceBenchOptions = {}): Promise<ServiceBenchResult> {
  const runs = options.runs ?? 3;
  const progress = options.progress ?? (() => undefined);
  const ns = `nbbench-${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'netboot-bench-'));
  // Servers that drop privileges (nginx workers, in.tftpd) must be able to read the files.
  chmodSync(dir, 0o755);
  const children: ChildProcess[] = [];
  const inNs = (cmd: string, args: string[]): ChildProcess => {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr?.on('data', (c: Buffer) => (err = (err + c.toString()).slice(-2000)));
    child.once('exit', (code, signal) => {
      if (!stopping) progress(`${cmd} exited (${code ?? signal}): ${err.trim()}`);
    });
    children.push(child);
    return child;
  };
  let stopping = false;
  // A signal ends the bench through process.exit (scripts/bench.ts), which skips `finally`.
  const onExit = (): void => {
    for (const child of children) child.kill('SIGKILL');
    try {
      for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
      execFileSync('ip', ['netns', 'del', ns]);
    } catch {
      // not created yet, or gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  try {
    await run('ip', ['netns', 'add', ns]);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // getaddrinfo's AI_ADDRCONFIG ignores loopback: without another IPv4 address in the namespace,
    // tftpd-hpa cannot resolve its own bind address (exit 66).
    await run('ip', ['-n', ns, 'link', 'add', 'bench0', 'type', 'veth', 'peer', 'name', 'bench1']);
    await run('ip', ['-n', ns, 'addr', 'add', '10.254.254.1/30', 'dev', 'bench0']);
    await run('ip', ['-n', ns, 'link', 'set', 'bench0', 'up']);
    await run('ip', ['-n', ns, 'link', 'set', 'bench1', 'up']);
    const root = join(dir, 'root');
    mkdirSync(root);
    writeFileSync(join(root, 'big32'), randomBytes(32 * 1024 * 1024));
    writeFileSync(join(root, 'boot170'), randomBytes(170 * 1024));
    writeFileSync(join(root, 'initrd64'), randomBytes(64 * 1024 * 1024));
    mkdirSync(join(dir, 'state'));
    writeFileSync(
      join(dir, 'nginx.conf'),
      `worker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${dir}/nginx.err;\nevents { worker_connections 1024; }\nhttp { access_log off; sendfile on; tcp_nopush on; client_body_temp_path ${dir}/nb; proxy_temp_path ${dir}/np; fastcgi_temp_path ${dir}/nf; uwsgi_temp_path ${dir}/nu; scgi_temp_path ${dir}/ns;\n  server { listen ${ADDR.nginx}:8080; root ${root}; location /assets/ { alias ${root}/; } } }\n`,
    );

    const appliance = inNs(process.execPath, [
      APPLIANCE_BIN,
      '--dhcp-mode',
      'off',
      '--address',
      ADDR.ours,
      '--tftp-port',
      '69',
      '--http-port',
      '8080',
      '--tftp-root',
      root,
      '--assets',
      root,
      '--db',
      join(dir, 'state', 'db.json'),
      '--log-level',
      'warn',
      // Every bench client comes from one loopback address; a lab's machines each have their own.
      '--tftp-max-transfers-per-client',
      '1000',
      '--http-max-connections-per-client',
      '1000',
    ]);
    inNs('dnsmasq', [
      '-k',
      '--port=0',
      '--conf-file=/dev/null',
      '--enable-tftp',
      `--tftp-root=${root}`,
      `--listen-address=${ADDR.dnsmasq}`,
      '--bind-interfaces',
      '--tftp-max=1000',
      `--pid-file=${dir}/dnsmasq.pid`,
      '--user=root',
    ]);
    inNs('in.tftpd', ['-4', '-L', '-a', `${ADDR.tftpdHpa}:69`, '-s', root]);
    inNs(ATFTPD, ['--daemon', '--no-fork', '--bind-address', ADDR.atftpd, '--port', '69', '--user', 'root.root', '--logfile', '/dev/null', root]);
    inNs('nginx', ['-c', join(dir, 'nginx.conf'), '-g', 'daemon off;']);
    await waitUntilServing(ns, progress);

    const time = async (script: string): Promise<number> => {
      const started = process.hrtime.bigint();
      await run('ip', ['netns', 'exec', ns, 'sh', '-c', script], { maxBuffer: 1 << 20 });
      return Number(process.hrtime.bigint() - started) / 1e9;
    };
    const curlTftp = (addr: string, file: string, blksize: number) => `curl -sf --max-time 120 --tftp-blksize ${blksize} -o /dev/null tftp://${addr}/${file}`;
    const storm = (addr: string, n: number) =>
      `f=$(mktemp); for i in $(seq ${n}); do (${curlTftp(addr, 'boot170', 1468)} || echo x >> $f) & done; wait; test ! -s $f`;
    const http = (url: string, n: number) =>
      `f=$(mktemp); for i in $(seq ${n}); do (curl -sf --max-time 300 -o /dev/null ${url} || echo x >> $f) & done; wait; test ! -s $f`;
    const atftp = (addr: string) => `atftp --option "blksize 1468" --option "windowsize 8" -g -r big32 -l /dev/null ${addr}`;

    const cases: Array<{ what: string; anchor: string; ours: string; theirs: string }> = [];
    for (const [anchor, addr] of [
      ['dnsmasq', ADDR.dnsmasq],
      ['tftpd-hpa', ADDR.tftpdHpa],
    ] as const) {
      cases.push({
        what: 'TFTP 32 MiB lock-step, blksize 1468 (curl)',
        anchor,
        ours: curlTftp(ADDR.ours, 'big32', 1468),
        theirs: curlTftp(addr, 'big32', 1468),
      });
      cases.push({ what: 'TFTP 32 MiB lock-step, blksize 512 (curl)', anchor, ours: curlTftp(ADDR.ours, 'big32', 512), theirs: curlTftp(addr, 'big32', 512) });
      cases.push({ what: 'TFTP storm 50 x 170 KB (curl)', anchor, ours: storm(ADDR.ours, 50), theirs: storm(addr, 50) });
      cases.push({ what: 'TFTP storm 200 x 170 KB (curl)', anchor, ours: storm(ADDR.ours, 200), theirs: storm(addr, 200) });
    }
    cases.push({ what: 'TFTP 32 MiB windowsize 8, blksize 1468 (atftp)', anchor: 'atftpd', ours: atftp(ADDR.ours), theirs: atftp(ADDR.atftpd) });
    for (const n of [1, 10, 50]) {
      cases.push({
        what: `HTTP ${n} x 64 MiB initrd (curl)`,
        anchor: 'nginx-light',
        ours: http(`http://${ADDR.ours}:8080/assets/initrd64`, n),
        theirs: http(`http://${ADDR.nginx}:8080/assets/initrd64`, n),
      });
    }

    const rows: ServiceBenchRow[] = [];
    for (const c of cases) {
      const ours: number[] = [];
      const theirs: number[] = [];
      // Warm both (page cache, the appliance's boot-file cache), then interleave.
      await time(c.ours);
      await time(c.theirs);
      for (let i = 0; i < runs; i++) {
        ours.push(await time(c.ours));
        theirs.push(await time(c.theirs));
      }
      const row = { what: c.what, anchor: c.anchor, ours: median(ours), theirs: median(theirs), ratio: median(ours) / median(theirs) };
      progress(`${row.what} vs ${row.anchor}: ${row.ours.toFixed(3)} s vs ${row.theirs.toFixed(3)} s (ratio ${row.ratio.toFixed(2)})`);
      rows.push(row);
    }
    return { rows, rssPeakMiB: peakRssMiB(appliance.pid) };
  } finally {
    process.off('exit', onExit);
    stopping = true;
    for (const child of children) child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    // Clients a failed run left behind live in the namespace too.
    const left = await run('ip', ['netns', 'pids', ns]).then(
      (r) => r.stdout.split('\n').filter(Boolean),
      () => [],
    );
    for (const pid of left) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

function peakRssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** Wait (bounded) until every server answers a small request. */
async function waitUntilServing(ns: string, progress: (line: string) => void): Promise<void> {
  const checks = [
    ...[ADDR.ours, ADDR.dnsmasq, ADDR.tftpdHpa, ADDR.atftpd].map((a) => `curl -sf --max-time 2 -o /dev/null tftp://${a}/boot170`),
    ...[ADDR.ours, ADDR.nginx].map((a) => `curl -sf --max-time 2 -o /dev/null http://${a}:8080/assets/boot170`),
  ];
  for (const check of checks) {
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      ok = await run('ip', ['netns', 'exec', ns, 'sh', '-c', check]).then(
        () => true,
        () => false,
      );
      if (!ok) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (!ok) throw new Error(`bench: a server did not answer: ${check}`);
    progress(`ready: ${check.split(' ').at(-1)}`);
  }
}
