/**
 * DHCP bench section: DORA (server mode) and ProxyDHCP offers at 100, 500 and 2,000 exchanges
 * per second, the appliance next to dnsmasq, driven by Kea's perfdhcp (package kea-admin; nobody
 * here wrote it). perfdhcp acts as a relay agent: it sends from its own address, port 67, with
 * giaddr set, and the servers answer the relay, so each server gets a relayed /16 and no
 * broadcast is involved.
 *
 * ```
 * netns nbdc-ID (perfdhcp)              netns nbds-ID-K (one server each)
 *   cK 10.250.K.2/30, 10.20K.0.1/16 ─── veth ─── s 10.250.K.1/30, route 10.20K.0.0/16 via .2
 * ```
 * K = 0 appliance server mode (--lease-sync fdatasync, the default), 1 dnsmasq server mode
 * (--no-ping, lease file), 2 appliance proxy mode, 3 dnsmasq proxy mode, 4 appliance server mode
 * with --lease-sync none (dnsmasq's own durability), 5 the bare Node floor
 * (src/lab/floor-server.ts: a fixed OFFER per PXE DISCOVER; for DORA an OFFER, and an ACK sent
 * once a journal line for it is durable). Every server logs at its default level
 * to a file. Runs are interleaved (ours, anchor, ours, anchor ...); p50/p99 are computed from
 * perfdhcp's per-exchange timestamps (`-x t`): DORA latency is REQUEST to ACK, ProxyDHCP latency
 * DISCOVER to OFFER. Completion is ACKs (or OFFERs) received over DISCOVERs sent. Server CPU per
 * exchange is the server process's user + system time during a run over the DISCOVERs sent.
 */
import { execFile, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { APPLIANCE_BIN, APPLIANCE_NODE_FLAGS, FLOOR_SERVER } from '../appliance.js';
import { createBenchProcesses } from '../bench-processes.js';
import { cpuSecondsOfTree, figure, median, peakRssMiB, percentile, type BenchContext, type BenchFigure, type BenchSection } from '../bench-report.js';

const run = promisify(execFile);

/** Seconds each perfdhcp run sends for. */
const PERIOD_S = 6;
/** Distinct clients (MACs) perfdhcp simulates; at 2,000/s some come back, as real machines do. */
const CLIENTS = 10_000;
const RATES = [100, 500, 2000] as const;

/** What one perfdhcp run measured. */
export interface PerfdhcpResult {
  /** Exchanges per second reached. */
  rate: number;
  /** DISCOVERs sent, final replies (ACK, or OFFER with -i) received. */
  sent: number;
  completed: number;
  /** Latency of the last step (REQUEST-ACK, or DISCOVER-OFFER with -i), ms. */
  latenciesMs: number[];
  /** CPU seconds (user + system) the server spent during the run, when known. */
  cpuSeconds?: number;
}

/** Parse perfdhcp's report (with `-x t`); `initialOnly` for `-i` (DISCOVER-OFFER only). */
export function parsePerfdhcp(output: string, initialOnly: boolean): PerfdhcpResult {
  const rate = Number(/^Rate: ([\d.]+)/m.exec(output)?.[1] ?? Number.NaN);
  const stats = (name: string): { sent: number; received: number } => {
    const block = output.split(`***Statistics for: ${name}***`)[1] ?? '';
    return { sent: Number(/sent packets: (\d+)/.exec(block)?.[1] ?? 0), received: Number(/received packets: (\d+)/.exec(block)?.[1] ?? 0) };
  };
  const last = initialOnly ? 'DISCOVER-OFFER' : 'REQUEST-ACK';
  const stamps = (output.split(`***Timestamps for packets: ${last}***`)[1] ?? '').split('***')[0] ?? '';
  const latenciesMs: number[] = [];
  for (const m of stamps.matchAll(/sent \/ received: ([\d.]+) \/ ([\d.]+)/g)) latenciesMs.push((Number(m[2]) - Number(m[1])) * 1000);
  return { rate, sent: stats('DISCOVER-OFFER').sent, completed: stats(last).received, latenciesMs };
}

/** Wait (bounded, 5 s) until `dev` in `ns` is operationally up, i.e. has carrier. */
async function waitForCarrier(ns: string, dev: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const { stdout } = await run('ip', ['-n', ns, '-o', 'link', 'show', dev]);
    if (/[<,]LOWER_UP[,>]/.test(stdout) && / state UP /.test(stdout)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`dhcp bench: ${dev} in ${ns} has no carrier after 5 s`);
}

/** BIOS PXE client options (what a SeaBIOS iPXE-less PXE ROM sends): 60, 93, 94. */
const PXE_OPTIONS = ['-o', `60,${Buffer.from('PXEClient:Arch:00000:UNDI:002001').toString('hex')}`, '-o', '93,0000', '-o', '94,010201'];

interface Server {
  name: string;
  /** Index of its namespace and addresses. */
  k: number;
  /** ProxyDHCP: perfdhcp sends PXE DISCOVERs and stops at the OFFER (-i). */
  proxy: boolean;
  launch: () => ChildProcess;
  /** Started on first use, so `--match` starts only the servers it measures. */
  child?: ChildProcess;
}

/** The DHCP section (`--only dhcp`). */
export const benchSection: BenchSection = {
  name: 'dhcp',
  title: 'DHCP: DORA and ProxyDHCP offers, appliance vs dnsmasq, driven by perfdhcp',
  prerequisites: () =>
    [
      ['perfdhcp', 'kea-admin'],
      ['dnsmasq', 'dnsmasq-base'],
    ].flatMap(([bin, pkg]) => (spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0 ? [] : [`${bin} (apt-get install ${pkg}, or run scripts/install)`])),
  run: runDhcpBench,
};

/** Cumulative bucket counts of one histogram in a /metrics text, by upper bound (seconds). */
export function parseHistogramBuckets(text: string, name: string, labels: string): Map<number, number> {
  const buckets = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{le="([^"]+)",${labels}\\} (\\d+)$`, 'gm');
  for (const m of text.matchAll(re)) buckets.set(m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), Number(m[2]));
  return buckets;
}

