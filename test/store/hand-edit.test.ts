import test, { type ExecutionContext } from 'ava';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createSilentLogger } from '../../src/log.js';
import { writeTempFileSynced, type WriteTempFile } from '../../src/store/durable-json-file.js';
import { openFileStore, type LegacyMachineState } from '../../src/store/file-store.js';
import { dbJsonSchema, MAX_REPORTED_ISSUES } from '../../src/store/schema.js';
import { captureLogger, tempDir, waitFor } from './helpers.js';

const profile = (id: string) => ({ id, kernel: `/assets/${id}/vmlinuz` });

/** A file store on db.json in a fresh temp dir (not watched), its log lines captured; torn down with `t`. */
async function openLoggedStore(t: ExecutionContext) {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const { log, lines } = captureLogger();
  const store = await openFileStore({ path: file, log, watch: false });
  t.teardown(() => store.close());
  return { file, store, lines };
}

test('a new db.json carries "$schema" and the schema file beside it', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const store = await openFileStore({ path: path.join(dir, 'db.json'), log: createSilentLogger(), watch: false });
  t.teardown(() => store.close());
  const db = JSON.parse(await readFile(path.join(dir, 'db.json'), 'utf8'));
  t.is(db.$schema, './appliance-db.schema.json');
  t.deepEqual(JSON.parse(await readFile(path.join(dir, 'appliance-db.schema.json'), 'utf8')), dbJsonSchema());
});

test('a broken hand edit is reported with line and column, every problem, machines by MAC', async (t) => {
  const { file, store, lines } = await openLoggedStore(t);

  await writeFile(file, '{\n  "profiles": [\n    { "id": "a", "kernel": "/assets/a" },\n  ]\n}\n');
  t.is(await store.reload(), 'refused');
  t.regex(store.status().error!, /db\.json:4:3: not valid JSON/);

  const text = [
    '{',
    '  "profiles": [ { "id": "p", "kernel": "/assets/p" } ],',
    '  "machines": [',
    '    { "mac": "52:54:00:00:00:01", "profile": "p" },',
    '    {',
    '      "mac": "52:54:00:00:00:02",',
    '      "profile": "ghost",',
    '      "colour": "red"',
    '    }',
    '  ],',
    '  "groups": [ { "id": "g", "profile": "p", "selector": { "arch": "not valid!" } } ]',
    '}',
    '',
  ].join('\n');
  await writeFile(file, text);
  t.is(await store.reload(), 'refused');
  const error = store.status().error!;
  t.regex(error, /3 problems/);
  t.regex(error, /db\.json:7:7: machines\[52:54:00:00:00:02\]\.profile: profile "ghost" does not exist/);
  t.regex(error, /db\.json:8:7: machines\[52:54:00:00:00:02\]: unknown field "colour"/);
  t.regex(error, /db\.json:11:\d+: groups\.0\.selector\.arch/);
  const logged = lines.find(
    (l) => l.msg === 'database file refused; keeping the last good state' && Array.isArray(l.issues) && (l.issues as unknown[]).length === 3,
  );
  t.truthy(logged);
  t.is(logged!.line, 7);
  // The last good state keeps serving.
  t.truthy(await store.getProfile('rancheros'));
});

test('a hand edit with more problems than the bound lists the first ones and says how many there are', async (t) => {
  const { file, store, lines } = await openLoggedStore(t);
  const broken = 30;
  const machines = Array.from({ length: broken }, (_, i) => ({ mac: `52:54:00:00:01:${i.toString(16).padStart(2, '0')}`, profile: 'ghost' }));
  await writeFile(file, JSON.stringify({ profiles: [profile('p')], machines }, null, 2));
  t.is(await store.reload(), 'refused');
  const error = store.status().error!;
  t.regex(error, new RegExp(`^${broken} problems \\(${MAX_REPORTED_ISSUES} shown\\): `));
  t.is(error.match(/profile "ghost" does not exist/g)?.length, MAX_REPORTED_ISSUES);
  t.regex(error, /db\.json:\d+:\d+: machines\[52:54:00:00:01:00\]\.profile/);
  const logged = lines.find((l) => l.msg === 'database file refused; keeping the last good state');
  t.is(logged?.total, broken);
  t.is((logged?.issues as unknown[]).length, MAX_REPORTED_ISSUES);
});

test('a hand edit naming a template that does not exist is refused; an API write too', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const templates = path.join(dir, 'templates');
  await mkdir(templates);
  await writeFile(path.join(templates, 'there.njk'), '#!ipxe\n');
  const file = path.join(dir, 'db.json');
  const store = await openFileStore({
    path: file,
    log: createSilentLogger(),
    watch: false,
    templatesDir: templates,
    defaults: { profiles: [], machines: [], groups: [] },
  });
  t.teardown(() => store.close());
  await writeFile(
    file,
    JSON.stringify(
      {
        profiles: [
          { ...profile('a'), ipxe: 'there.njk' },
          { ...profile('b'), cloudConfig: 'missing.njk' },
        ],
      },
      null,
      2,
    ),
  );
  t.is(await store.reload(), 'refused');
  t.regex(store.status().error!, /db\.json:\d+:\d+: profiles\.1\.cloudConfig: profile b: template missing\.njk does not exist/);
  await writeFile(file, JSON.stringify({ profiles: [{ ...profile('a'), ipxe: 'there.njk' }] }));
  t.is(await store.reload(), 'reloaded');
  await t.throwsAsync(store.putProfile({ ...profile('c'), ignition: 'nope.ign' }), { code: 'ERR_VALIDATION', message: /template nope\.ign does not exist/ });
  t.is(await store.getProfile('c'), undefined);
});

