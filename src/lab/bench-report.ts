/**
 * The bench's one report: every figure of every part (services, DHCP, state store, VM boots) is
 * a {@link BenchFigure}; the driver (scripts/bench.ts) prints them side by side with their
 * anchors, and a table of the issue's targets with PASS or MISS.
 *
 * A part of the bench that lives in its own module is a {@link BenchSection}: a module in
 * `src/lab/bench-sections/` that exports `benchSection`. The driver finds and runs every such
 * module after the service and DHCP parts (`--only NAME` runs one), so a new section needs no
 * change to the driver.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

/** A goal for one figure: a bound on the ratio (ours / anchor) or on our own value. */
export interface BenchTarget {
  /** What is bounded. */
  on: 'ratio' | 'ours';
  /** Upper bound (inclusive unless `strict`). */
  max?: number;
  /** Lower bound (inclusive), e.g. 100 % of exchanges completed. */
  min?: number;
  /** `max` is a strict bound (< instead of <=). */
  strict?: boolean;
  /** How the target reads in the table, e.g. "<= 1.0" or "< 5 ms". */
  text: string;
}

/** One figure of the bench. */
export interface BenchFigure {
  /** Part of the bench: `tftp`, `http`, `dhcp`, `rss`, `store`, `vm` ... */
  section: string;
  /** What was measured, e.g. "TFTP storm 200 x 170 KB (curl)". */
  what: string;
  /** The server compared with, when there is one. */
  anchor?: string;
  /** Unit of `ours` and `theirs`: `s`, `ms`, `us`, `MiB`, `%`, `/s`. */
  unit: string;
  /** Our value (a median over the runs). */
  ours: number;
  /** The anchor's value (a median over the same, interleaved, runs). */
  theirs?: number;
  /** ours / theirs, when both exist and theirs is not 0. */
  ratio?: number;
  target?: BenchTarget;
  /** 1-minute load average when the figure was taken (the machine is shared). */
  load?: number;
  /** Anything a reader needs to trust the figure (e.g. runs that failed). */
  note?: string;
}

/** What a section gets from the driver. */
export interface BenchContext {
  /** Interleaved runs per figure asked for (`--runs`, default 3). */
  runs: number;
  /** Progress lines (stderr). */
  progress: (line: string) => void;
  /** Only the cases whose name matches (`--match`), to re-run the figures that look off. */
  match?: RegExp;
}

/** A part of the bench in its own module (`src/lab/bench-sections/NAME.ts` exports `benchSection`). */
export interface BenchSection {
  /** Name for `--only`, e.g. `store`. */
  name: string;
  /** One line for the report's heading. */
  title: string;
  /** Missing tools or packages, each with its fix; empty when the section can run. */
  prerequisites?: () => string[];
  run: (context: BenchContext) => Promise<BenchFigure[]>;
}

/** Median of `values` (NaN for none). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The `p`-th percentile (0..100) of `values`, nearest rank (NaN for none). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1]!;
}

/** The 1-minute load average (undefined off Linux). */
export function loadAverage(): number | undefined {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    return undefined;
  }
}

/** Peak RSS (VmHWM) of a process in MiB; undefined when it is gone. */
export function peakRssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds (user + system) a server has used so far: the process, the children it has reaped
 * (tftpd-hpa forks one per transfer) and its live children (nginx's worker). Linux /proc, clock
 * ticks of 10 ms; undefined when the process is gone.
 */
export function cpuSecondsOfTree(pid: number | undefined, depth = 0): number | undefined {
  if (pid === undefined) return undefined;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the parenthesised command name: utime, stime, cutime, cstime are the 12th to 15th.
  const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  let seconds = (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  if (depth < 3) {
    try {
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean)) {
          seconds += cpuSecondsOfTree(Number(child), depth + 1) ?? 0;
        }
      }
    } catch {
      // gone meanwhile
    }
  }
  return seconds;
}

/** Reset a process's peak RSS to its current RSS (Linux clear_refs 5; root), so a peak can be read per phase. */
export function resetPeakRss(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    // gone, or not permitted: the peak then covers everything before too
  }
}

/** A figure with its ratio filled in (when both values exist). */
export function figure(f: Omit<BenchFigure, 'ratio'>): BenchFigure {
  const ratio = f.theirs !== undefined && f.theirs !== 0 && Number.isFinite(f.theirs) ? f.ours / f.theirs : undefined;
  const load = f.load ?? loadAverage();
  return { ...f, ...(ratio !== undefined ? { ratio } : {}), ...(load !== undefined ? { load } : {}) };
}

/** PASS, MISS, or `-` when the figure has no target or the value is missing. */
export function verdict(f: BenchFigure): 'PASS' | 'MISS' | '-' {
  const t = f.target;
  if (!t) return '-';
  const v = t.on === 'ratio' ? f.ratio : f.ours;
  if (v === undefined || !Number.isFinite(v)) return 'MISS';
  if (t.max !== undefined && (t.strict ? v >= t.max : v > t.max)) return 'MISS';
  if (t.min !== undefined && v < t.min) return 'MISS';
  return 'PASS';
}

function num(v: number | undefined, unit: string): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  if (unit === '%' || unit === 'MiB' || unit === '/s' || unit === 'us') return v.toFixed(unit === '%' ? 1 : 0);
  if (unit === 'ms') return v.toFixed(2);
  return v < 10 ? v.toFixed(3) : v.toFixed(1);
}

/** Every figure as a markdown table, in the order measured. */
export function formatFigures(figures: readonly BenchFigure[]): string {
  const lines = ['| part | what | anchor | ours | anchor | unit | ratio | target | verdict | load |', '|---|---|---|---|---|---|---|---|---|---|'];
  for (const f of figures) {
    lines.push(
      `| ${f.section} | ${f.what}${f.note ? ` (${f.note})` : ''} | ${f.anchor ?? '-'} | ${num(f.ours, f.unit)} | ${num(f.theirs, f.unit)} | ${f.unit} | ${f.ratio === undefined ? '-' : f.ratio.toFixed(2)} | ${f.target?.text ?? '-'} | ${verdict(f)} | ${f.load === undefined ? '-' : f.load.toFixed(1)} |`,
    );
  }
  return lines.join('\n');
}

/** Only the figures with a target: the issue's goals with PASS or MISS. */
export function formatTargets(figures: readonly BenchFigure[]): string {
  const lines = ['| target | figure | value | verdict |', '|---|---|---|---|'];
  for (const f of figures) {
    if (!f.target) continue;
    const value = f.target.on === 'ratio' ? (f.ratio === undefined ? '-' : f.ratio.toFixed(2)) : `${num(f.ours, f.unit)} ${f.unit}`;
    lines.push(`| ${f.target.on === 'ratio' ? 'ratio ' : ''}${f.target.text} | ${f.what}${f.anchor ? ` vs ${f.anchor}` : ''} | ${value} | ${verdict(f)} |`);
  }
  const withTarget = figures.filter((f) => f.target);
  const passed = withTarget.filter((f) => verdict(f) === 'PASS').length;
  lines.push('', `${passed} of ${withTarget.length} targets met`);
  return lines.join('\n');
}
