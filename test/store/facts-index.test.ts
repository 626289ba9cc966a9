/**
 * The DHCP facts index (src/store/facts-index.ts): its projection of a machine's facts answers
 * every selector as the whole report does, only verified facts enter it, it follows the state
 * store's writes and the groups' selectors, and it stays within its bounds.
 */
import test from 'ava';
import { createSilentLogger } from '../../src/log.js';
import { checkFacts, parseFactSelector } from '../../src/store/fact-selector.js';
import { createFactsIndex, selectorPaths, type FactsSource } from '../../src/store/facts-index.js';
import { parseDb, type Db, type Facts } from '../../src/store/schema.js';
import { openStateStore } from '../../src/store/state-store.js';
import { captureLogger, tempDir } from './helpers.js';

const log = createSilentLogger();
const A = '52:54:00:aa:00:01';
const B = '52:54:00:aa:00:02';

/** A report of the reference agent's shape (agent/README.md), with the lists selectors fan out over. */
const report: Facts = {
  agent: { name: 'netboot-discover', version: '1', tools: 'auto' },
  mac: A,
  hostname: 'node-7',
  kernel: { release: '6.1.0-18-amd64', arch: 'x86_64' },
  dmi: { vendor: 'Dell Inc.', product: 'PowerEdge R650', serial: 'ABC123', boardVendor: 'Dell Inc.', board: '0XYZ', biosVersion: '1.9.2' },
  cpu: { model: 'Intel(R) Xeon(R) Gold 6330', count: 56 },
  memory: { totalKiB: 263_000_000 },
  nics: [
    { name: 'eno1', mac: A, state: 'up', mtu: 1500, physical: true, vendor: '0x14e4', ipv4: ['10.0.0.5/24'] },
    { name: 'ens1f0', mac: '52:54:00:aa:00:11', state: 'down', mtu: 9000, physical: true, vendor: '0x8086', ipv4: [] },
  ],
  disks: [
    { name: 'sda', sizeBytes: 480_103_981_056, model: 'SSD', serial: 'S1', rotational: false },
    { name: 'sdb', sizeBytes: 4_000_787_030_016, model: 'HDD', serial: 'S2', rotational: true },
  ],
};

const SELECTORS = [
  'dmi.vendor == "Dell Inc."',
  'dmi.product ~ "PowerEdge*"',
  'dmi.product !~ "*R740*"',
  'cpu.count >= 32',
  'memory.totalKiB >= 128Mi',
  'memory.totalKiB < 1Ki',
  'nics.#.vendor == 0x8086',
  'nics.#.vendor != 0x14e4',
  'nics.# == 2',
  'nics.0.name == eno1',
  'nics.1.ipv4.# == 0',
  'nics.#.ipv4.0 ~ "10.*"',
  'disks.# >= 2',
  'disks.#.sizeBytes > 1T',
  'disks.#.rotational == true',
  'kernel',
  'kernel.arch == x86_64',
  'dmi.nothing',
  'agent.version == 2',
];

function dbWith(selectors: string[][]): Db {
  return parseDb({
    defaultProfile: 'plain',
    profiles: [{ id: 'plain', kernel: '/assets/vmlinuz' }],
    groups: selectors.map((facts, i) => ({ id: `g${i}`, profile: 'plain', selector: { facts } })),
  });
}

function source(facts: Map<string, Facts>, verified: Set<string>): FactsSource & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    list: () => [...facts.keys()].map((mac) => ({ mac, factsVerified: verified.has(mac) })),
    getFacts: async (mac) => {
      reads.push(mac);
      return facts.get(mac);
    },
  };
}

test('the projection answers every selector, with the same reason, as the whole report', async (t) => {
  const index = createFactsIndex({ log });
  await index.sync(dbWith(SELECTORS.map((s) => [s])), source(new Map(), new Set()));
  index.note(A, report);
  const projected = index.get(A);
  t.truthy(projected);
  for (const selector of SELECTORS) t.deepEqual(checkFacts([selector], projected), checkFacts([selector], report), selector);
  // Only what the selectors read is held: no serials, hostnames or addresses beyond the paths named.
  const text = JSON.stringify(projected);
  t.false(text.includes('ABC123'));
  t.false(text.includes('node-7'));
  t.true(text.length < JSON.stringify(report).length / 2);
});