test('an API write never overwrites a hand edit that landed while it was in flight: 409, the edit loaded, a log line', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  let editDuringWrite = false;
  // The seam runs after the database was read for this write and before the rename: exactly
  // when an editor's save would otherwise be lost.
  const writeTemp: WriteTempFile = async (tmp, data, mode) => {
    if (editDuringWrite) {
      editDuringWrite = false;
      const db = JSON.parse(await readFile(file, 'utf8'));
      db.profiles.push(profile('by-hand'));
      await writeFile(`${file}.swp`, JSON.stringify(db, null, 2));
      await rename(`${file}.swp`, file);
    }
    return writeTempFileSynced(tmp, data, mode);
  };
  const { log, lines } = captureLogger();
  const store = await openFileStore({ path: file, log, watch: false, writeTemp });
  t.teardown(() => store.close());
  editDuringWrite = true;
  await t.throwsAsync(store.putProfile(profile('by-api')), { code: 'ERR_STORE_CONFLICT' });
  const onDisk = JSON.parse(await readFile(file, 'utf8'));
  t.true(onDisk.profiles.some((p: { id: string }) => p.id === 'by-hand'));
  t.truthy(await store.getProfile('by-hand'));
  t.is(await store.getProfile('by-api'), undefined);
  t.true(
    lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('a hand edit of the database landed while an API write was in flight') && l.level === 40),
  );
  // The retry succeeds and keeps the hand edit.
  await store.putProfile(profile('by-api'));
  const after = JSON.parse(await readFile(file, 'utf8'));
  t.deepEqual(after.profiles.map((p: { id: string }) => p.id).sort(), ['by-api', 'by-hand', 'debian-installer', 'rancheros']);
});

test('hand edits at 10 writes/s while the API writes: none is lost', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  const store = await openFileStore({ path: file, log: createSilentLogger(), debounceMs: 20, pollMs: 0 });
  t.teardown(() => store.close());
  let stop = false;
  let apiOk = 0;
  let conflicts = 0;
  const api = (async () => {
    for (let i = 0; !stop && i < 400; i++) {
      try {
        await store.putMachine({ mac: `52:54:00:00:01:${(i & 255).toString(16).padStart(2, '0')}`, hostname: `api-${i}` });
        apiOk++;
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_STORE_CONFLICT') conflicts++;
        else throw err;
      }
    }
  })();
  for (let i = 0; i < 30; i++) {
    // An editor: read, change, save with a rename (what vim and VS Code do).
    const db = JSON.parse(await readFile(file, 'utf8'));
    db.profiles.push(profile(`hand-${i}`));
    await writeFile(`${file}.${i}.swp`, JSON.stringify(db, null, 2));
    await rename(`${file}.${i}.swp`, file);
    await new Promise((r) => setTimeout(r, 100));
  }
  stop = true;
  await api;
  const final = JSON.parse(await readFile(file, 'utf8'));
  const ids = new Set(final.profiles.map((p: { id: string }) => p.id));
  for (let i = 0; i < 30; i++) t.true(ids.has(`hand-${i}`), `hand edit ${i} lost`);
  t.true(await waitFor(async () => (await store.getProfile('hand-29')) !== undefined));
  t.true(apiOk > 0);
  t.log(`api writes ${apiOk}, refused with 409: ${conflicts}`);
});

test('an older db.json holding runtime state is migrated once: facts and discovered machines leave the file', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const file = path.join(dir, 'db.json');
  await writeFile(
    file,
    JSON.stringify({
      profiles: [profile('p')],
      machines: [
        { mac: '52:54:00:00:00:01', profile: 'p', facts: { n: 1 }, factsAt: '2026-01-01T00:00:00.000Z', lastSeenIp: '10.0.0.1' },
        { mac: '52:54:00:00:00:02', state: 'discovered', discoveredAt: '2026-01-01T00:00:00.000Z', uuid: '11111111-2222-3333-4444-555555555555' },
      ],
    }),
  );
  const moved: LegacyMachineState[] = [];
  const store = await openFileStore({ path: file, log: createSilentLogger(), watch: false, migrate: async (r) => void moved.push(...r) });
  t.teardown(() => store.close());
  t.deepEqual(
    moved.map((m) => [m.mac, m.discovered]),
    [
      ['52:54:00:00:00:01', false],
      ['52:54:00:00:00:02', true],
    ],
  );
  t.deepEqual(moved[0]!.facts, { n: 1 });
  t.deepEqual(JSON.parse(await readFile(file, 'utf8')).machines, [{ mac: '52:54:00:00:00:01', profile: 'p' }]);
  t.deepEqual(await store.listMachines(), [{ mac: '52:54:00:00:00:01', profile: 'p' }]);
});
