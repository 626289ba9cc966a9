import test from 'ava';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hasCode } from '../../src/errors.js';
import { loadLeaseFile, parseLeases, serializeLeases } from '../../src/dhcp/lease-file.js';
import { openLeaseJournal } from '../../src/dhcp/lease-journal.js';
import type { Lease, LeaseSnapshot } from '../../src/dhcp/leases.js';
import { createSilentLogger } from '../../src/log.js';
import { captureLogger } from '../helpers/capture-logger.js';

const SNAP: LeaseSnapshot = {
  leases: [
    {
      key: 'mac:52:54:00:00:00:0a',
      mac: '52:54:00:00:00:0a',
      ip: '10.99.0.10',
      state: 'bound',
      expiresAt: Date.parse('2026-01-01T01:00:00.000Z'),
      bound: true,
    },
    { key: 'id:ff00000001', mac: '52:54:00:00:00:0b', ip: '10.99.0.11', state: 'released', expiresAt: Date.parse('2026-01-01T00:30:00.000Z'), bound: true },
  ],
  declined: [{ ip: '10.99.0.12', until: Date.parse('2026-01-01T00:10:00.000Z'), mac: '52:54:00:00:00:0c' }],
};

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'leases-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('serialize and parse round-trip; times are ISO 8601 in the file', (t) => {
  const text = serializeLeases(SNAP);
  t.regex(text, /"expires": "2026-01-01T01:00:00.000Z"/);
  t.deepEqual(parseLeases(text), SNAP);
});

test('parseLeases: every broken field is a coded error naming it', (t) => {
  const good = JSON.parse(serializeLeases(SNAP)) as { leases: Array<Record<string, unknown>>; declined: Array<Record<string, unknown>> };
  const cases: Array<[string, string, RegExp]> = [
    ['not json', '{', /not json/],
    ['version', JSON.stringify({ ...good, version: 2 }), /version 2, expected 1/],
    ['ip', JSON.stringify({ ...good, leases: [{ ...good.leases[0], ip: '10.99.0.300' }] }), /leases.0.ip is not an ip address/],
    ['mac', JSON.stringify({ ...good, leases: [{ ...good.leases[0], mac: 'zz' }] }), /leases.0.mac/],
    ['state', JSON.stringify({ ...good, leases: [{ ...good.leases[0], state: 'x' }] }), /leases.0.state/],
    ['expires', JSON.stringify({ ...good, leases: [{ ...good.leases[0], expires: 'soon' }] }), /leases.0.expires/],
    ['key', JSON.stringify({ ...good, leases: [{ ...good.leases[0], key: 'x' }] }), /leases.0.key/],
    ['declined', JSON.stringify({ ...good, declined: [{ ip: 'a', until: 'b' }] }), /declined.0.ip/],
    ['list', JSON.stringify({ ...good, leases: {} }), /leases is not a list/],
  ];
  for (const [name, text, msg] of cases) {
    const err = t.throws(() => parseLeases(text, 'x.json'), undefined, name);
    t.true(hasCode(err, 'ERR_LEASE_FILE'), name);
    t.regex(err!.message, msg, name);
  }
});

const [A, B] = SNAP.leases as [Lease, Lease];

test('journal: changes recorded and flushed are read back (put, drop, decline); one line per change; a missing file is an empty table', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'sub', 'leases.json');
  t.deepEqual(await loadLeaseFile(file), { leases: [], declined: [] });
  const journal = await openLeaseJournal({ file, log: createSilentLogger() });
  t.deepEqual(journal.loaded, { leases: [], declined: [] });
  journal.record({ op: 'put', lease: A });
  journal.record({ op: 'put', lease: B });
  journal.record({ op: 'put', lease: { ...A, state: 'released' } });
  journal.record({ op: 'drop', key: B.key });
  const future = Date.now() + 600_000;
  journal.record({ op: 'decline', declined: { ip: '10.99.0.12', until: future, mac: '52:54:00:00:00:0c' } });
  await journal.flush();
  const text = await readFile(file, 'utf8');
  t.is(text.trim().split('\n').length, 6, 'header and one line per change, appended');
  t.deepEqual(await loadLeaseFile(file), { leases: [{ ...A, state: 'released' }], declined: [{ ip: '10.99.0.12', until: future, mac: '52:54:00:00:00:0c' }] });
  // A put on an address held by another client's old record replaces that record (the pool's rule).
  journal.record({ op: 'put', lease: { ...B, ip: A.ip } });
  await journal.close();
  t.deepEqual((await loadLeaseFile(file)).leases, [{ ...B, ip: A.ip }]);
  t.deepEqual(await readdir(path.dirname(file)), ['leases.json'], 'no temp files left');
});

