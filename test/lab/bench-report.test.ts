import test from 'ava';
import { figure, formatFigures, formatTargets, median, percentile, verdict } from '../../src/lab/bench-report.js';

test('median and nearest-rank percentile', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 2, 3]), 2.5);
  t.true(Number.isNaN(median([])));
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  t.is(percentile(hundred, 50), 50);
  t.is(percentile(hundred, 99), 99);
  t.is(percentile([7], 99), 7);
});

test('a figure gets its ratio; the verdict reads the target on the ratio or on our value', (t) => {
  const ratio = figure({ section: 'tftp', what: 'x', anchor: 'dnsmasq', unit: 's', ours: 1.2, theirs: 1.0, target: { on: 'ratio', max: 1.2, text: '<= 1.2' } });
  t.is(ratio.ratio?.toFixed(2), '1.20');
  t.is(verdict(ratio), 'PASS');
  t.is(verdict({ ...ratio, ratio: 1.21 }), 'MISS');
  const strict = figure({ section: 'dhcp', what: 'p99', unit: 'ms', ours: 5, target: { on: 'ours', max: 5, strict: true, text: '< 5 ms' } });
  t.is(strict.ratio, undefined);
  t.is(verdict(strict), 'MISS');
  t.is(verdict({ ...strict, ours: 4.9 }), 'PASS');
  const completed = figure({ section: 'dhcp', what: 'done', unit: '%', ours: 99.5, target: { on: 'ours', min: 100, text: '100 %' } });
  t.is(verdict(completed), 'MISS');
  // A figure that could not be measured misses its target; one without a target has no verdict.
  t.is(verdict(figure({ section: 'vm', what: 'boot', unit: 's', ours: Number.NaN, target: { on: 'ours', max: 1, text: '<= 1' } })), 'MISS');
  t.is(verdict(figure({ section: 'vm', what: 'boot', unit: 's', ours: 1 })), '-');
});

test('the targets table lists only figures with a target and counts the met ones', (t) => {
  const figures = [
    figure({ section: 'http', what: 'HTTP 10', anchor: 'nginx', unit: 's', ours: 0.9, theirs: 1, target: { on: 'ratio', max: 1, text: '<= 1.0' } }),
    figure({ section: 'http', what: 'HTTP 1', anchor: 'nginx', unit: 's', ours: 2, theirs: 1 }),
    figure({ section: 'rss', what: 'RSS', unit: 'MiB', ours: 160, target: { on: 'ours', max: 150, strict: true, text: '< 150 MiB' } }),
  ];
  const targets = formatTargets(figures);
  t.regex(targets, /\| ratio <= 1\.0 \| HTTP 10 vs nginx \| 0\.90 \| PASS \|/);
  t.regex(targets, /\| < 150 MiB \| RSS \| 160 MiB \| MISS \|/);
  t.notRegex(targets, /HTTP 1 vs/);
  t.regex(targets, /1 of 2 targets met/);
  t.is(formatFigures(figures).split('\n').length, 2 + figures.length);
});
