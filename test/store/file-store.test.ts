import test from 'ava';
import { readFile, rename, stat, writeFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { createSilentLogger } from '../../src/log.js';
import { openFileStore } from '../../src/store/file-store.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { writeTempFileSynced, type WriteTempFile } from '../../src/store/durable-json-file.js';
import { captureLogger, tempDir, waitFor } from './helpers.js';

const profile = (id: string) => ({ id, kernel: `/assets/${id}/vmlinuz`, initrd: [`/assets/${id}/initrd`] });

test('creates a missing file with the defaults (rancheros) and reads it back', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'sub', 'appliance.db.json');
  const { log, lines } = captureLogger();
  const store = await openFileStore({ path: file, log, watch: false });
  t.teardown(() => store.close());
  const onDisk = JSON.parse(await readFile(file, 'utf8'));
  t.deepEqual(onDisk, createDefaultDb());
  t.is(await store.getDefaultProfileId(), 'rancheros');
  t.true(lines.some((l) => l.msg === 'database file did not exist; created it with defaults'));
  // A second open sees the same state.
  const again = await openFileStore({ path: file, log: createSilentLogger(), watch: false });
  t.deepEqual(await again.snapshot(), await store.snapshot());
  await again.close();
});

test('an invalid file at start is refused with the field named', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  await writeFile(file, JSON.stringify({ profiles: [{ id: 'x', kernel: 'nope' }] }));
  const err = await t.throwsAsync(openFileStore({ path: file, log: createSilentLogger(), watch: false }));
  t.is((err as { code?: string }).code, 'ERR_VALIDATION');
  t.regex(err!.message, /profiles\.0\.kernel/);
  await writeFile(file, '{ "profiles": [ ');
  await t.throwsAsync(openFileStore({ path: file, log: createSilentLogger(), watch: false }), { code: 'ERR_STORE_BAD_JSON' });
});

