/**
 * The DHCP bench section: its reading of perfdhcp's report, and one real exchange rate through
 * the appliance and dnsmasq (the harness smoke: namespaces built and removed, both servers
 * answer Kea's perfdhcp; figures, never timed assertions).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { benchSection, histogramPercentile, parseHistogramBuckets, parsePerfdhcp } from '../../../src/lab/bench-sections/dhcp.js';

const fixture = readFileSync(new URL('../../fixtures/lab/perfdhcp-dora.txt', import.meta.url), 'utf8');

test('perfdhcp report: rate, sent, completed and the last step latencies of each exchange', (t) => {
  const dora = parsePerfdhcp(fixture, false);
  t.is(dora.rate, 99.6536);
  t.is(dora.sent, 299);
  t.is(dora.completed, 299);
  // REQUEST-ACK timestamps: received - sent, in ms.
  t.deepEqual(
    dora.latenciesMs.map((v) => v.toFixed(3)),
    ['1.184', '1.278', '1.119', '1.155'],
  );
  const offers = parsePerfdhcp(fixture, true);
  t.deepEqual(
    offers.latenciesMs.map((v) => v.toFixed(3)),
    ['0.367', '0.453', '0.380', '0.294'],
  );
});

test('journal histogram: buckets read from a /metrics text, percentiles of the observations between two readings', (t) => {
  const text = (counts: number[]): string =>
    [
      '# HELP netboot_dhcp_lease_journal_write_seconds Seconds',
      '# TYPE netboot_dhcp_lease_journal_write_seconds histogram',
      ...['0.001', '0.002', '0.005', '+Inf'].map((le, i) => `netboot_dhcp_lease_journal_write_seconds_bucket{le="${le}",family="ipv4"} ${counts[i]}`),
      'netboot_dhcp_lease_journal_write_seconds_bucket{le="0.001",family="ipv6"} 999',
      `netboot_dhcp_lease_journal_write_seconds_count{family="ipv4"} ${counts[3]}`,
    ].join('\n');
  const before = parseHistogramBuckets(text([10, 10, 10, 10]), 'netboot_dhcp_lease_journal_write_seconds', 'family="ipv4"');
  t.deepEqual(
    [...before],
    [
      [0.001, 10],
      [0.002, 10],
      [0.005, 10],
      [Infinity, 10],
    ],
  );
  // 100 more: 50 under 1 ms, 40 in (1, 2] ms, 10 in (2, 5] ms.
  const after = parseHistogramBuckets(text([60, 100, 110, 110]), 'netboot_dhcp_lease_journal_write_seconds', 'family="ipv4"');
  t.is(histogramPercentile(before, after, 50), 0.001);
  t.is(histogramPercentile(before, after, 25), 0.0005);
  t.true(Math.abs(histogramPercentile(before, after, 99) - 0.0047) < 1e-9);
  t.true(Number.isNaN(histogramPercentile(before, before, 99)), 'nothing observed');
});

test('a report without timestamps or statistics reads as nothing completed', (t) => {
  const r = parsePerfdhcp('Running: perfdhcp\n', false);
  t.is(r.completed, 0);
  t.deepEqual(r.latenciesMs, []);
});

test('smoke: DORA at 100/s through the appliance and dnsmasq, in namespaces removed afterwards', async (t) => {
  // A missing perfdhcp or dnsmasq fails here, loudly (scripts/install installs both).
  t.deepEqual(benchSection.prerequisites?.() ?? [], []);
  const lines: string[] = [];
  const figures = await benchSection.run({
    runs: 1,
    progress: (line) => {
      lines.push(line);
      t.log(line);
    },
    match: /^DORA 100\/s$/,
  });
  t.deepEqual(
    figures.filter((f) => f.section === 'dhcp').map((f) => f.what),
    [
      'DORA 100/s, ACK p50',
      'DORA 100/s, ACK p99',
      'DORA 100/s, completed',
      'DORA 100/s, server CPU per exchange',
      'DORA 100/s, lease journal append (write + fdatasync) p50',
      'DORA 100/s, lease journal append (write + fdatasync) p99',
    ],
  );
  // The appliance's /metrics counted its journal appends during the runs (the section throws
  // when it counted none): a positive time each.
  const append = figures.find((f) => f.what === 'DORA 100/s, lease journal append (write + fdatasync) p99')!;
  t.true(append.ours > 0 && Number.isFinite(append.ours), JSON.stringify(append));
  t.regex(append.note ?? '', /^\d+ appends/);
  const completed = figures.find((f) => f.what === 'DORA 100/s, completed')!;
  // Both servers completed exchanges (the exact share is a bench figure, not a test).
  t.true(completed.ours > 0 && (completed.theirs ?? 0) > 0, JSON.stringify(completed));
  const p50 = figures.find((f) => f.what === 'DORA 100/s, ACK p50')!;
  t.true(p50.ours > 0 && (p50.theirs ?? 0) > 0);
  // Every namespace the run made is gone (other runs may have their own meanwhile).
  const made = (lines.find((l) => l.startsWith('dhcp bench: namespaces ')) ?? '').split(' ').slice(3);
  t.is(made.length, 7, "perfdhcp's namespace and one per server (6)");
  const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]);
  t.deepEqual(
    made.filter((ns) => left.includes(ns)),
    [],
  );
});
