import { createSilentLogger, type Logger } from '../log.js';
import { startDnsmasqBaseline, type StartBootServer } from './baseline.js';
import type { Firmware } from './qemu.js';
import { runBootScenario, type BootPhase } from './scenario.js';

/** A boot server to measure. */
export interface BenchVariant {
  /** Column name in the report, e.g. `dnsmasq` or `appliance`. */
  name: string;
  startBootServer: StartBootServer;
}

/** The reference: dnsmasq ProxyDHCP + TFTP and busybox httpd (docs/NETBOOT-FACTS.md section 5). */
export const DNSMASQ_BASELINE: BenchVariant = {
  name: 'dnsmasq',
  startBootServer: (lab, assets) => startDnsmasqBaseline(lab, assets),
};

/** Options for {@link runBench}. */
export interface BenchOptions {
  /** The first variant is the baseline the others are compared with. */
  variants: readonly BenchVariant[];
  firmwares?: readonly Firmware[];
  /** Boots per variant and firmware (default 1). */
  runs?: number;
  /** Per-boot limit (default 4 minutes). */
  timeoutMs?: number;
  /** Run an IPv6 router on the lab network (see LabOptions.ipv6Router). Default false. */
  ipv6Router?: boolean;
  /** Called after every boot (progress output). */
  onResult?: (row: BenchRow) => void;
  log?: Logger;
}

/** One measured boot. */
export interface BenchRow {
  variant: string;
  firmware: Firmware;
  run: number;
  /** Seconds from VM start to cloud-config fetched, or null when the boot failed. */
  seconds: number | null;
  /** Seconds to each console milestone (see runBootScenario), for finding where time goes. */
  phases?: Partial<Record<BootPhase, number>>;
  error?: string;
}

/**
 * Boot the test OS through every variant and firmware, `runs` times. Variants are interleaved
 * (A, B, A, B ...) so that a slow phase of a shared CI host hits all of them alike. Boots run
 * one at a time: TCG is CPU-bound and the figure must not depend on a neighbour VM.
 */
export async function runBench(options: BenchOptions): Promise<BenchRow[]> {
  const log = options.log ?? createSilentLogger();
  const rows: BenchRow[] = [];
  const runs = options.runs ?? 1;
  for (const firmware of options.firmwares ?? ['bios', 'uefi']) {
    for (let run = 1; run <= runs; run++) {
      for (const variant of options.variants) {
        let row: BenchRow;
        try {
          const r = await runBootScenario({
            firmware,
            startBootServer: variant.startBootServer,
            log,
            ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
            ...(options.ipv6Router !== undefined ? { ipv6Router: options.ipv6Router } : {}),
          });
          row = { variant: variant.name, firmware, run, seconds: r.secondsToCloudConfig, phases: r.phases };
        } catch (err) {
          row = { variant: variant.name, firmware, run, seconds: null, error: err instanceof Error ? err.message : String(err) };
        }
        rows.push(row);
        options.onResult?.(row);
      }
    }
  }
  return rows;
}

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Median seconds per variant and firmware, as produced by {@link summarizeBench}. */
export interface BenchSummary {
  firmware: Firmware;
  variant: string;
  medianSeconds: number | undefined;
  failures: number;
  /** medianSeconds / baseline medianSeconds (the first variant), when both exist. */
  ratioToBaseline: number | undefined;
}

/** Medians and ratios to the first variant, per firmware. */
export function summarizeBench(rows: readonly BenchRow[], variantOrder: readonly string[]): BenchSummary[] {
  const out: BenchSummary[] = [];
  const firmwares = [...new Set(rows.map((r) => r.firmware))];
  for (const firmware of firmwares) {
    let base: number | undefined;
    for (const [i, variant] of variantOrder.entries()) {
      const mine = rows.filter((r) => r.firmware === firmware && r.variant === variant);
      const med = median(mine.flatMap((r) => (r.seconds === null ? [] : [r.seconds])));
      if (i === 0) base = med;
      out.push({
        firmware,
        variant,
        medianSeconds: med,
        failures: mine.filter((r) => r.seconds === null).length,
        ratioToBaseline: med !== undefined && base !== undefined ? med / base : undefined,
      });
    }
  }
  return out;
}