test('API writes persist to disk; 200 concurrent puts are all present afterwards', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const store = await openFileStore({ path: file, log: createSilentLogger(), watch: false });
  t.teardown(() => store.close());
  await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      store.putMachine({ mac: `52:54:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, hostname: `node${i}` }),
    ),
  );
  t.is((await store.listMachines()).length, 200);
  const onDisk = JSON.parse(await readFile(file, 'utf8')) as { machines: unknown[] };
  t.is(onDisk.machines.length, 200);
  // No temp files left behind.
  t.deepEqual((await readdir(dir)).sort(), ['appliance-db.schema.json', 'db.json']);
});

test('a failed write leaves the previous file intact and the state unchanged', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  let fail = false;
  // Simulate a crash mid-write: half the bytes reach the temp file, then the write errors.
  const writeTemp: WriteTempFile = async (tmp, data, mode) => {
    if (!fail) return writeTempFileSynced(tmp, data, mode);
    await writeFile(tmp, data.slice(0, data.length / 2), { mode });
    throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
  };
  const store = await openFileStore({ path: file, log: createSilentLogger(), watch: false, writeTemp });
  t.teardown(() => store.close());
  await store.putProfile(profile('before'));
  const before = await readFile(file, 'utf8');
  fail = true;
  const err = await t.throwsAsync(store.putProfile(profile('after')));
  t.is((err as { code?: string }).code, 'ERR_STORE_WRITE');
  t.regex(err!.message, /previous file is unchanged/);
  t.is(await readFile(file, 'utf8'), before);
  t.is(await store.getProfile('after'), undefined);
  t.deepEqual((await readdir(dir)).sort(), ['appliance-db.schema.json', 'db.json']);
  fail = false;
  await store.putProfile(profile('after'));
  t.truthy(await store.getProfile('after'));
});

test('a hand edit is picked up without restart (editor-style rename)', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const store = await openFileStore({ path: file, log: createSilentLogger(), debounceMs: 30, pollMs: 0 });
  t.teardown(() => store.close());
  const db = JSON.parse(await readFile(file, 'utf8'));
  db.profiles.push(profile('handmade'));
  // Like vim/VS Code safe-write: new file, then rename over the old one.
  await writeFile(path.join(dir, '.db.json.swp'), JSON.stringify(db, null, 2));
  await rename(path.join(dir, '.db.json.swp'), file);
  t.true(await waitFor(async () => (await store.getProfile('handmade')) !== undefined), 'hand edit seen');
  // In-place write too.
  db.defaultProfile = 'handmade';
  await writeFile(file, JSON.stringify(db));
  t.true(await waitFor(async () => (await store.getDefaultProfileId()) === 'handmade'));
});

test('polling alone picks up an edit when fs events are off', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const store = await openFileStore({ path: file, log: createSilentLogger(), debounceMs: 10, pollMs: 50, fsEvents: false });
  t.teardown(() => store.close());
  const db = JSON.parse(await readFile(file, 'utf8'));
  db.profiles.push(profile('polled'));
  await writeFile(file, JSON.stringify(db));
  t.true(await waitFor(async () => (await store.getProfile('polled')) !== undefined));
});

test('a bad hand edit is refused with a log line naming the field; last good state keeps serving', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const { log, lines } = captureLogger();
  const store = await openFileStore({ path: file, log, debounceMs: 30, pollMs: 0 });
  t.teardown(() => store.close());
  const db = JSON.parse(await readFile(file, 'utf8'));
  db.profiles[0].initrd = ['/assets/ok', 'gopher://bad'];
  await writeFile(file, JSON.stringify(db));
  t.true(await waitFor(() => lines.some((l) => l.msg === 'database file refused; keeping the last good state')));
  const line = lines.find((l) => l.msg === 'database file refused; keeping the last good state')!;
  t.is(line.field, 'profiles.0.initrd.1');
  t.is((await store.getProfile('rancheros'))?.initrd[0], '/assets/rancheros/v1.5.8/initrd');
  t.false(store.status().ok);
  t.regex(store.status().error ?? '', /profiles\.0\.initrd\.1/);
  // API writes are refused rather than overwriting the operator's unfinished edit.
  await t.throwsAsync(store.putProfile(profile('api')), { code: 'ERR_STORE_FILE_INVALID' });
  t.regex(await readFile(file, 'utf8'), /gopher/);
  // Broken JSON is refused too.
  await writeFile(file, '{"profiles": [');
  t.true(await waitFor(() => lines.some((l) => l.code === 'ERR_STORE_BAD_JSON')));
  // Fixing the file brings it back.
  db.profiles[0].initrd = ['/assets/fixed'];
  await writeFile(file, JSON.stringify(db));
  t.true(await waitFor(async () => (await store.getProfile('rancheros'))?.initrd[0] === '/assets/fixed'));
  t.true(store.status().ok);
  await store.putProfile(profile('api'));
  t.truthy(await store.getProfile('api'));
});

test('an edit not yet seen by the watcher is merged before an API write, not overwritten', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const store = await openFileStore({ path: file, log: createSilentLogger(), watch: false });
  t.teardown(() => store.close());
  const db = JSON.parse(await readFile(file, 'utf8'));
  db.profiles.push(profile('by-hand'));
  await writeFile(file, JSON.stringify(db));
  await store.putProfile(profile('by-api'));
  const onDisk = JSON.parse(await readFile(file, 'utf8')) as { profiles: { id: string }[] };
  t.deepEqual(onDisk.profiles.map((p) => p.id).sort(), ['by-api', 'by-hand', 'debian-installer', 'rancheros']);
});

test('file mode is preserved across writes', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  await writeFile(file, '{}', { mode: 0o600 });
  const store = await openFileStore({ path: file, log: createSilentLogger(), watch: false });
  t.teardown(() => store.close());
  await store.putProfile(profile('x'));
  t.is((await stat(file)).mode & 0o777, 0o600);
});

test('temp files left by an interrupted write are removed at open; the db file is untouched', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const first = await openFileStore({ path: file, log: createSilentLogger(), watch: false });
  await first.close();
  const before = await readFile(file, 'utf8');
  await writeFile(path.join(dir, '.db.json.4242.deadbeef.tmp'), '{"half": ');
  await writeFile(path.join(dir, 'unrelated.tmp'), 'keep');
  const { log, lines } = captureLogger();
  const store = await openFileStore({ path: file, log, watch: false });
  t.teardown(() => store.close());
  t.deepEqual((await readdir(dir)).sort(), ['appliance-db.schema.json', 'db.json', 'unrelated.tmp']);
  t.is(await readFile(file, 'utf8'), before);
  t.true(lines.some((l) => l.temp === '.db.json.4242.deadbeef.tmp'));
});