/**
 * The q-th percentile (0-100) of the observations between two readings of a cumulative
 * histogram, interpolated inside its bucket as Prometheus's histogram_quantile does; NaN when
 * nothing was observed.
 */
export function histogramPercentile(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => (after.get(b) ?? 0) - (before.get(b) ?? 0));
  const total = counts.at(-1) ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = (q / 100) * total;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i]! < rank) continue;
    const lower = i === 0 ? 0 : bounds[i - 1]!;
    const upper = bounds[i]!;
    if (!Number.isFinite(upper)) return lower;
    const below = i === 0 ? 0 : counts[i - 1]!;
    const inBucket = counts[i]! - below;
    return inBucket === 0 ? upper : lower + ((upper - lower) * (rank - below)) / inBucket;
  }
  return bounds.at(-2) ?? Number.NaN;
}

const JOURNAL_HISTOGRAM = 'netboot_dhcp_lease_journal_write_seconds';

async function runDhcpBench(context: BenchContext): Promise<BenchFigure[]> {
  const { progress } = context;
  const id = randomBytes(3).toString('hex');
  const client = `nbdc-${id}`;
  const serverNs = (k: number): string => `nbds-${id}-${k}`;
  const spaces = [client, ...[0, 1, 2, 3, 4, 5].map(serverNs)];
  const dir = mkdtempSync(join(tmpdir(), 'netboot-dhcp-bench-'));
  const processes = createBenchProcesses(spaces, dir, progress);
  progress(`dhcp bench: namespaces ${spaces.join(' ')}`);
  const start = (k: number, cmd: string, args: string[]): ChildProcess => processes.spawnIn(serverNs(k), cmd, args);
  try {
    await run('ip', ['netns', 'add', client]);
    await run('ip', ['-n', client, 'link', 'set', 'lo', 'up']);
    for (let k = 0; k <= 5; k++) {
      const ns = serverNs(k);
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run('ip', ['link', 'add', `c${k}`, 'netns', client, 'type', 'veth', 'peer', 'name', 's', 'netns', ns]);
      await run('ip', ['-n', client, 'addr', 'add', `10.250.${k}.2/30`, 'dev', `c${k}`]);
      await run('ip', ['-n', client, 'addr', 'add', `10.20${k}.0.1/16`, 'dev', `c${k}`]);
      await run('ip', ['-n', ns, 'addr', 'add', `10.250.${k}.1/30`, 'dev', 's']);
      await run('ip', ['-n', client, 'link', 'set', `c${k}`, 'up']);
      await run('ip', ['-n', ns, 'link', 'set', 's', 'up']);
      await run('ip', ['-n', ns, 'route', 'add', `10.20${k}.0.0/16`, 'via', `10.250.${k}.2`]);
      mkdirSync(join(dir, String(k)));
    }
    // libuv lists only interfaces that are up and running, and a veth reports carrier a moment
    // after `link set up` (linkwatch): a server started before that finds no address of its own.
    for (let k = 0; k <= 5; k++) await waitForCarrier(serverNs(k), 's');
    const root = join(dir, 'root');
    mkdirSync(root);
    const appliance = (k: number, mode: 'server' | 'proxy', extra: string[] = []): ChildProcess =>
      start(k, process.execPath, [
        ...APPLIANCE_NODE_FLAGS,
        APPLIANCE_BIN,
        '--dhcp-mode',
        mode,
        '--force',
        '--address',
        `10.250.${k}.1`,
        ...(mode === 'server'
          ? [
              '--dhcp-range',
              `10.250.${k}.2-10.250.${k}.2`,
              '--dhcp-relay-network',
              `10.20${k}.0.0/16=10.20${k}.0.10-10.20${k}.255.250`,
              // A lab's machines boot at a human pace; perfdhcp's 2,000/s is not a flood to refuse here.
              '--dhcp-new-leases-per-minute',
              '0',
              '--dhcp-probe-interval',
              '0',
              '--lease-file',
              join(dir, String(k), 'leases.json'),
            ]
          : []),
        ...extra,
        '--db',
        join(dir, String(k), 'db.json'),
        '--tftp-root',
        root,
        '--assets',
        root,
        '--log-file',
        join(dir, String(k), 'appliance.log'),
      ]);
    const dnsmasq = (k: number, range: string[]): ChildProcess =>
      start(k, 'dnsmasq', [
        '-k',
        '--port=0',
        '--conf-file=/dev/null',
        '--user=root',
        `--pid-file=${join(dir, String(k), 'dnsmasq.pid')}`,
        `--log-facility=${join(dir, String(k), 'dnsmasq.log')}`,
        ...range,
      ]);
    const servers: Server[] = [
      { name: 'appliance', k: 0, proxy: false, launch: () => appliance(0, 'server') },
      {
        name: 'dnsmasq',
        k: 1,
        proxy: false,
        launch: () =>
          dnsmasq(1, [
            '--no-ping',
            '--dhcp-authoritative',
            '--dhcp-range=10.201.0.10,10.201.255.250,255.255.0.0,1h',
            `--dhcp-leasefile=${join(dir, '1', 'dnsmasq.leases')}`,
            '--dhcp-lease-max=1000000',
          ]),
      },
      { name: 'appliance proxy', k: 2, proxy: true, launch: () => appliance(2, 'proxy') },
      {
        name: 'dnsmasq proxy',
        k: 3,
        proxy: true,
        launch: () => dnsmasq(3, ['--dhcp-range=10.203.0.0,proxy,255.255.0.0', '--pxe-service=x86PC,"Network boot",undionly.kpxe']),
      },
      { name: 'appliance --lease-sync none', k: 4, proxy: false, launch: () => appliance(4, 'server', ['--lease-sync', 'none']) },
      // The least Node can do per offer (src/lab/floor-server.ts): the runtime's share of a gap.
      // With a journal it also answers DORA, each ACK after a durable line: the least a durable ACK costs here.
      {
        name: 'bare Node floor',
        k: 5,
        proxy: true,
        launch: () => start(5, process.execPath, [FLOOR_SERVER, '10.250.5.1', root, '--dhcp', join(dir, '5', 'floor.journal')]),
      },
    ];
    const perfdhcp = async (s: Server, rate: number, periodS: number, proxy = s.proxy): Promise<PerfdhcpResult> => {
      const cpuBefore = cpuSecondsOfTree(s.child?.pid);
      const args = ['-4', '-l', `10.20${s.k}.0.1`, '-r', String(rate), '-p', String(periodS), '-R', String(CLIENTS), '-W', '500000', '-x', 't'];
      if (proxy) args.push('-i', ...PXE_OPTIONS);
      args.push(`10.250.${s.k}.1`);
      const stdout = await run('ip', ['netns', 'exec', client, 'perfdhcp', ...args], { maxBuffer: 64 << 20, timeout: (periodS + 30) * 1000 }).then(
        (r) => r.stdout,
        (err: { code?: unknown; stdout?: string; stderr?: string }) => {
          // Exit 3 means some exchanges did not complete: that is a figure, not a failure.
          if (err.code === 3 && err.stdout !== undefined) return err.stdout;
          throw new Error(`perfdhcp ${args.join(' ')} failed (${String(err.code)}): ${(err.stderr || err.stdout || '').slice(-500)}`);
        },
      );
      const result = parsePerfdhcp(stdout, proxy);
      const cpuAfter = cpuSecondsOfTree(s.child?.pid);
      return cpuBefore !== undefined && cpuAfter !== undefined ? { ...result, cpuSeconds: cpuAfter - cpuBefore } : result;
    };
    // Start a server on first use; ready when one exchange completes (bounded).
    const ensure = async (s: Server): Promise<void> => {
      if (s.child) return;
      s.child = s.launch();
      let ok = false;
      for (let i = 0; i < 60 && !ok; i++) {
        ok = (await perfdhcp(s, 10, 1)).completed > 0;
        if (!ok) await new Promise((resolve) => setTimeout(resolve, 500));
      }
      if (!ok) throw new Error(`dhcp bench: ${s.name} did not answer perfdhcp within 30 s`);
      progress(`dhcp bench: ${s.name} ready`);
    };
    const [ours, theirs, oursProxy, theirsProxy, oursNoSync, floor] = servers as [Server, Server, Server, Server, Server, Server];
    // The appliance's own lease journal appends (write + fdatasync) during a run, from its
    // /metrics (HTTP on the default port, on the server's address in its namespace).
    const journalBuckets = async (s: Server): Promise<Map<number, number>> => {
      const { stdout } = await run('ip', ['netns', 'exec', serverNs(s.k), 'curl', '-sf', '--max-time', '5', `http://10.250.${s.k}.1:8080/metrics`]);
      return parseHistogramBuckets(stdout, JOURNAL_HISTOGRAM, 'family="ipv4"');
    };
    const figures: BenchFigure[] = [];
    const cases: Array<{ kind: 'DORA' | 'ProxyDHCP'; rate: number; ours: Server; theirs: Server }> = [
      ...RATES.map((rate) => ({ kind: 'DORA' as const, rate, ours, theirs })),
      { kind: 'DORA', rate: 2000, ours: oursNoSync, theirs },
      ...RATES.map((rate) => ({ kind: 'ProxyDHCP' as const, rate, ours: oursProxy, theirs: theirsProxy })),
      // The floor at every rate: at low rates Node's own wake-up per datagram is most of a reply's time.
      ...RATES.map((rate) => ({ kind: 'ProxyDHCP' as const, rate, ours: floor, theirs: theirsProxy })),
      // Durable ACKs from the floor (write + fdatasync, grouped): what the disk leaves of the 5 ms target.
      { kind: 'DORA', rate: 2000, ours: floor, theirs },
    ];
    for (const c of cases) {
      const what = `${c.ours === floor ? 'bare Node floor: ' : ''}${c.kind} ${c.rate}/s${c.ours === oursNoSync ? ', --lease-sync none' : ''}`;
      if (context.match && !context.match.test(what)) continue;
      await ensure(c.ours);
      await ensure(c.theirs);
      // Warm both (JIT, lease tables) at the case's rate, then interleave.
      const proxy = c.kind === 'ProxyDHCP';
      await perfdhcp(c.ours, c.rate, 2, proxy);
      await perfdhcp(c.theirs, c.rate, 2, proxy);
      const mine: PerfdhcpResult[] = [];
      const anchor: PerfdhcpResult[] = [];
      // The appliance gets no traffic during the anchor's runs: the journal appends between these
      // two readings are those of its own runs.
      const journalBefore = c.kind === 'DORA' && c.ours !== floor ? await journalBuckets(c.ours) : undefined;
      for (let i = 0; i < context.runs; i++) {
        mine.push(await perfdhcp(c.ours, c.rate, PERIOD_S, proxy));
        anchor.push(await perfdhcp(c.theirs, c.rate, PERIOD_S, proxy));
      }
      const journalAfter = journalBefore ? await journalBuckets(c.ours) : undefined;
      const appends = journalBefore && journalAfter ? (journalAfter.get(Infinity) ?? 0) - (journalBefore.get(Infinity) ?? 0) : 0;
      if (journalBefore && !(appends > 0))
        throw new Error(`dhcp bench: ${c.ours.name} recorded no lease journal append in ${JOURNAL_HISTOGRAM} during ${what}`);
      const p = (rs: PerfdhcpResult[], q: number): number => median(rs.map((r) => percentile(r.latenciesMs, q)));
      const done = (rs: PerfdhcpResult[]): number => median(rs.map((r) => (r.sent === 0 ? 0 : (100 * r.completed) / r.sent)));
      const reached = (rs: PerfdhcpResult[]): number => median(rs.map((r) => r.rate));
      const step = c.kind === 'DORA' ? 'ACK' : 'OFFER';
      const note = `reached ${reached(mine).toFixed(0)}/s vs ${reached(anchor).toFixed(0)}/s`;
      const p99Target =
        c.ours === floor
          ? undefined
          : c.kind === 'ProxyDHCP'
            ? { on: 'ratio' as const, max: 1.0, text: '<= 1.0' }
            : c.rate === 500 && c.ours === ours
              ? { on: 'ratio' as const, max: 1.0, text: '<= 1.0' }
              : c.rate === 2000
                ? { on: 'ours' as const, max: 5, strict: true, text: '< 5 ms' }
                : undefined;
      // CPU per exchange says what the latencies cannot on a shared machine: how much of a core
      // each server needs per exchange, whoever else runs.
      const cpuUs = (rs: PerfdhcpResult[]): number =>
        median(rs.map((r) => (r.cpuSeconds === undefined || r.sent === 0 ? Number.NaN : (r.cpuSeconds * 1e6) / r.sent)));
      const rows = [
        figure({ section: 'dhcp', what: `${what}, ${step} p50`, anchor: c.theirs.name, unit: 'ms', ours: p(mine, 50), theirs: p(anchor, 50) }),
        figure({
          section: 'dhcp',
          what: `${what}, ${step} p99`,
          anchor: c.theirs.name,
          unit: 'ms',
          ours: p(mine, 99),
          theirs: p(anchor, 99),
          ...(p99Target ? { target: p99Target } : {}),
        }),
        figure({
          section: 'dhcp',
          what: `${what}, completed`,
          anchor: c.theirs.name,
          unit: '%',
          ours: done(mine),
          theirs: done(anchor),
          note,
          ...(c.kind === 'DORA' && c.rate === 2000 && c.ours !== floor ? { target: { on: 'ours' as const, min: 100, text: '100 %' } } : {}),
        }),
        figure({ section: 'dhcp', what: `${what}, server CPU per exchange`, anchor: c.theirs.name, unit: 'us', ours: cpuUs(mine), theirs: cpuUs(anchor) }),
        // An ACK waits for at least one journal append (with fdatasync, unless --lease-sync none):
        // this tail is the least its p99 can be on this disk and load.
        ...(journalBefore && journalAfter
          ? ([50, 99] as const).map((q) =>
              figure({
                section: 'dhcp',
                what: `${what}, lease journal append (write${c.ours === oursNoSync ? '' : ' + fdatasync'}) p${q}`,
                unit: 'ms',
                ours: histogramPercentile(journalBefore, journalAfter, q) * 1000,
                note: `${appends} appends, from the appliance's /metrics`,
              }),
            )
          : []),
      ];
      for (const r of rows) progress(`dhcp bench: ${r.what}: ${r.ours.toFixed(2)} ${r.unit} vs ${r.theirs?.toFixed(2) ?? '-'} ${r.unit}`);
      figures.push(...rows);
    }
    for (const s of [ours, oursProxy]) {
      const rss = peakRssMiB(s.child?.pid);
      if (rss !== undefined)
        figures.push(
          figure({ section: 'rss', what: `appliance peak RSS, DHCP ${s.proxy ? 'proxy' : 'server'} mode through the runs`, unit: 'MiB', ours: rss }),
        );
    }
    return figures;
  } finally {
    await processes.close();
  }
}
