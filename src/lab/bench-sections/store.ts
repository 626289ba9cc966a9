/**
 * State-store bench section (`--only store`): 4,096 machines, each with a facts report at the
 * per-machine bound (64 KiB, so all of them together sit at the 256 MiB total bound), half of
 * them declared in db.json (hostname, profile, an SSH key, labels) and half discovered, one
 * fact-selector group. Measured on `node bin/appliance` (the dist/ build) as a user starts it,
 * on loopback ports:
 *
 * - restart: process start to "netboot appliance ready" (db.json parsed and checked, the state
 *   store's 4,096 records loaded, a timeline at its 16 MiB bound replayed), next to the same start on an empty
 *   home (the anchor), and the RSS once ready;
 * - API latency, one client, keep-alive, p50 and p99: `GET /api/machines`, `GET
 *   /api/machines/:mac` (reads that machine's facts from disk), PUT and PATCH of a declared
 *   machine (db.json rewritten durably), the facts POST at the bound, and the console's machine
 *   list (`GET /api/console/machines`, every row with its facts summary and selection);
 * - the facts flood: 8 clients post 4,096 facts reports at the bound for existing and new MACs, and bodies
 *   over the bound; db.json must not change by a byte and the state store must stay within its
 *   total bound. Peak RSS over the API phase and the flood.
 *
 * The state store is seeded through its own module (openStateStore + putFacts, the code the
 * facts POST runs), so the figures are about loading and serving it, not about 4,096 HTTP posts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createSilentLogger } from '../../log.js';
import { createDefaultDb } from '../../store/defaults.js';
import type { Facts } from '../../store/schema.js';
import { DEFAULT_STATE_LIMITS, openStateStore, stateDirFor } from '../../store/state-store.js';
import { DEFAULT_TIMELINE_BYTES } from '../../store/timeline.js';
import { APPLIANCE_BIN, APPLIANCE_NODE_FLAGS, assertApplianceBuilt } from '../appliance.js';
import { figure, median, peakRssMiB, percentile, resetPeakRss, type BenchContext, type BenchFigure, type BenchSection } from '../bench-report.js';

/** Machines in the bench (the discovery cap and the total facts bound are sized for this many). */
export const STORE_BENCH_MACHINES = 4096;

/** The i-th bench MAC (52:54:00:xx:xx:xx, locally administered QEMU range). */
export function benchMac(i: number): string {
  return `52:54:00:${[(i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
}

/**
 * A facts report in the reference agent's shape (agent/README.md) padded with a realistic
 * inventory (PCI devices, packages) so that its serialized form plus newline (what the state
 * store stores and bounds) is exactly `bytes` long.
 */
export function factsAtBound(mac: string, bytes: number = DEFAULT_STATE_LIMITS.maxFactsBytes): Facts {
  const facts: Facts = {
    mac,
    hostname: `node-${mac.replace(/:/g, '')}`,
    source: 'netboot-bench',
    dmi: { vendor: 'QEMU', product: 'Standard PC (i440FX + PIIX, 1996)', serial: `SN-${mac.replace(/:/g, '')}` },
    cpu: { count: 8, model: 'Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz' },
    memory: { totalKiB: 33554432 },
    disks: [
      { name: 'sda', sizeBytes: 960197124096, model: 'SAMSUNG MZ7LH960', rotational: false },
      { name: 'sdb', sizeBytes: 4000787030016, model: 'ST4000NM0035', rotational: true },
    ],
    nics: [
      { name: 'eth0', mac, vendor: '0x8086', speedMbps: 10000 },
      { name: 'eth1', mac: mac.replace(/^52/, '56'), vendor: '0x8086', speedMbps: 10000 },
    ],
    pci: [],
    notes: '',
  };
  const pci = facts['pci'] as string[];
  const line = (i: number): string =>
    `0000:${(i >> 5).toString(16).padStart(2, '0')}:${(i & 31).toString(16).padStart(2, '0')}.0 Ethernet controller [0200]: Intel Corporation Ethernet Controller X710 for 10GbE SFP+ [8086:1572] (rev 02) subsystem [8086:0006]`;
  // Every line has the same length: count them once instead of serializing after each.
  let size = Buffer.byteLength(`${JSON.stringify(facts)}\n`);
  for (let i = 0; size < bytes - 4096; i++) {
    size += Buffer.byteLength(line(i)) + 2 + (i > 0 ? 1 : 0);
    pci.push(line(i));
  }
  facts['notes'] = 'x'.repeat(Math.max(0, bytes - size));
  return facts;
}

/** The db.json of the bench: the default profile, `declared` machines, one fact group. */
function benchDb(declared: number): unknown {
  const db = createDefaultDb();
  return {
    ...db,
    machines: Array.from({ length: declared }, (_, i) => ({
      mac: benchMac(i),
      hostname: `node-${i}`,
      profile: 'rancheros',
      labels: { rack: `r${i % 32}`, role: i % 4 === 0 ? 'storage' : 'compute' },
      vars: { ssh_authorized_keys: [`ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB${String(i).padStart(40, '0')} ops@lab`] },
    })),
    groups: [{ id: 'big-memory', profile: 'rancheros', selector: { facts: ['memory.totalKiB >= 64Gi'] } }],
  };
}

/** A running appliance and what it logged. */
interface Running {
  child: ChildProcess;
  url: string;
  /** Milliseconds from spawn to the ready line. */
  startMs: number;
  stop(): Promise<void>;
}

/** Start `node bin/appliance` on loopback for `home` and resolve at its ready line. */
function startAppliance(home: string, progress: (line: string) => void): Promise<Running> {
  const started = process.hrtime.bigint();
  const child = spawn(
    process.execPath,
    [
      ...APPLIANCE_NODE_FLAGS,
      APPLIANCE_BIN,
      '--config',
      join(home, 'appliance.json'),
      '--dhcp-mode',
      'off',
      '--address',
      '127.0.0.1',
      '--http-port',
      '0',
      '--tftp-port',
      '0',
      '--db',
      join(home, 'db.json'),
      '--tftp-root',
      join(home, 'tftpboot'),
      '--assets',
      join(home, 'assets'),
      '--api-token',
      BENCH_TOKEN,
      '--log-format',
      'json',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise<Running>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bench store: the appliance was not ready within 120 s: ${stderr}`));
    }, 120_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`bench store: the appliance exited (${code}) before it was ready: ${stderr}`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.includes('netboot appliance ready')) return;
      clearTimeout(timer);
      const startMs = Number(process.hrtime.bigint() - started) / 1e6;
      const ports = (JSON.parse(line) as { ports: { http: number } }).ports;
      resolve({
        child,
        url: `http://127.0.0.1:${ports.http}`,
        startMs,
        async stop() {
          if (child.exitCode === null) child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(killer);
        },
      });
    });
  }).then((r) => {
    progress(`store: appliance ready in ${r.startMs.toFixed(0)} ms`);
    return r;
  });
}

