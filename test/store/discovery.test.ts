import test from 'ava';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { createSilentLogger } from '../../src/log.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createDiscovery } from '../../src/store/discovery.js';
import { writeTempFileSynced, type WriteTempFile } from '../../src/store/durable-json-file.js';
import { openFileStore } from '../../src/store/file-store.js';
import { createMemoryStore } from '../../src/store/store.js';
import { captureLogger, tempDir } from './helpers.js';

const AT = '2026-01-02T03:04:05.000Z';
const UUID = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';

test('recordDiscoveries: register, update facts only, known, capped, uuid kept only when unique', async (t) => {
  const store = createMemoryStore(createDefaultDb());
  await store.putMachine({ mac: '52:54:00:00:00:01', uuid: UUID, hostname: 'a', profile: 'rancheros' });
  const out = await store.recordDiscoveries(
    [
      { mac: '52-54-00-00-00-01', at: AT, facts: { cpu: { count: 2 } }, ip: '10.0.0.1' },
      { mac: '52:54:00:00:00:02', at: AT, uuid: UUID.toUpperCase(), ip: '10.0.0.2' },
      { mac: '52:54:00:00:00:03', at: AT, uuid: 'bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee' },
      { mac: '52:54:00:00:00:04', at: AT },
      { mac: '52:54:00:00:00:01', at: AT },
    ],
    { cap: 2 },
  );
  t.deepEqual(out, ['updated', 'registered', 'registered', 'capped', 'known']);
  t.deepEqual(await store.getMachine('52:54:00:00:00:01'), { mac: '52:54:00:00:00:01', uuid: UUID, hostname: 'a', profile: 'rancheros', facts: { cpu: { count: 2 } }, factsAt: AT, lastSeenIp: '10.0.0.1' });
  // The UUID belongs to machine 01 already: the new record is registered without it.
  t.deepEqual(await store.getMachine('52:54:00:00:00:02'), { mac: '52:54:00:00:00:02', state: 'discovered', discoveredAt: AT, lastSeenIp: '10.0.0.2' });
  t.is((await store.getMachine('52:54:00:00:00:03'))?.uuid, 'bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee');
  t.is(await store.getMachine('52:54:00:00:00:04'), undefined);
  await t.throwsAsync(store.recordDiscoveries([{ mac: 'nope', at: AT }], { cap: 9 }), { message: /not a MAC/ });
  await t.throwsAsync(store.recordDiscoveries([{ mac: '52:54:00:00:00:09', at: AT, facts: { 'bad key': 1 } }], { cap: 9 }), { message: /^facts\.bad key: / });
  t.is(await store.getMachine('52:54:00:00:00:09'), undefined);
});

test('file store: sightings of known machines do not rewrite the file; registrations persist', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const store = await openFileStore({ path: file, log: createSilentLogger(), watch: false });
  t.teardown(() => store.close());
  t.deepEqual(await store.recordDiscoveries([{ mac: '52:54:00:00:00:01', at: AT, ip: '10.0.0.5' }], { cap: 10 }), ['registered']);
  const before = await stat(file);
  await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(await store.recordDiscoveries([{ mac: '52:54:00:00:00:01', at: AT }], { cap: 10 }), ['known']);
  t.is((await stat(file)).mtimeMs, before.mtimeMs);
  const onDisk = JSON.parse(await readFile(file, 'utf8')) as { machines: unknown[] };
  t.deepEqual(onDisk.machines, [{ mac: '52:54:00:00:00:01', state: 'discovered', discoveredAt: AT, lastSeenIp: '10.0.0.5' }]);
});

test('discovery: coalesces per MAC, a failed write rejects reports and changes nothing, cap is logged', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  let fail = false;
  const writeTemp: WriteTempFile = async (tmp, data, mode) => {
    if (fail) throw new Error('disk full');
    return writeTempFileSynced(tmp, data, mode);
  };
  const store = await openFileStore({ path: path.join(dir, 'db.json'), log: createSilentLogger(), watch: false, writeTemp });
  t.teardown(() => store.close());
  const { log, lines } = captureLogger();
  const discovery = createDiscovery({ store, log, cap: 1, batchMs: 10 });
  const [a, b, c] = await Promise.all([
    discovery.reportFacts('52:54:00:00:00:01', { n: 1 }, '10.0.0.1'),
    discovery.sighted({ mac: '52:54:00:00:00:01' }),
    discovery.reportFacts('52:54:00:00:00:01', { n: 2 }, '10.0.0.1'),
  ]);
  t.deepEqual([a, b, c], ['registered', 'registered', 'registered']);
  t.deepEqual((await store.getMachine('52:54:00:00:00:01'))?.facts, { n: 2 });
  t.true(lines.some((l) => l.msg === 'new machine discovered; registered with state discovered' && l.mac === '52:54:00:00:00:01'));

  t.is(await discovery.sighted({ mac: '52:54:00:00:00:02' }), 'capped');
  t.true(lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('discovered-machine cap (1) reached') && l.level === 40));
  await t.throwsAsync(discovery.reportFacts('52:54:00:00:00:02', { n: 1 }, undefined), { code: 'ERR_DISCOVERY_FULL' });

  fail = true;
  await t.throwsAsync(discovery.reportFacts('52:54:00:00:00:01', { n: 3 }, '10.0.0.1'), { code: 'ERR_STORE_WRITE' });
  t.deepEqual((await store.getMachine('52:54:00:00:00:01'))?.facts, { n: 2 });
  // A sighting never rejects, even when the write fails (a boot must not wait on the disk).
  const roomy = createDiscovery({ store, log, cap: 10, batchMs: 10 });
  t.is(await roomy.sighted({ mac: '52:54:00:00:00:03' }), 'dropped');
  t.is(await store.getMachine('52:54:00:00:00:03'), undefined);
  t.true(lines.some((l) => l.msg === 'could not store discovery updates'));
});
