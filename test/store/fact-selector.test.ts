import test from 'ava';
import {
  checkFact,
  checkFacts,
  FACT_SELECTOR_CACHE_MAX,
  factValues,
  globMatch,
  parseFactNumber,
  parseFactSelector,
  parseFactSelectorCached,
} from '../../src/store/fact-selector.js';
import type { Facts } from '../../src/store/schema.js';

// The reference agent's report shape (agent/README.md), as a QEMU VM sends it.
const FACTS: Facts = {
  dmi: { vendor: 'QEMU', product: 'Standard PC (i440FX + PIIX, 1996)', serial: null },
  cpu: { model: 'QEMU Virtual CPU version 2.5+', count: 2 },
  memory: { totalKiB: 8167000 },
  nics: [
    { name: 'eth0', mac: '52:54:00:12:34:56', vendor: '0x1af4' },
    { name: 'eth1', mac: '52:54:00:12:34:57', vendor: '0x8086' },
  ],
  disks: [
    { name: 'vda', sizeBytes: 21474836480, rotational: false },
    { name: 'vdb', sizeBytes: 536870912000, rotational: true },
  ],
  kernel: { release: '6.1.0-28-cloud-amd64', arch: 'x86_64' },
};

const TABLE: Array<[string, boolean]> = [
  ['dmi.vendor == QEMU', true],
  ['dmi.vendor == qemu', false],
  ['dmi.vendor ~ qemu', true],
  ['dmi.vendor != Dell', true],
  ['dmi.product ~ "Standard PC*"', true],
  ['dmi.product == "Standard PC (i440FX + PIIX, 1996)"', true],
  ['dmi.product ~ "*Q35*"', false],
  ['dmi.serial', false],
  ['dmi.vendor', true],
  ['cpu.count >= 2', true],
  ['cpu.count > 2', false],
  ['cpu.count == 2', true],
  ['memory.totalKiB >= 7Mi', true],
  ['memory.totalKiB >= 8Mi', false],
  ['disks.# == 2', true],
  ['disks.# >= 3', false],
  ['disks.#.sizeBytes > 500G', true],
  ['disks.#.sizeBytes > 600G', false],
  ['disks.0.sizeBytes == 20Gi', true],
  ['disks.1.rotational == true', true],
  ['nics.#.vendor == 0x8086', true],
  ['nics.#.vendor == 0x10ec', false],
  ['nics.# == 0', false],
  ['nope.missing == x', false],
  ['nope.missing != x', false],
  ['cpu ~ *', false],
  ['kernel.arch == x86_64', true],
];

for (const [expr, expected] of TABLE) {
  test(`${expr} -> ${expected}`, (t) => {
    t.is(checkFact(parseFactSelector(expr), FACTS).matched, expected);
  });
}

test('the reason says what was compared and what the machine reported', (t) => {
  t.is(checkFact(parseFactSelector('cpu.count >= 4'), FACTS).reason, 'cpu.count >= 4 (got 2)');
  t.is(checkFact(parseFactSelector('dmi.vendor == QEMU'), FACTS).reason, 'dmi.vendor == QEMU (got "QEMU")');
  t.is(checkFact(parseFactSelector('gpu.count > 0'), FACTS).reason, 'gpu.count > 0 (no such fact)');
  t.is(checkFact(parseFactSelector('disks.#.name == vdb'), FACTS).reason, 'disks.#.name == vdb (got "vda", "vdb")');
});

test('all expressions must hold; no facts at all matches nothing', (t) => {
  t.true(checkFacts(['dmi.vendor == QEMU', 'cpu.count >= 2'], FACTS).matched);
  t.false(checkFacts(['dmi.vendor == QEMU', 'cpu.count >= 4'], FACTS).matched);
  t.false(checkFacts(['dmi.vendor ~ *'], undefined).matched);
});

test('bad expressions are refused with the position of the problem', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /expected a fact path such as dmi.vendor at character 1/],
    ['cpu.count >= lots', />= needs a number/],
    ['cpu.count =< 4', /expected an operator .* at character 11/],
    ['dmi.vendor == "QEMU', /unterminated quoted string/],
    ['dmi.vendor == Q E', /unexpected text after the value/],
    ['dmi..vendor', /empty path segment/],
    ['disks.#x', /"#" must be a whole path segment/],
    ['a.b.c.d.e.f.g.h.i', /more than 8 path segments/],
    ['x == ' + 'y'.repeat(300), /longer than 256 characters/],
    ['dmi.vendor == "a\\nb"', /only \\" and \\\\ are escapes/],
  ];
  for (const [src, re] of cases) {
    const err = t.throws(() => parseFactSelector(src), { code: 'ERR_SELECTOR' } as never, src);
    t.regex(err!.message, re, src);
  }
});

test('numbers: units, underscores, numeric strings', (t) => {
  t.is(parseFactNumber('8Gi'), 8 * 1024 ** 3);
  t.is(parseFactNumber('100G'), 100e9);
  t.is(parseFactNumber('1_000'), 1000);
  t.is(parseFactNumber('0x10'), undefined);
  t.is(parseFactNumber('QEMU'), undefined);
  t.true(checkFact(parseFactSelector('v >= 10'), { v: '12' }).matched);
});

test('quoted strings keep spaces and escaped quotes', (t) => {
  const e = parseFactSelector('dmi.product == "say \\"hi\\" \\\\ there"');
  t.is(e.value?.text, 'say "hi" \\ there');
});

test('globMatch is linear and anchored', (t) => {
  t.true(globMatch('a*b?d', 'AxxxbCd'));
  t.false(globMatch('a*b', 'ab c'));
  // Exponential for a backtracking regex; linear here (ava's timeout would catch a hang).
  t.false(globMatch('*a*a*a*a*a*a*a*a*b', 'a'.repeat(4000)));
});

test('factValues fans out over lists with # and ignores missing keys', (t) => {
  t.deepEqual(factValues(FACTS, ['nics', '#', 'name']), ['eth0', 'eth1']);
  t.deepEqual(factValues(FACTS, ['nics', '#']), [2]);
  t.deepEqual(factValues(FACTS, ['nics', '5', 'name']), []);
  t.deepEqual(factValues(FACTS, ['constructor']), []);
});

test('parseFactSelectorCached: one parse per expression (errors too), bounded', (t) => {
  const a = parseFactSelectorCached('memory.total >= 4Gi');
  t.is(parseFactSelectorCached('memory.total >= 4Gi'), a, 'the same parsed expression');
  t.deepEqual(a, parseFactSelector('memory.total >= 4Gi'));
  const bad = t.throws(() => parseFactSelectorCached('memory.total >>= 4'));
  t.is(
    t.throws(() => parseFactSelectorCached('memory.total >>= 4')),
    bad,
    'the same error',
  );
  // checkFacts reads through the cache: a parse error is a failed check naming the problem.
  t.deepEqual(
    checkFacts(['memory.total >>= 4'], {}).checks.map((c) => c.reason),
    [bad!.message],
  );
  for (let i = 0; i < FACT_SELECTOR_CACHE_MAX; i++) parseFactSelectorCached(`cpu.count == ${i}`);
  t.not(parseFactSelectorCached('memory.total >= 4Gi'), a, 'the oldest entries make room');
});
