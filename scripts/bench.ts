/**
 * The bench (`npm run bench`), every part side by side with its anchor in one run: the services
 * (TFTP vs dnsmasq, tftpd-hpa and atftpd; HTTP vs nginx-light; src/lab/service-bench.ts), then
 * every section module in src/lab/bench-sections/ (DHCP DORA and ProxyDHCP vs dnsmasq through
 * perfdhcp; the state store), then the boot time from VM start to cloud-config fetched, per boot
 * server and firmware. It ends with one table of every figure and one of the targets with
 * PASS or MISS (src/lab/bench-report.ts), and the load average before and after (the machine may
 * be shared: the figures are medians of interleaved runs).
 *
 *   node --import=tsx scripts/bench.ts [--only PART[,PART]] [--match REGEX] [--runs N] [--vm-runs N]
 *                                      [--firmware bios|uefi|both] [--ipv6-router] [--json]
 *
 * PART: services, vm, or a section's name (dhcp, ...). `--match` runs only the cases whose name
 * matches (to re-run the figures that look off). `--runs` (default 3) is per service or section
 * figure, `--vm-runs` (default 1) per VM boot variant.
 *
 * Run it under the machine-wide lock (`flock /tmp/netboot-qemu.lock npm run bench`): both parts
 * compete for the CPU with anything else running.
 *
 * Needs root, the VM lab packages (see src/lab/prereqs.ts) and a current build (`npm run
 * build`: the appliance variant runs `node bin/appliance`, which imports dist/). The first
 * variant, dnsmasq ProxyDHCP + TFTP with busybox httpd, is the baseline; the appliance is
 * reported with its ratio to it. Both boot the same kernel, initrd and cloud-config body on
 * the same VM settings, one boot at a time, interleaved.
 * `--ipv6-router` puts an IPv6 router on the lab network: iPXE then stops waiting ~16 s for a
 * Router Advertisement, which otherwise dominates every variant's figure.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DNSMASQ_BASELINE, runBench, summarizeBench, type BenchVariant } from '../src/lab/bench.js';
import { APPLIANCE_VARIANT, assertApplianceBuilt } from '../src/lab/appliance.js';
import { figure, formatFigures, formatTargets, loadAverage, type BenchFigure, type BenchSection } from '../src/lab/bench-report.js';
import { checkLabPrerequisites } from '../src/lab/prereqs.js';
import { runServiceBench, SERVICE_BENCH_TOOLS } from '../src/lab/service-bench.js';
import type { Firmware } from '../src/lab/qemu.js';

const USAGE = 'usage: bench [--only services|vm|SECTION[,...]] [--match REGEX] [--runs N] [--vm-runs N] [--firmware bios|uefi|both] [--ipv6-router] [--json]';

/** The section modules in src/lab/bench-sections/, in name order. */
export async function loadBenchSections(): Promise<BenchSection[]> {
  const dir = new URL('../src/lab/bench-sections/', import.meta.url);
  const sections: BenchSection[] = [];
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .sort()) {
    const mod = (await import(new URL(file, dir).href)) as { benchSection?: BenchSection };
    if (mod.benchSection) sections.push(mod.benchSection);
  }
  return sections;
}