test('journal: concurrent flushes share batches (group commit); sync none never waits', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'leases.json');
  const journal = await openLeaseJournal({ file, log: createSilentLogger() });
  const waits: Array<Promise<void>> = [];
  for (let i = 0; i < 200; i++) {
    journal.record({ op: 'put', lease: { ...A, key: `mac:52:54:00:00:01:${(i % 256).toString(16).padStart(2, '0')}`, ip: `10.99.1.${i}` } });
    waits.push(journal.flush());
  }
  await Promise.all(waits);
  const stats = journal.stats();
  t.is(stats.appends, 200);
  t.true(stats.syncs < 200, `${stats.syncs} fdatasyncs for 200 flushed changes`);
  t.true(stats.syncs >= 1);
  await journal.close();
  t.is((await loadLeaseFile(file)).leases.length, 200);

  const none = await openLeaseJournal({ file: path.join(dir, 'none.json'), sync: 'none', log: createSilentLogger() });
  none.record({ op: 'put', lease: A });
  await none.flush();
  await none.close();
  t.is(none.stats().syncs, 0);
  t.deepEqual((await loadLeaseFile(path.join(dir, 'none.json'))).leases, [A]);
});

test('journal: compaction keeps the file bounded by the live records', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'leases.json');
  const journal = await openLeaseJournal({ file, log: createSilentLogger() });
  for (let i = 0; i < 10_000; i++) {
    journal.record({ op: 'put', lease: { ...A, expiresAt: A.expiresAt + i } });
    if (i % 100 === 0) await journal.flush();
  }
  await journal.close();
  t.true(journal.stats().compactions >= 2, `${journal.stats().compactions} compactions`);
  const lines = (await readFile(file, 'utf8')).trim().split('\n').length;
  t.true(lines <= 4097, `${lines} lines for one live lease`);
  t.deepEqual((await loadLeaseFile(file)).leases, [{ ...A, expiresAt: A.expiresAt + 9999 }]);
});

const manyLease = (i: number, expiresAt: number): Lease => ({
  key: `mac:52:54:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
  mac: `52:54:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
  ip: `10.99.${i >> 8}.${i & 255}`,
  state: 'bound',
  expiresAt,
  bound: true,
});

/** Flush until the journal has compacted more than `before` times (bounded: 5 s). */
async function untilCompacted(journal: { flush(): Promise<void>; stats(): { compactions: number } }, before: number): Promise<boolean> {
  const end = Date.now() + 5000;
  while (journal.stats().compactions <= before && Date.now() < end) {
    await journal.flush();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return journal.stats().compactions > before;
}

test('journal: a compaction of many leases lets the event loop turn, and changes recorded meanwhile survive it', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'leases.json');
  let encoded = 0;
  const journal = await openLeaseJournal({
    file,
    log: createSilentLogger(),
    compactFactor: 1,
    onCompactSlice: (done) => {
      encoded = done;
    },
  });
  const base = Date.parse('2026-01-01T01:00:00.000Z');
  for (let i = 0; i < 5000; i++) journal.record({ op: 'put', lease: manyLease(i, base) });
  await journal.flush();
  // The next flush starts a compaction (more records than max(4096, 1 x 5000 live leases)).
  // Event-loop turns are counted while it runs; changes are recorded in those turns.
  for (let i = 0; i < 100; i++) journal.record({ op: 'put', lease: manyLease(i, base + 1) });
  let turns = 0;
  let midway = 0;
  let running = true;
  const tick = (): void => {
    if (!running) return;
    turns += 1;
    // A turn between two slices: some leases encoded, not all.
    if (encoded > 0 && encoded < 5000) midway += 1;
    if (turns <= 20) journal.record({ op: 'put', lease: manyLease(4000 + turns, base + 2) });
    setImmediate(tick);
  };
  setImmediate(tick);
  const before = journal.stats().compactions;
  await journal.flush();
  t.true(await untilCompacted(journal, before), 'the journal compacted');
  running = false;
  // 5,000 leases in slices of 500: the event loop turned between slices, not only while the
  // file was written.
  t.true(midway >= 5, `${midway} event-loop turns in the middle of the encoding`);
  await journal.close();
  const loaded = await loadLeaseFile(file);
  const byKey = new Map(loaded.leases.map((l) => [l.key, l]));
  t.is(byKey.size, 5000);
  t.is(byKey.get(manyLease(5, 0).key)?.expiresAt, base + 1, 'a change recorded before the compaction');
  const during = Math.min(turns, 20);
  t.is(byKey.get(manyLease(4000 + during, 0).key)?.expiresAt, base + 2, 'a change recorded while it ran');
  t.true((await readFile(file, 'utf8')).trim().split('\n').length <= 5000 + 1 + 20, 'the file is compact');
});