test('only verified facts are held: unverified or deleted ones leave the index', async (t) => {
  const index = createFactsIndex({ log });
  await index.sync(dbWith([['dmi.vendor == "Dell Inc."']]), source(new Map(), new Set()));
  index.note(A, report);
  t.deepEqual(index.get(A), { dmi: { vendor: 'Dell Inc.' } });
  index.note(A, undefined);
  t.is(index.get(A), undefined);
  t.is(index.get(B), undefined);
  t.like(index.status(), { machines: 0, bytes: 0, paths: 1 });
});

test('sync re-reads verified facts only when the selectors read a new path; unverified ones are never read', async (t) => {
  const facts = new Map<string, Facts>([
    [A, report],
    [B, { dmi: { vendor: 'Dell Inc.' } }],
  ]);
  const src = source(facts, new Set([A]));
  const index = createFactsIndex({ log });
  await index.sync(dbWith([]), src);
  t.deepEqual(src.reads, [], 'no fact selector: nothing read');
  t.is(index.get(A), undefined);

  await index.sync(dbWith([['dmi.vendor == "Dell Inc."']]), src);
  t.deepEqual(src.reads, [A], 'B is unverified: never read');
  t.deepEqual(index.get(A), { dmi: { vendor: 'Dell Inc.' } });
  t.is(index.get(B), undefined);

  // Same paths (another group, another operator, another value): no re-read.
  await index.sync(dbWith([['dmi.vendor == QEMU'], ['dmi.vendor ~ "Dell*"']]), src);
  t.is(src.reads.length, 1);

  await index.sync(dbWith([['dmi.vendor == QEMU', 'cpu.count >= 4']]), src);
  t.deepEqual(index.get(A), { dmi: { vendor: 'Dell Inc.' }, cpu: { count: 56 } });

  // No fact selector left: the index empties.
  await index.sync(dbWith([]), src);
  t.is(index.get(A), undefined);
  t.deepEqual(selectorPaths(dbWith([['b.x == 1', 'a ~ "*"'], ['b.x > 2']])), ['a', 'b.x']);
  // A hand-edited expression that does not parse reads nothing (it matches nothing either).
  const raw = { groups: [{ id: 'x', profile: 'plain', selector: { facts: ['not valid ==', 'c'] } }] } as unknown as Pick<Db, 'groups'>;
  t.deepEqual(selectorPaths(raw), ['c']);
});

test("sync parses the groups' fact selectors again only when their text changed (the database is re-read each second)", async (t) => {
  const parsed: string[] = [];
  const parse = (src: string) => {
    parsed.push(src);
    return parseFactSelector(src);
  };
  const src = source(new Map([[A, report]]), new Set([A]));
  const index = createFactsIndex({ log, parse });
  await index.sync(dbWith([['dmi.vendor == "Dell Inc."', 'cpu.count >= 4']]), src);
  t.deepEqual(parsed, ['dmi.vendor == "Dell Inc."', 'cpu.count >= 4']);
  // A fresh copy of the same database, as each refresh reads: nothing parsed.
  for (let i = 0; i < 5; i++) await index.sync(dbWith([['dmi.vendor == "Dell Inc."', 'cpu.count >= 4']]), src);
  t.is(parsed.length, 2);
  t.deepEqual(index.get(A), { dmi: { vendor: 'Dell Inc.' }, cpu: { count: 56 } });
  // Other text, even with the same paths: parsed again, and followed.
  await index.sync(dbWith([['dmi.vendor == QEMU'], ['cpu.count >= 4']]), src);
  t.is(parsed.length, 4);
  await index.sync(dbWith([['dmi.vendor == QEMU']]), src);
  t.is(parsed.length, 5);
  t.deepEqual(index.get(A), { dmi: { vendor: 'Dell Inc.' } });
  t.like(index.status(), { paths: 1 });
});

test('a report written while sync re-reads is not overwritten by the older copy it read', async (t) => {
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const src: FactsSource = {
    list: () => [{ mac: A, factsVerified: true }],
    getFacts: async () => {
      await gate;
      return { dmi: { vendor: 'Old Vendor' } };
    },
  };
  const index = createFactsIndex({ log });
  const syncing = index.sync(dbWith([['dmi.vendor == "Dell Inc."']]), src);
  await new Promise((r) => setImmediate(r));
  index.note(A, report);
  release();
  await syncing;
  t.deepEqual(index.get(A), { dmi: { vendor: 'Dell Inc.' } });
});

