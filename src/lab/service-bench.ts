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
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { APPLIANCE_BIN, APPLIANCE_NODE_FLAGS, FLOOR_SERVER } from './appliance.js';
import { createBenchProcesses } from './bench-processes.js';
import { cpuSecondsOfTree, figure, median, peakRssMiB, resetPeakRss, type BenchFigure, type BenchTarget } from './bench-report.js';

const run = promisify(execFile);

/** Options of runServiceBench. */
export interface ServiceBenchOptions {
  /** Interleaved runs per figure (default 3). */
  runs?: number;
  /** Progress lines. */
  progress?: (line: string) => void;
  /** Only the cases whose name matches. */
  match?: RegExp;
}

const ADDR = {
  ours: '127.0.0.10',
  dnsmasq: '127.0.0.11',
  tftpdHpa: '127.0.0.12',
  atftpd: '127.0.0.13',
  nginx: '127.0.0.14',
  floor: '127.0.0.15',
  oneThread: '127.0.0.16',
} as const;

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

/** Run the service bench (root: it creates a network namespace). */
export async function runServiceBench(options: ServiceBenchOptions = {}): Promise<BenchFigure[]> {
  const runs = options.runs ?? 3;
  const progress = options.progress ?? (() => undefined);
  const ns = `nbbench-${randomBytes(3).toString('hex')}`;
  const dir = mkdtempSync(join(tmpdir(), 'netboot-bench-'));
  // Servers that drop privileges (nginx workers, in.tftpd) must be able to read the files.
  chmodSync(dir, 0o755);
  const processes = createBenchProcesses([ns], dir, progress);
  const inNs = (cmd: string, args: string[]): ChildProcess => processes.spawnIn(ns, cmd, args);
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

    const applianceArgs = (address: string, state: string, extra: string[] = []): string[] => [
      ...APPLIANCE_NODE_FLAGS,
      APPLIANCE_BIN,
      '--dhcp-mode',
      'off',
      '--address',
      address,
      '--tftp-port',
      '69',
      '--http-port',
      '8080',
      '--tftp-root',
      root,
      '--assets',
      root,
      '--db',
      join(dir, state, 'db.json'),
      '--log-level',
      'warn',
      // Every bench client comes from one address (curl's TFTP socket binds the wildcard address,
      // so the route picks 127.0.0.1 for all of them); a lab's machines each have their own. The
      // per-client caps are set above the largest storm (200) so they neither refuse nor reap any
      // transfer of the bench: a refused transfer fails its run (curl exits non-zero) instead of
      // slowing it. The total cap (--tftp-max-transfers, 1000) is the default.
      '--tftp-max-transfers-per-client',
      '1000',
      '--http-max-connections-per-client',
      '1000',
      ...extra,
    ];
    const appliance = inNs(process.execPath, applianceArgs(ADDR.ours, 'state'));
    // The same appliance sending every TFTP transfer from its main thread (--tftp-threads 1) and
    // HTTP assets by copying them through the process (NETBOOT_SENDFILE=0): the rows beside the
    // storm and the HTTP cases show what the transfer threads (src/tftp/transfer-threads.ts) and
    // sendfile (src/http/sendfile.ts) change. env execs node, so the pid is the appliance's.
    mkdirSync(join(dir, 'state-one-thread'));
    const oneThread = inNs('env', ['NETBOOT_SENDFILE=0', process.execPath, ...applianceArgs(ADDR.oneThread, 'state-one-thread', ['--tftp-threads', '1'])]);
    const dnsmasq = inNs('dnsmasq', [
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
    const atftpd = inNs(ATFTPD, [
      '--daemon',
      '--no-fork',
      '--bind-address',
      ADDR.atftpd,
      '--port',
      '69',
      '--user',
      'root.root',
      '--logfile',
      '/dev/null',
      root,
    ]);
    const nginx = inNs('nginx', ['-c', join(dir, 'nginx.conf'), '-g', 'daemon off;']);
    // The least a Node process spends on the same requests (src/lab/floor-server.ts: lock-step
    // TFTP as src/lab/tftp-floor.ts serves it, HTTP through the appliance's streamFileRange): how much of the appliance's
    // gap to dnsmasq and nginx is Node's own cost.
    const floor = inNs(process.execPath, [FLOOR_SERVER, ADDR.floor, root]);
    await waitUntilServing(ns, progress);

    // tftpd-hpa's CPU is not measurable from outside: it forks a child per transfer and ignores
    // SIGCHLD, so the kernel discards the children's times instead of adding them to its own.
    const anchorPid: Record<string, number | undefined> = { dnsmasq: dnsmasq.pid, atftpd: atftpd.pid, 'nginx-light': nginx.pid };
    // Wall seconds of the script, and CPU seconds the server spent meanwhile.
    const time = async (script: string, server?: number): Promise<{ s: number; cpu: number }> => {
      const cpu0 = cpuSecondsOfTree(server) ?? Number.NaN;
      const started = process.hrtime.bigint();
      await run('ip', ['netns', 'exec', ns, 'sh', '-c', script], { maxBuffer: 1 << 20 });
      const s = Number(process.hrtime.bigint() - started) / 1e9;
      return { s, cpu: (cpuSecondsOfTree(server) ?? Number.NaN) - cpu0 };
    };
    const curlTftp = (addr: string, file: string, blksize: number) => `curl -sf --max-time 120 --tftp-blksize ${blksize} -o /dev/null tftp://${addr}/${file}`;
    const storm = (addr: string, n: number) =>
      `f=$(mktemp); for i in $(seq ${n}); do (${curlTftp(addr, 'boot170', 1468)} || echo x >> $f) & done; wait; test ! -s $f`;
    const http = (url: string, n: number) =>
      `f=$(mktemp); for i in $(seq ${n}); do (curl -sf --max-time 300 -o /dev/null ${url} || echo x >> $f) & done; wait; test ! -s $f`;
    const atftp = (addr: string) => `atftp --option "blksize 1468" --option "windowsize 8" -g -r big32 -l /dev/null ${addr}`;

    const cases: Array<{
      section: 'tftp' | 'http';
      what: string;
      anchor: string;
      ours: string;
      theirs: string;
      target?: BenchTarget;
      /** The process measured as "ours" when it is not the appliance (the Node floor). */
      oursPid?: number | undefined;
    }> = [];
    const atMost = (max: number): BenchTarget => ({ on: 'ratio', max, text: `<= ${max.toFixed(1)}` });
    for (const [anchor, addr] of [
      ['dnsmasq', ADDR.dnsmasq],
      ['tftpd-hpa', ADDR.tftpdHpa],
    ] as const) {
      for (const blksize of [1468, 512]) {
        cases.push({
          section: 'tftp',
          what: `TFTP 32 MiB lock-step, blksize ${blksize} (curl)`,
          anchor,
          ours: curlTftp(ADDR.ours, 'big32', blksize),
          theirs: curlTftp(addr, 'big32', blksize),
          target: atMost(1.2),
        });
      }
      if (anchor === 'dnsmasq') {
        for (const blksize of [1468, 512]) {
          cases.push({
            section: 'tftp',
            what: `TFTP 32 MiB lock-step, blksize ${blksize} (curl): bare Node dgram loop, the floor`,
            anchor,
            ours: curlTftp(ADDR.floor, 'big32', blksize),
            theirs: curlTftp(addr, 'big32', blksize),
            oursPid: floor.pid,
          });
        }
      }
      cases.push({ section: 'tftp', what: 'TFTP storm 50 x 170 KB (curl)', anchor, ours: storm(ADDR.ours, 50), theirs: storm(addr, 50) });
      cases.push({
        section: 'tftp',
        what: 'TFTP storm 200 x 170 KB (curl)',
        anchor,
        ours: storm(ADDR.ours, 200),
        theirs: storm(addr, 200),
        target: atMost(anchor === 'dnsmasq' ? 1.3 : 1.0),
      });
      if (anchor === 'tftpd-hpa') {
        // The same storm through the bare Node dgram loop: one thread among the storm's curl
        // processes, as the appliance is, against tftpd-hpa's process per transfer.
        cases.push({
          section: 'tftp',
          what: 'TFTP storm 200 x 170 KB (curl): bare Node dgram loop, the floor',
          anchor,
          ours: storm(ADDR.floor, 200),
          theirs: storm(addr, 200),
          oursPid: floor.pid,
        });
        cases.push({
          section: 'tftp',
          what: 'TFTP storm 200 x 170 KB (curl): the appliance with --tftp-threads 1',
          anchor,
          ours: storm(ADDR.oneThread, 200),
          theirs: storm(addr, 200),
          oursPid: oneThread.pid,
        });
      }
    }
    cases.push({
      section: 'tftp',
      what: 'TFTP 32 MiB windowsize 8, blksize 1468 (atftp)',
      anchor: 'atftpd',
      ours: atftp(ADDR.ours),
      theirs: atftp(ADDR.atftpd),
    });
    for (const n of [1, 10, 50]) {
      cases.push({
        section: 'http',
        ...(n > 1 ? { target: atMost(1.0) } : {}),
        what: `HTTP ${n} x 64 MiB initrd (curl)`,
        anchor: 'nginx-light',
        ours: http(`http://${ADDR.ours}:8080/assets/initrd64`, n),
        theirs: http(`http://${ADDR.nginx}:8080/assets/initrd64`, n),
      });
      if (n > 1) {
        cases.push({
          section: 'http',
          what: `HTTP ${n} x 64 MiB initrd (curl): the appliance copying, NETBOOT_SENDFILE=0`,
          anchor: 'nginx-light',
          ours: http(`http://${ADDR.oneThread}:8080/assets/initrd64`, n),
          theirs: http(`http://${ADDR.nginx}:8080/assets/initrd64`, n),
          oursPid: oneThread.pid,
        });
        cases.push({
          section: 'http',
          what: `HTTP ${n} x 64 MiB initrd (curl): bare Node http + streamFileRange, the floor`,
          anchor: 'nginx-light',
          ours: http(`http://${ADDR.floor}:8080/assets/initrd64`, n),
          theirs: http(`http://${ADDR.nginx}:8080/assets/initrd64`, n),
          oursPid: floor.pid,
        });
      }
    }

    const figures: BenchFigure[] = [];
    // Peak RSS per kind of load: reset before each case, read after it.
    const peaks = { storm200: 0, tftp: 0, http: 0 };
    for (const c of cases) {
      if (options.match && !options.match.test(c.what)) continue;
      const ours: Array<{ s: number; cpu: number }> = [];
      const theirs: Array<{ s: number; cpu: number }> = [];
      resetPeakRss(appliance.pid);
      // Warm both (page cache, the appliance's boot-file cache), then interleave.
      await time(c.ours);
      await time(c.theirs);
      for (let i = 0; i < runs; i++) {
        ours.push(await time(c.ours, c.oursPid ?? appliance.pid));
        theirs.push(await time(c.theirs, anchorPid[c.anchor]));
      }
      const rss = peakRssMiB(appliance.pid) ?? 0;
      if (c.section === 'http') peaks.http = Math.max(peaks.http, rss);
      else peaks.tftp = Math.max(peaks.tftp, rss);
      if (c.what.startsWith('TFTP storm 200')) peaks.storm200 = Math.max(peaks.storm200, rss);
      const wall = (rs: Array<{ s: number }>): number => median(rs.map((r) => r.s));
      const cpu = (rs: Array<{ cpu: number }>): number => median(rs.map((r) => r.cpu));
      const row = figure({
        section: c.section,
        what: c.what,
        anchor: c.anchor,
        unit: 's',
        ours: wall(ours),
        theirs: wall(theirs),
        ...(c.target ? { target: c.target } : {}),
      });
      // CPU the servers spent on the same work: the figure a busy shared machine disturbs least.
      const cpuRow = figure({ section: c.section, what: `${c.what}: server CPU`, anchor: c.anchor, unit: 's', ours: cpu(ours), theirs: cpu(theirs) });
      progress(
        `${row.what} vs ${row.anchor}: ${row.ours.toFixed(3)} s vs ${row.theirs!.toFixed(3)} s (ratio ${row.ratio?.toFixed(2)}, CPU ${cpuRow.ours.toFixed(2)} s vs ${cpuRow.theirs!.toFixed(2)} s, load ${row.load?.toFixed(1)}, runs ${ours.map((v) => v.s.toFixed(2)).join('/')} vs ${theirs.map((v) => v.s.toFixed(2)).join('/')})`,
      );
      figures.push(row, cpuRow);
    }
    if (peaks.storm200 > 0) {
      figures.push(
        figure({
          section: 'rss',
          what: 'appliance peak RSS through the 200-client TFTP storms',
          unit: 'MiB',
          ours: peaks.storm200,
          target: { on: 'ours', max: 150, strict: true, text: '< 150 MiB' },
        }),
      );
    }
    if (peaks.tftp > 0) figures.push(figure({ section: 'rss', what: 'appliance peak RSS through all TFTP cases', unit: 'MiB', ours: peaks.tftp }));
    if (peaks.http > 0)
      figures.push(figure({ section: 'rss', what: 'appliance peak RSS through the HTTP cases (50 x 64 MiB)', unit: 'MiB', ours: peaks.http }));
    return figures;
  } finally {
    await processes.close();
  }
}

/** Wait (bounded) until every server answers a small request. */
async function waitUntilServing(ns: string, progress: (line: string) => void): Promise<void> {
  const checks = [
    ...[ADDR.ours, ADDR.dnsmasq, ADDR.tftpdHpa, ADDR.atftpd, ADDR.floor, ADDR.oneThread].map((a) => `curl -sf --max-time 2 -o /dev/null tftp://${a}/boot170`),
    ...[ADDR.ours, ADDR.nginx, ADDR.floor].map((a) => `curl -sf --max-time 2 -o /dev/null http://${a}:8080/assets/boot170`),
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