/** Run the bench with `variants` (baseline first) and print the report; returns the exit code. */
export async function main(argv: readonly string[], variants: readonly BenchVariant[], sections: readonly BenchSection[]): Promise<number> {
  let values: {
    firmware: string;
    runs: string;
    'vm-runs': string;
    json: boolean;
    'ipv6-router': boolean;
    only?: string | undefined;
    match?: string | undefined;
  };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        firmware: { type: 'string', default: 'both' },
        runs: { type: 'string', default: '3' },
        'vm-runs': { type: 'string', default: '1' },
        json: { type: 'boolean', default: false },
        'ipv6-router': { type: 'boolean', default: false },
        only: { type: 'string' },
        match: { type: 'string' },
      },
    }));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}; ${USAGE}\n`);
    return 2;
  }
  const fw = values.firmware;
  if (fw !== 'bios' && fw !== 'uefi' && fw !== 'both') {
    process.stderr.write(`bench: --firmware must be bios, uefi or both, not ${fw}\n`);
    return 2;
  }
  const count = (name: string, v: string): number | undefined => {
    const n = Number(v);
    if (Number.isInteger(n) && n >= 1 && n <= 20) return n;
    process.stderr.write(`bench: --${name} must be an integer 1..20, not ${v}\n`);
    return undefined;
  };
  const runs = count('runs', values.runs);
  const vmRuns = count('vm-runs', values['vm-runs']);
  if (runs === undefined || vmRuns === undefined) return 2;
  const parts = ['services', ...sections.map((s) => s.name), 'vm'];
  const only = values.only === undefined ? parts : values.only.split(',');
  const unknown = only.filter((p) => !parts.includes(p));
  if (unknown.length > 0) {
    process.stderr.write(`bench: --only ${unknown.join(',')}: the parts are ${parts.join(', ')}\n`);
    return 2;
  }
  let match: RegExp | undefined;
  try {
    match = values.match === undefined ? undefined : new RegExp(values.match);
  } catch (err) {
    process.stderr.write(`bench: --match: ${(err as Error).message}\n`);
    return 2;
  }
  const progress = (line: string): void => void process.stderr.write(`${line}\n`);

  // Check everything first: a missing tool must not surface after half an hour of measuring.
  const missing: string[] = [];
  const problems: string[] = [];
  if (only.includes('services')) {
    for (const [bin, pkg] of SERVICE_BENCH_TOOLS)
      if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) missing.push(`${bin} (apt-get install ${pkg}, or run scripts/install)`);
  }
  for (const s of sections) if (only.includes(s.name)) missing.push(...(s.prerequisites?.() ?? []));
  if (only.includes('vm')) for (const m of checkLabPrerequisites(fw)) missing.push(`${m.what} (${m.fix})`);
  try {
    assertApplianceBuilt();
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (missing.length > 0 || problems.length > 0) {
    for (const m of missing) process.stderr.write(`bench: missing ${m}\n`);
    for (const p of problems) process.stderr.write(`bench: ${p}\n`);
    return 2;
  }

  const started = new Date();
  const loadBefore = loadAverage();
  const figures: BenchFigure[] = [];
  let failed = false;
  if (only.includes('services')) figures.push(...(await runServiceBench({ runs, progress, ...(match ? { match } : {}) })));
  for (const s of sections) {
    if (!only.includes(s.name)) continue;
    progress(`bench: ${s.title}`);
    figures.push(...(await s.run({ runs, progress, ...(match ? { match } : {}) })));
  }
  if (only.includes('vm')) {
    const firmwares: Firmware[] = fw === 'both' ? ['bios', 'uefi'] : [fw];
    const rows = await runBench({
      variants,
      firmwares,
      runs: vmRuns,
      ipv6Router: values['ipv6-router'],
      onResult: (r) => {
        const phases = Object.entries(r.phases ?? {})
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(', ');
        const what = r.seconds === null ? `FAILED: ${r.error ?? ''}` : `${r.seconds.toFixed(1)} s (${phases})`;
        progress(`${r.firmware} ${r.variant} run ${r.run}: ${what}`);
      },
    });
    failed = rows.some((r) => r.seconds === null);
    const summary = summarizeBench(
      rows,
      variants.map((v) => v.name),
    );
    const baseline = variants[0]!.name;
    for (const s of summary) {
      if (s.variant === baseline) continue;
      const base = summary.find((b) => b.firmware === s.firmware && b.variant === baseline);
      figures.push(
        figure({
          section: 'vm',
          what: `${s.firmware.toUpperCase()} VM start to cloud-config fetched, ${values['ipv6-router'] ? 'IPv6 router' : 'no IPv6 router'} (${s.variant})`,
          anchor: `${baseline} proxy + busybox httpd`,
          unit: 's',
          ours: s.medianSeconds ?? Number.NaN,
          theirs: base?.medianSeconds ?? Number.NaN,
          ...(s.failures + (base?.failures ?? 0) > 0 ? { note: `${s.failures + (base?.failures ?? 0)} boots failed` } : {}),
        }),
      );
    }
  }
  const loadAfter = loadAverage();
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ started: started.toISOString(), loadBefore, loadAfter, runs, figures }, null, 2)}\n`);
  } else {
    process.stdout.write(
      [
        `bench ${started.toISOString()}: ${runs} interleaved runs per figure (medians), load average ${loadBefore?.toFixed(1) ?? '-'} before, ${loadAfter?.toFixed(1) ?? '-'} after (2 cores)`,
        '',
        formatFigures(figures),
        '',
        formatTargets(figures),
        '',
      ].join('\n'),
    );
  }
  return failed ? 1 : 0;
}

// Variants, baseline first.
const VARIANTS: BenchVariant[] = [DNSMASQ_BASELINE, APPLIANCE_VARIANT];

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // Exit through process.exit so the lab's exit hooks kill the VMs and delete the namespaces
  // (a signal's default action would skip them and leave the lab to the next reap).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  process.exitCode = await main(process.argv.slice(2), VARIANTS, await loadBenchSections());
}