test('bounded: a projection over the entry bound, or past the total bound, is left out and warned about', async (t) => {
  const { log: captured, lines } = captureLogger();
  const index = createFactsIndex({ log: captured, limits: { maxEntryBytes: 64, maxTotalBytes: 100 } });
  await index.sync(dbWith([['dmi.vendor == x']]), source(new Map(), new Set()));
  index.note(A, { dmi: { vendor: 'v'.repeat(100) } });
  t.is(index.get(A), undefined);
  t.like(index.status(), { machines: 0, skipped: 1 });
  t.true(lines.some((l) => String(l['msg']).includes('do not fit the dhcp facts index')));
  // Each projection is 30 bytes ({"dmi":{"vendor":"Dell Inc."}}): three fit in 100, two do not.
  for (let i = 0; i < 5; i++) index.note(`52:54:00:bb:00:0${i}`, { dmi: { vendor: 'Dell Inc.' } });
  t.like(index.status(), { machines: 3, bytes: 90, skipped: 3 });
  t.truthy(index.get('52:54:00:bb:00:02'));
  t.is(index.get('52:54:00:bb:00:03'), undefined);
  // Room again: a machine that leaves frees its bytes.
  index.note('52:54:00:bb:00:00', undefined);
  index.note('52:54:00:bb:00:03', { dmi: { vendor: 'Dell Inc.' } });
  t.truthy(index.get('52:54:00:bb:00:03'));
  t.like(index.status(), { machines: 3, bytes: 90, skipped: 2 });
});

test('the warning about projections left out is written once a minute; the next one counts those not warned about', async (t) => {
  const { log: captured, lines } = captureLogger();
  let clock = 0;
  const index = createFactsIndex({ log: captured, limits: { maxEntryBytes: 16 }, now: () => clock });
  await index.sync(dbWith([['dmi.vendor == x']]), source(new Map(), new Set()));
  const warnings = () => lines.filter((l) => String(l['msg']).includes('do not fit the dhcp facts index'));
  for (let i = 0; i < 5; i++) index.note(`52:54:00:cc:00:0${i}`, { dmi: { vendor: 'Dell Inc.' } });
  t.is(index.status().skipped, 5);
  t.is(warnings().length, 1);
  t.false('suppressed' in warnings()[0]!);
  clock = 59_999;
  index.note('52:54:00:cc:00:05', { dmi: { vendor: 'Dell Inc.' } });
  t.is(warnings().length, 1);
  clock = 60_000;
  index.note('52:54:00:cc:00:06', { dmi: { vendor: 'Dell Inc.' } });
  t.is(warnings().length, 2);
  t.like(warnings()[1], { mac: '52:54:00:cc:00:06', suppressed: 5 });
});

test('follows a real state store: verified reports enter, unverified and deleted ones leave, a restart rebuilds it from disk', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const db = dbWith([['dmi.vendor == "Dell Inc."']]);
  const index = createFactsIndex({ log });
  const state = await openStateStore({ dir, log, flushMs: 5, onFacts: (mac, facts) => index.note(mac, facts) });
  await index.sync(db, state);
  await state.putFacts(A, report, '10.0.0.5', false, true);
  await state.putFacts(B, report, '10.0.0.6', false, false);
  t.deepEqual(index.get(A), { dmi: { vendor: 'Dell Inc.' } });
  t.is(index.get(B), undefined, 'unverified');
  await state.putFacts(A, report, '10.0.0.5', false, false);
  t.is(index.get(A), undefined, 'replaced by an unverified report');
  await state.putFacts(A, report, '10.0.0.5', false, true);
  await state.putFacts(B, report, '10.0.0.6', false, true);
  t.true(await state.delete(B));
  t.is(index.get(B), undefined, 'deleted');
  await state.close();

  const again = createFactsIndex({ log });
  const reopened = await openStateStore({ dir, log, onFacts: (mac, facts) => again.note(mac, facts) });
  t.teardown(() => reopened.close());
  await again.sync(db, reopened);
  t.deepEqual(again.get(A), { dmi: { vendor: 'Dell Inc.' } });
  t.is(again.get(B), undefined);
});