const BENCH_TOKEN = 'bench-token-0123456789abcdef';
const AUTH = { authorization: `Bearer ${BENCH_TOKEN}` };

/** Resident set size (VmRSS) of a process in MiB. */
function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** Bytes of every file under `dir`. */
function treeBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? treeBytes(p) : statSync(p).size;
  }
  return total;
}

/** Time `n` sequential requests made by `request(i)`; each must answer `ok` statuses. Milliseconds. */
async function timeRequests(n: number, request: (i: number) => Promise<Response>, ok: (status: number) => boolean, what: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const res = await request(i);
    await res.arrayBuffer();
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (!ok(res.status)) throw new Error(`bench store: ${what} answered ${res.status}`);
  }
  return out;
}

async function runStoreBench(context: BenchContext): Promise<BenchFigure[]> {
  const { progress } = context;
  const runs = Math.max(1, context.runs);
  const wanted = (name: string): boolean => context.match === undefined || context.match.test(name);
  const dir = mkdtempSync(join(tmpdir(), 'netboot-store-bench-'));
  const homes = { full: join(dir, 'full'), empty: join(dir, 'empty') };
  const running: Running[] = [];
  const onExit = (): void => {
    for (const r of running) r.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const figures: BenchFigure[] = [];
  const n = STORE_BENCH_MACHINES;
  const declared = n / 2;
  try {
    for (const home of Object.values(homes)) {
      mkdirSync(join(home, 'tftpboot'), { recursive: true });
      mkdirSync(join(home, 'assets'));
      // An empty settings file, so the checkout's config/appliance.json is not read.
      writeFileSync(join(home, 'appliance.json'), '{}\n');
    }
    const db = join(homes.full, 'db.json');
    writeFileSync(db, `${JSON.stringify(benchDb(declared), null, 2)}\n`);
    progress(`store: seeding ${n} machines with ${DEFAULT_STATE_LIMITS.maxFactsBytes}-byte facts`);
    const seedStart = Date.now();
    const state = await openStateStore({ dir: stateDirFor(db), log: createSilentLogger(), flushMs: 0 });
    // In batches: each report is written durably (fsync), and a disk takes many fsyncs at once better than one by one.
    for (let start = 0; start < n; start += 64) {
      const batch = Array.from({ length: Math.min(64, n - start) }, (_, k) => start + k);
      await Promise.all(
        batch.map((i) => {
          const mac = benchMac(i);
          const isDeclared = i < declared;
          state.sighted({ mac, ip: `10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`, profile: 'rancheros' }, isDeclared);
          return state.putFacts(mac, factsAtBound(mac), undefined, isDeclared, true);
        }),
      );
    }
    await state.close();
    // A busy lab's boot timeline at its bound (two files of half the bound each), replayed at every start.
    const stateDir = stateDirFor(db);
    for (const [file, base] of [
      ['timeline.1.jsonl', 0],
      ['timeline.jsonl', 1],
    ] as const) {
      const lines: string[] = [];
      let bytes = 0;
      for (let k = 0; bytes < DEFAULT_TIMELINE_BYTES / 2 - 1024; k++) {
        const i = (k * 31 + base) % n;
        const at = new Date(Date.UTC(2026, 0, 1) + (base * 1e6 + k) * 1000).toISOString();
        const type = ['dhcp-offer', 'dhcp-ack', 'tftp-file', 'http-script', 'http-asset', 'http-cloud-config'][k % 6];
        const line = `${JSON.stringify({ at, mac: benchMac(i), type, ip: `10.0.${(i >> 8) & 0xff}.${i & 0xff}`, detail: { profile: 'rancheros', file: '/assets/rancheros/v1.5.8/vmlinuz' } })}\n`;
        if (bytes + line.length > DEFAULT_TIMELINE_BYTES / 2 - 1024) break;
        lines.push(line);
        bytes += line.length;
      }
      writeFileSync(join(stateDir, file), lines.join(''));
    }
    progress(`store: seeded in ${((Date.now() - seedStart) / 1000).toFixed(1)} s (${(treeBytes(stateDir) / 2 ** 20).toFixed(0)} MiB on disk)`);

    // Restart: interleaved starts of the full and the empty home.
    const full: number[] = [];
    const empty: number[] = [];
    const rssFull: number[] = [];
    const rssEmpty: number[] = [];
    for (let r = 0; r < runs; r++) {
      for (const [home, times, rss] of [
        [homes.full, full, rssFull],
        [homes.empty, empty, rssEmpty],
      ] as const) {
        const app = await startAppliance(home, progress);
        running.push(app);
        times.push(app.startMs / 1000);
        // Settled RSS: once the start-up garbage is collected the figure stops moving.
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const v = rssMiB(app.child.pid);
        if (v !== undefined) rss.push(v);
        await app.stop();
        running.splice(running.indexOf(app), 1);
      }
    }
    figures.push(
      figure({
        section: 'store',
        what: `restart to ready, ${n} machines with facts at the bound (${declared} declared)`,
        anchor: 'empty home',
        unit: 's',
        ours: median(full),
        theirs: median(empty),
        target: { on: 'ours', max: 5, text: '<= 5 s' },
      }),
      figure({
        section: 'store',
        what: `RSS once ready, ${n} machines`,
        anchor: 'empty home',
        unit: 'MiB',
        ours: median(rssFull),
        theirs: median(rssEmpty),
        target: { on: 'ours', max: 256, text: '<= 256 MiB' },
      }),
    );

    // API latency on the full home.
    const app = await startAppliance(homes.full, progress);
    running.push(app);
    resetPeakRss(app.child.pid);
    const api = (path: string, init: RequestInit = {}): Promise<Response> =>
      fetch(`${app.url}${path}`, {
        ...init,
        headers: { ...AUTH, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...(init.headers ?? {}) },
      });
    const sampled = (count: number): number => Math.max(20, count * runs);
    const latency = async (name: string, count: number, request: (i: number) => Promise<Response>, target: number): Promise<void> => {
      if (!wanted(name)) return;
      await request(0).then((r) => r.arrayBuffer());
      const ms = await timeRequests(sampled(count), request, (s) => s >= 200 && s < 300, name);
      progress(`store: ${name} p50 ${percentile(ms, 50).toFixed(1)} ms, p99 ${percentile(ms, 99).toFixed(1)} ms`);
      figures.push(
        figure({ section: 'store', what: `${name} p50`, unit: 'ms', ours: percentile(ms, 50) }),
        figure({ section: 'store', what: `${name} p99`, unit: 'ms', ours: percentile(ms, 99), target: { on: 'ours', max: target, text: `<= ${target} ms` } }),
      );
    };
    const mac = (i: number): string => benchMac((i * 7919) % n);
    const declaredMac = (i: number): string => benchMac((i * 7919) % declared);
    await latency(`GET /api/machines (${n})`, 10, () => api('/api/machines'), 1000);
    await latency('GET /api/machines/:mac (with facts)', 100, (i) => api(`/api/machines/${mac(i)}`), 50);
    await latency(
      'PUT /api/machines/:mac (db.json rewritten)',
      20,
      (i) =>
        api(`/api/machines/${declaredMac(i)}`, { method: 'PUT', body: JSON.stringify({ hostname: `put-${i}`, profile: 'rancheros', labels: { rack: 'r1' } }) }),
      250,
    );
    await latency(
      'PATCH /api/machines/:mac (merge patch)',
      20,
      (i) => api(`/api/machines/${declaredMac(i)}`, { method: 'PATCH', body: JSON.stringify({ labels: { patched: String(i) } }) }),
      250,
    );
    const bodies = new Map<string, string>();
    const factsBody = (m: string): string => {
      let b = bodies.get(m);
      if (b === undefined) {
        // The POST body is the report without the newline the store adds.
        b = JSON.stringify(factsAtBound(m));
        if (bodies.size < 512) bodies.set(m, b);
      }
      return b;
    };
    await latency('facts POST at the 64 KiB bound', 100, (i) => api(`/api/machines/${mac(i)}/facts`, { method: 'POST', body: factsBody(mac(i)) }), 100);
    await latency(`GET /api/console/machines (${n} rows)`, 5, () => api('/api/console/machines'), 2000);

    // The facts flood: db.json must not change, the state store must stay within its bound.
    if (wanted('facts flood')) {
      const before = readFileSync(db);
      const hash = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
      const statuses = new Map<number, number>();
      const total = n;
      let next = 0;
      const floodStart = process.hrtime.bigint();
      const oversize = `{"pad":"${'y'.repeat(DEFAULT_STATE_LIMITS.maxFactsBytes)}"}`;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let i = next++; i < total; i = next++) {
            // A third each: existing machines at the bound, new MACs, bodies over the bound.
            const kind = i % 3;
            const m = kind === 1 ? benchMac(n + i) : mac(i);
            const res = await fetch(`${app.url}/api/machines/${m}/facts`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: kind === 2 ? oversize : factsBody(m),
            });
            await res.arrayBuffer();
            statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          }
        }),
      );
      const floodS = Number(process.hrtime.bigint() - floodStart) / 1e9;
      const after = readFileSync(db);
      const health = (await (await fetch(`${app.url}/healthz`)).json()) as { state: { factsBytes: number; machines: number } };
      const summary = [...statuses.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([s, c]) => `${c}x${s}`)
        .join(' ');
      progress(`store: flood of ${total} facts posts in ${floodS.toFixed(1)} s: ${summary}; db.json ${hash(before) === hash(after) ? 'unchanged' : 'CHANGED'}`);
      figures.push(
        figure({
          section: 'store',
          what: `facts flood: ${total} posts by 8 clients (existing, new and oversize MACs), rate`,
          unit: '/s',
          ours: total / floodS,
          note: summary,
        }),
        figure({
          section: 'store',
          what: 'facts flood: db.json bytes changed',
          unit: 'B',
          ours: hash(before) === hash(after) ? 0 : Math.max(1, Math.abs(after.length - before.length)),
          target: { on: 'ours', max: 0, text: '0 (never written)' },
        }),
        figure({
          section: 'store',
          what: `facts flood: state store facts total (bound ${DEFAULT_STATE_LIMITS.maxTotalFactsBytes / 2 ** 20} MiB)`,
          unit: 'MiB',
          ours: health.state.factsBytes / 2 ** 20,
          target: { on: 'ours', max: DEFAULT_STATE_LIMITS.maxTotalFactsBytes / 2 ** 20, text: `<= ${DEFAULT_STATE_LIMITS.maxTotalFactsBytes / 2 ** 20} MiB` },
        }),
        figure({
          section: 'store',
          what: 'facts flood: state store on disk (records, facts, timeline)',
          unit: 'MiB',
          ours: treeBytes(stateDirFor(db)) / 2 ** 20,
          note: `${health.state.machines} machines`,
        }),
      );
    }
    figures.push(
      figure({
        section: 'store',
        what: `peak RSS over the API phase and the flood, ${n} machines`,
        unit: 'MiB',
        ours: peakRssMiB(app.child.pid) ?? Number.NaN,
        target: { on: 'ours', max: 512, text: '<= 512 MiB' },
      }),
    );
    await app.stop();
    running.splice(running.indexOf(app), 1);
    return figures;
  } finally {
    process.off('exit', onExit);
    for (const r of running) await r.stop();
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
  }
}

/** The state-store section (`--only store`). */
export const benchSection: BenchSection = {
  name: 'store',
  title: `State store: ${STORE_BENCH_MACHINES} machines with facts at the 64 KiB bound (restart, RSS, API latency, facts flood)`,
  prerequisites: () => {
    try {
      assertApplianceBuilt();
      return [];
    } catch (err) {
      return [(err as Error).message];
    }
  },
  run: runStoreBench,
};