test('journal: a flush never waits for a compaction, and what it acknowledged is on disk before the compaction is installed', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'leases.json');
  // The compaction stops in its first slice until the test lets it go on.
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let paused = false;
  const journal = await openLeaseJournal({
    file,
    log: createSilentLogger(),
    compactFactor: 1,
    onCompactSlice: async () => {
      paused = true;
      await held;
    },
  });
  const base = Date.parse('2026-01-01T01:00:00.000Z');
  for (let i = 0; i < 5000; i++) journal.record({ op: 'put', lease: manyLease(i, base) });
  await journal.flush();
  journal.record({ op: 'put', lease: manyLease(1, base + 1) });
  // This flush starts the compaction and resolves with the compaction held mid-encoding.
  await journal.flush();
  t.true(paused, 'the compaction is under way');
  for (let i = 0; i < 10; i++) {
    journal.record({ op: 'put', lease: manyLease(100 + i, base + 3) });
    await journal.flush();
  }
  t.is(journal.stats().compactions, 1, 'only the compaction at open has been installed');
  // A crash now leaves the journal as it is on disk: every acknowledged change is in it.
  const onDisk = new Map((await loadLeaseFile(file)).leases.map((l) => [l.key, l]));
  t.is(onDisk.get(manyLease(1, 0).key)?.expiresAt, base + 1);
  for (let i = 0; i < 10; i++) t.is(onDisk.get(manyLease(100 + i, 0).key)?.expiresAt, base + 3);
  release();
  t.true(await untilCompacted(journal, 1), 'the compaction was installed');
  journal.record({ op: 'put', lease: manyLease(200, base + 4) });
  await journal.flush();
  await journal.close();
  const after = new Map((await loadLeaseFile(file)).leases.map((l) => [l.key, l]));
  t.is(after.size, 5000);
  for (let i = 0; i < 10; i++) t.is(after.get(manyLease(100 + i, 0).key)?.expiresAt, base + 3, 'acknowledged during the compaction');
  t.is(after.get(manyLease(200, 0).key)?.expiresAt, base + 4, 'appended after it');
  t.deepEqual(
    (await readdir(dir)).filter((n) => n.endsWith('.tmp')),
    [],
    'no temp file left',
  );
});

test('journal: each append reports its time (write and fdatasync) for /metrics', async (t) => {
  const dir = await tempDir(t);
  const times: number[] = [];
  const journal = await openLeaseJournal({ file: path.join(dir, 'leases.json'), log: createSilentLogger(), onWrite: (s) => times.push(s) });
  t.deepEqual(times, [], 'the compaction at open is no append');
  for (let i = 0; i < 3; i++) {
    journal.record({ op: 'put', lease: manyLease(i, A.expiresAt) });
    await journal.flush();
  }
  await journal.close();
  t.is(times.length, 3);
  t.true(
    times.every((s) => s > 0 && s < 10),
    JSON.stringify(times),
  );
});

test('journal: a compaction writes the table as it is, from the lines recorded (a lease moved or dropped is not written stale)', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'leases.json');
  const base = Date.parse('2026-01-01T01:00:00.000Z');
  const journal = await openLeaseJournal({ file, log: createSilentLogger(), compactFactor: 1 });
  const k = manyLease(1, base);
  // Another client's put on k's address takes it out of the table; a drop removes one.
  journal.record({ op: 'put', lease: k });
  journal.record({ op: 'put', lease: { ...manyLease(2, base), ip: k.ip } });
  journal.record({ op: 'put', lease: manyLease(3, base) });
  journal.record({ op: 'drop', key: manyLease(3, 0).key });
  for (let i = 10; i < 5000; i++) journal.record({ op: 'put', lease: manyLease(i, base) });
  journal.record({ op: 'put', lease: manyLease(10, base + 7) });
  await journal.flush();
  t.true(await untilCompacted(journal, 1), 'compacted');
  await journal.close();
  const lines = (await readFile(file, 'utf8')).trim().split('\n');
  t.is(lines.length, 1 + 4990 + 1, 'one line per live lease');
  const loaded = new Map((await loadLeaseFile(file)).leases.map((l) => [l.key, l]));
  t.false(loaded.has(k.key));
  t.false(loaded.has(manyLease(3, 0).key));
  t.is(loaded.get(manyLease(2, 0).key)?.ip, k.ip);
  t.is(loaded.get(manyLease(10, 0).key)?.expiresAt, base + 7);
});

