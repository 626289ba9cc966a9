import test from 'ava';
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createFileCache } from '../../src/tftp/file-cache.js';
import { locateFile, openLocated, type LocatedFile } from '../../src/tftp/files.js';
import { sha256, startServer, tempDir, tftpGet } from './helpers.js';

async function located(dir: string, name: string): Promise<LocatedFile> {
  const found = await locateFile(name, [dir]);
  if (found.kind !== 'located') throw new Error(`${name}: ${found.reason}`);
  return found;
}

async function load(cache: ReturnType<typeof createFileCache>, file: LocatedFile): Promise<Buffer> {
  const opened = await openLocated(file);
  if (opened.kind !== 'found') throw new Error(opened.reason);
  try {
    return await cache.load(file, opened.handle);
  } finally {
    await opened.handle.close();
  }
}

test('cache: hit after load; a file replaced in place or by rename is a miss; one version per path; LRU within the total bound', async (t) => {
  const dir = await tempDir();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const cache = createFileCache({ maxFileBytes: 1000, maxTotalBytes: 2500 });
  await writeFile(path.join(dir, 'a'), randomBytes(900));
  const a1 = await located(dir, 'a');
  t.is(cache.get(a1), undefined);
  const content = await load(cache, a1);
  t.is(cache.get(await located(dir, 'a')), content, 'the same buffer: served without a read');

  // A second miss that opened the file before the first read was kept (a storm's race): no second read.
  t.is(await load(cache, a1), content);
  t.is(cache.stats().loads, 1, 'a racing miss does not read the file again');

  // Replaced in place with other content of another size.
  await writeFile(path.join(dir, 'a'), randomBytes(800));
  t.is(cache.get(await located(dir, 'a')), undefined);
  await load(cache, await located(dir, 'a'));
  t.is(cache.stats().entries, 1, 'the old version of a is dropped');
  // Replaced by rename (new inode), same size.
  await writeFile(path.join(dir, 'a.new'), randomBytes(800));
  await rename(path.join(dir, 'a.new'), path.join(dir, 'a'));
  t.is(cache.get(await located(dir, 'a')), undefined);

  // Too large for the cache: never kept.
  await writeFile(path.join(dir, 'big'), randomBytes(1001));
  t.false(cache.fits(1001));

  for (const name of ['b', 'c', 'd']) {
    await writeFile(path.join(dir, name), randomBytes(1000));
    await load(cache, await located(dir, name));
  }
  t.true(cache.stats().bytes <= 2500);
  t.is(cache.get(await located(dir, 'b')), undefined, 'least recently used went first');
  t.truthy(cache.get(await located(dir, 'd')));
});

test('server: a storm of requests for one boot file reads it once; a replaced file is served fresh', async (t) => {
  const s = await startServer();
  t.teardown(() => s.close());
  const first = await s.put('snponly.efi', 200_000);
  const results = await Promise.all(
    Array.from({ length: 20 }, () =>
      tftpGet(s.port, 'snponly.efi', {
        options: [
          ['blksize', '1468'],
          ['windowsize', '4'],
        ],
      }),
    ),
  );
  for (const r of results) t.is(sha256(r.data), sha256(first));
  const stats = s.server.stats().cache;
  t.is(stats.entries, 1);
  t.is(stats.loads, 1, 'one read for the whole storm');
  const second = await s.put('snponly.efi', 150_000);
  t.is(sha256((await tftpGet(s.port, 'snponly.efi')).data), sha256(second));
});
