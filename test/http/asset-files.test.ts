/** Files under the assets directory (src/http/asset-files.ts): the sha256 cache. */
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createDigestCache } from '../../src/http/asset-files.js';

test('digest cache: recomputed when the file changes, shared otherwise', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-digest-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'a.tar');
  await writeFile(file, 'one');
  const cache = createDigestCache();
  const a = await cache.sha256(file);
  t.is(a.sha256, createHash('sha256').update('one').digest('hex'));
  t.deepEqual(await cache.sha256(file), a);
  await writeFile(file, 'two!');
  const b = await cache.sha256(file);
  t.is(b.sha256, createHash('sha256').update('two!').digest('hex'));
  t.is(b.size, 4);
  await t.throwsAsync(cache.sha256(path.join(dir, 'missing')), { code: 'ENOENT' });
});

test('digest cache: bounded; past its bound the oldest files are forgotten and hashed again on request', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-digest-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const cache = createDigestCache(32);
  const files: string[] = [];
  for (let i = 0; i < 100; i++) {
    const file = path.join(dir, `f${i}.tar`);
    await writeFile(file, `content ${i}`);
    files.push(file);
    t.is((await cache.sha256(file)).sha256, createHash('sha256').update(`content ${i}`).digest('hex'));
    t.true(cache.size <= 32, `${cache.size} cached`);
  }
  // Trimmed in batches (bounded-map.ts): between 15/16 of the bound and the bound.
  t.true(cache.size >= 30, `${cache.size} cached`);
  // A forgotten file still answers, correctly, and is cached again within the bound.
  t.is((await cache.sha256(files[0]!)).sha256, createHash('sha256').update('content 0').digest('hex'));
  t.true(cache.size <= 32);
  // A changed file replaces its own entry rather than adding one.
  const before = cache.size;
  await writeFile(files[0]!, 'changed!');
  t.is((await cache.sha256(files[0]!)).sha256, createHash('sha256').update('changed!').digest('hex'));
  t.is(cache.size, before);
});
