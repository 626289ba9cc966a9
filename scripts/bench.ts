/**
 * The bench (`npm run bench`): first the services side by side with their anchors (TFTP vs
 * dnsmasq, tftpd-hpa and atftpd; HTTP vs nginx-light; src/lab/service-bench.ts), then the boot
 * time from VM start to cloud-config fetched, per boot server and firmware.
 *
 *   node --import=tsx scripts/bench.ts [--only services|vm] [--firmware bios|uefi|both] [--runs N] [--ipv6-router] [--json]
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
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DNSMASQ_BASELINE, formatBenchSummary, runBench, summarizeBench, type BenchVariant } from '../src/lab/bench.js';
import { APPLIANCE_VARIANT, assertApplianceBuilt } from '../src/lab/appliance.js';
import { checkLabPrerequisites } from '../src/lab/prereqs.js';
import { formatServiceBench, runServiceBench, SERVICE_BENCH_TOOLS } from '../src/lab/service-bench.js';
import type { Firmware } from '../src/lab/qemu.js';

/** Run the bench with `variants` (baseline first) and print the report; returns the exit code. */
export async function main(argv: readonly string[], variants: readonly BenchVariant[]): Promise<number> {
  let values: { firmware: string; runs: string; json: boolean; 'ipv6-router': boolean; only?: string | undefined };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        firmware: { type: 'string', default: 'both' },
        runs: { type: 'string', default: '1' },
        json: { type: 'boolean', default: false },
        'ipv6-router': { type: 'boolean', default: false },
        only: { type: 'string' },
      },
    }));
  } catch (err) {
    process.stderr.write(
      `bench: ${(err as Error).message}; usage: bench [--only services|vm] [--firmware bios|uefi|both] [--runs N] [--ipv6-router] [--json]\n`,
    );
    return 2;
  }
  const fw = values.firmware;
  if (fw !== 'bios' && fw !== 'uefi' && fw !== 'both') {
    process.stderr.write(`bench: --firmware must be bios, uefi or both, not ${fw}\n`);
    return 2;
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 20) {
    process.stderr.write(`bench: --runs must be an integer 1..20, not ${values.runs}\n`);
    return 2;
  }
  if (values.only !== undefined && values.only !== 'services' && values.only !== 'vm') {
    process.stderr.write(`bench: --only must be services or vm, not ${values.only}\n`);
    return 2;
  }
  if (values.only !== 'vm') {
    const tools = SERVICE_BENCH_TOOLS.filter(([bin]) => spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0);
    if (tools.length > 0) {
      for (const [bin, pkg] of tools) process.stderr.write(`bench: missing ${bin} (apt-get install ${pkg}, or run scripts/install)\n`);
      return 2;
    }
    try {
      assertApplianceBuilt();
    } catch (err) {
      process.stderr.write(`bench: ${(err as Error).message}\n`);
      return 2;
    }
    const result = await runServiceBench({ runs: values.runs === '1' ? 3 : runs, progress: (line) => process.stderr.write(`${line}\n`) });
    if (values.json) process.stdout.write(`${JSON.stringify({ services: result }, null, 2)}\n`);
    else process.stdout.write(`${formatServiceBench(result)}\n\n`);
    if (values.only === 'services') return 0;
  }
  const missing = checkLabPrerequisites(fw);
  if (missing.length > 0) {
    for (const m of missing) process.stderr.write(`bench: missing ${m.what} (${m.fix})\n`);
    return 2;
  }
  if (variants.includes(APPLIANCE_VARIANT)) {
    try {
      assertApplianceBuilt();
    } catch (err) {
      process.stderr.write(`bench: ${(err as Error).message}\n`);
      return 2;
    }
  }
  const firmwares: Firmware[] = fw === 'both' ? ['bios', 'uefi'] : [fw];
  const rows = await runBench({
    variants,
    firmwares,
    runs,
    ipv6Router: values['ipv6-router'],
    onResult: (r) => {
      const phases = Object.entries(r.phases ?? {})
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(', ');
      const what = r.seconds === null ? `FAILED: ${r.error ?? ''}` : `${r.seconds.toFixed(1)} s (${phases})`;
      process.stderr.write(`${r.firmware} ${r.variant} run ${r.run}: ${what}\n`);
    },
  });
  const summary = summarizeBench(
    rows,
    variants.map((v) => v.name),
  );
  if (values.json) process.stdout.write(`${JSON.stringify({ rows, summary }, null, 2)}\n`);
  else process.stdout.write(`${formatBenchSummary(summary)}\n`);
  return rows.some((r) => r.seconds === null) ? 1 : 0;
}

// Variants, baseline first.
const VARIANTS: BenchVariant[] = [DNSMASQ_BASELINE, APPLIANCE_VARIANT];

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // Exit through process.exit so the lab's exit hooks kill the VMs and delete the namespaces
  // (a signal's default action would skip them and leave the lab to the next reap).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  process.exitCode = await main(process.argv.slice(2), VARIANTS);
}
