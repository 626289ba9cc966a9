import test from 'ava';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createSilentLogger } from '../../src/log.js';
import { openFileStore } from '../../src/store/file-store.js';
import { openStateStore, stateDirFor } from '../../src/store/state-store.js';
import { openTimeline } from '../../src/store/timeline.js';
import { captureLogger, tempDir } from './helpers.js';

const log = createSilentLogger();
const mac = (i: number) => `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;

test('one file per machine: a sighting or facts report writes that machine only, and survives a restart', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const state = await openStateStore({ dir, log, flushMs: 5 });
  for (let i = 0; i < 120; i++) state.sighted({ mac: mac(i), ip: '10.0.0.9' }, false);
  await state.flush();
  t.is((await readdir(path.join(dir, 'machines'))).length, 120);
  const other = path.join(dir, 'machines', '020000000001.json');
  const before = await stat(other);
  await new Promise((r) => setTimeout(r, 20));
  t.is(await state.putFacts(mac(0), { cpu: { count: 2 } }, '10.0.0.7', false), 'updated');
  state.sighted({ mac: mac(0), profile: 'rancheros' }, false);
  await state.flush();
  // Machine 1's file was not rewritten for machine 0's report.
  t.is((await stat(other)).mtimeMs, before.mtimeMs);
  t.deepEqual(JSON.parse(await readFile(path.join(dir, 'facts', '020000000000.json'), 'utf8')), { cpu: { count: 2 } });
  await state.close();

  const again = await openStateStore({ dir, log });
  t.is(again.list().length, 120);
  t.like(again.get(mac(0)), { discovered: true, lastIp: '10.0.0.7', lastProfile: 'rancheros' });
  t.deepEqual(await again.getFacts(mac(0)), { cpu: { count: 2 } });
  t.true(await again.delete(mac(0)));
  await again.flush();
  t.false((await readdir(path.join(dir, 'machines'))).includes('020000000000.json'));
  t.false((await readdir(path.join(dir, 'facts'))).includes('020000000000.json'));
});

test('bounds: facts per machine, facts in total, discovered machines; declared machines are never capped', async (t) => {
  const state = await openStateStore({ log, limits: { maxDiscovered: 2, maxFactsBytes: 100, maxTotalFactsBytes: 150 } });
  await t.throwsAsync(state.putFacts(mac(1), { blob: 'x'.repeat(200) }, undefined, false), { code: 'ERR_FACTS_TOO_LARGE' });
  t.is(state.get(mac(1)), undefined);
  t.is(await state.putFacts(mac(1), { blob: 'x'.repeat(60) }, undefined, false), 'registered');
  await t.throwsAsync(state.putFacts(mac(2), { blob: 'x'.repeat(80) }, undefined, false), { code: 'ERR_STATE_FULL' });
  // Replacing a machine's own facts counts only the difference.
  t.is(await state.putFacts(mac(1), { blob: 'y'.repeat(70) }, undefined, false), 'updated');
  t.is(state.sighted({ mac: mac(2) }, false), 'registered');
  t.is(state.sighted({ mac: mac(3) }, false), 'capped');
  t.is(state.sighted({ mac: mac(4) }, true), 'registered');
  state.discovery = false;
  t.is(state.sighted({ mac: mac(5) }, false), 'off');
  t.is(state.sighted({ mac: mac(6) }, true), 'registered');
  t.deepEqual(await state.deleteDiscovered((m) => m === mac(4) || m === mac(6)), [mac(1), mac(2)]);
});

test('the discovered-machine cap warns once a minute; the next warning counts the machines kept out in between', async (t) => {
  const { log: clog, lines } = captureLogger();
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const state = await openStateStore({ log: clog, limits: { maxDiscovered: 1 }, now: () => new Date(clock) });
  t.is(state.sighted({ mac: mac(1) }, false), 'registered');
  for (let i = 2; i < 12; i++) t.is(state.sighted({ mac: mac(i) }, false), 'capped');
  const warnings = () => lines.filter((l) => String(l['msg']).startsWith('discovered-machine cap (1) reached'));
  t.is(warnings().length, 1);
  t.like(warnings()[0], { mac: mac(2), cap: 1 });
  t.false('suppressed' in warnings()[0]!);
  clock += 59_000;
  state.sighted({ mac: mac(12) }, false);
  t.is(warnings().length, 1, 'still inside the minute');
  clock += 1_000;
  state.sighted({ mac: mac(13) }, false);
  t.is(warnings().length, 2);
  // mac(3)..mac(12) were kept out without a line of their own.
  t.like(warnings()[1], { mac: mac(13), suppressed: 10 });
});

test('a failing state write is reported by status() and never throws at a sighting', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const { log: clog, lines } = captureLogger();
  const state = await openStateStore({ dir, log: clog, flushMs: 5 });
  await rm(path.join(dir, 'machines'), { recursive: true });
  await writeFile(path.join(dir, 'machines'), 'not a directory');
  await rm(path.join(dir, 'facts'), { recursive: true });
  await writeFile(path.join(dir, 'facts'), 'not a directory');
  t.notThrows(() => state.sighted({ mac: mac(1) }, false));
  await state.flush();
  t.false(state.status().ok);
  t.true(lines.some((l) => l.msg === 'machine state write failed'));
  await t.throwsAsync(state.putFacts(mac(2), { a: 1 }, undefined, false), { code: 'ERR_STORE_WRITE' });
  t.is(state.get(mac(2)), undefined);
});

test('boot traffic never touches db.json: 1,500 sightings and facts leave the operator file byte for byte', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const text = '{\n    "profiles": [],\n      "machines": [], "groups": []\n}\n';
  await writeFile(file, text);
  const store = await openFileStore({ path: file, log, watch: false });
  t.teardown(() => store.close());
  const state = await openStateStore({ dir: stateDirFor(file), log, flushMs: 5 });
  for (let i = 0; i < 1500; i++) state.sighted({ mac: mac(i % 120) }, (await store.getMachine(mac(i % 120))) !== undefined);
  await state.putFacts(mac(3), { n: 1 }, undefined, false);
  await state.flush();
  t.is(await readFile(file, 'utf8'), text);
  t.is(stateDirFor(file), path.join(dir, 'db.state'));
});

test('timeline: persisted, replayed after a restart, bounded by rotation', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const tl = await openTimeline({ dir, log, maxBytes: 20_000 });
  const seen: string[] = [];
  const off = tl.subscribe!((e) => seen.push(e.type));
  tl.record({ mac: mac(1), type: 'dhcp-refused', detail: { reason: 'pool exhausted' } });
  off();
  // addressTrusted (the DHCP side saw the pair) survives the restart: the replay teaches the maps again.
  tl.record({ mac: mac(1), type: 'http-script', ip: '10.0.0.5', addressTrusted: true, detail: { outcome: 'boot' } });
  t.deepEqual(seen, ['dhcp-refused']);
  await tl.close();
  const again = await openTimeline({ dir, log, maxBytes: 20_000 });
  t.deepEqual(
    again.list({ mac: mac(1) }).map((e) => e.type),
    ['dhcp-refused', 'http-script'],
  );
  t.is(again.macForIp('10.0.0.5'), mac(1));
  for (let i = 0; i < 2000; i++) again.record({ mac: mac(i % 50), type: 'tftp-file', detail: { file: 'undionly.kpxe' } });
  await again.flush();
  const sizes = await Promise.all(['timeline.jsonl', 'timeline.1.jsonl'].map((f) => stat(path.join(dir, f)).then((s) => s.size)));
  t.true(sizes[0]! + sizes[1]! <= 20_000 + 4096, String(sizes));
  t.true(again.status().ok);
  // A torn last line (crash mid-append) is skipped, not fatal.
  await writeFile(path.join(dir, 'timeline.jsonl'), '{"at":"2026-01-01T00:00:00.000Z","mac":"02:00:00:00:00:01","type":"facts"}\n{"at":"2026');
  const torn = await openTimeline({ dir, log });
  t.true(torn.list().some((e) => e.type === 'facts'));
});

test('first seen stays, last seen, last address and last profile follow the latest sighting or report, across a restart', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  let clock = Date.parse('2026-03-01T10:00:00.000Z');
  const now = () => new Date(clock);
  const state = await openStateStore({ dir, log, flushMs: 5, now });
  state.sighted({ mac: mac(1), ip: '10.0.0.5', profile: 'rancheros' }, false);
  clock += 60_000;
  state.sighted({ mac: mac(1), ip: '10.0.0.6', profile: 'debian-installer' }, false);
  clock += 60_000;
  await state.putFacts(mac(1), { cpu: { count: 4 } }, '10.0.0.7', false);
  await state.close();
  const again = await openStateStore({ dir, log, now });
  t.like(again.get(mac(1)), {
    firstSeen: '2026-03-01T10:00:00.000Z',
    lastSeen: '2026-03-01T10:02:00.000Z',
    lastIp: '10.0.0.7',
    lastProfile: 'debian-installer',
    factsAt: '2026-03-01T10:02:00.000Z',
  });
});