test('journal: an offer is held in memory only; a binding is journaled', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'leases.json');
  const journal = await openLeaseJournal({ file, log: createSilentLogger() });
  const base = Date.parse('2026-01-01T01:00:00.000Z');
  journal.record({ op: 'put', lease: { ...manyLease(1, base), state: 'offered', bound: false } });
  journal.record({ op: 'put', lease: { ...manyLease(2, base), state: 'offered', bound: false } });
  journal.record({ op: 'put', lease: manyLease(2, base + 1) });
  await journal.close();
  t.is(journal.stats().appends, 1);
  t.deepEqual((await loadLeaseFile(file)).leases, [manyLease(2, base + 1)]);
});

test('a torn last line (crash mid-append) is ignored with a warning; the records before it survive', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'leases.json');
  const journal = await openLeaseJournal({ file, log: createSilentLogger() });
  journal.record({ op: 'put', lease: A });
  await journal.close();
  await appendFile(file, '{"op":"put","key":"mac:52:54');
  const { log, lines } = captureLogger();
  const again = await openLeaseJournal({ file, log });
  t.deepEqual(again.loaded.leases, [A]);
  t.true(lines.some((l) => l['level'] === 40 && String(l['msg']).includes('half-written')));
  await again.close();
  t.false((await readFile(file, 'utf8')).includes('mac:52:54"'), 'compacted without the torn line');
});

for (const [name, content] of [
  ['corrupt', '{"version":2,"journal":"netboot-appliance leases"}\n{"op":"put","key":"mac:x"}\n'],
  ['empty', ''],
  ['garbage', '\u0000\u0000\u0000\n'],
] as const) {
  test(`${name} lease file: moved aside with an error and the server starts with an empty table`, async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'leases.json');
    await writeFile(file, content);
    const { log, lines } = captureLogger();
    const journal = await openLeaseJournal({ file, log, now: () => Date.parse('2026-12-01T12:00:00.000Z') });
    t.deepEqual(journal.loaded, { leases: [], declined: [] });
    await journal.close();
    const aside = path.join(dir, 'leases.json.corrupt-2026-12-01T12-00-00-000Z');
    t.is(await readFile(aside, 'utf8'), content, 'the old bytes are kept for the operator');
    const error = lines.find((l) => l['level'] === 50);
    t.like(error, { file, movedTo: aside });
    t.deepEqual(await loadLeaseFile(file), { leases: [], declined: [] });
  });
}

test('a version 1 lease file (earlier releases) is read and rewritten as a journal', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'leases.json');
  await writeFile(file, serializeLeases(SNAP));
  const journal = await openLeaseJournal({ file, log: createSilentLogger(), now: () => Date.parse('2026-01-01T00:00:00.000Z') });
  const byIp = (l: Lease[]) => [...l].sort((x, y) => x.ip.localeCompare(y.ip));
  t.deepEqual(byIp(journal.loaded.leases), SNAP.leases);
  t.deepEqual(journal.loaded.declined, SNAP.declined);
  await journal.close();
  t.regex(await readFile(file, 'utf8'), /^\{"version":2/);
  t.deepEqual(byIp((await loadLeaseFile(file)).leases), SNAP.leases);
});

test('a lease file that cannot be read is ERR_LEASE_FILE; loadLeaseFile names the broken line', async (t) => {
  const dir = await tempDir(t);
  await t.throwsAsync(openLeaseJournal({ file: dir, log: createSilentLogger() }), { code: 'ERR_LEASE_FILE' } as never);
  const file = path.join(dir, 'leases.json');
  await writeFile(file, '{"version":2}\n{"op":"put"}\n');
  const err = await t.throwsAsync(loadLeaseFile(file));
  t.true(hasCode(err, 'ERR_LEASE_FILE'));
  t.regex(err!.message, /line 2/);
});
