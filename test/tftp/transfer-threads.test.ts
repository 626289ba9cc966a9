/**
 * Transfer threads (src/tftp/transfer-threads.ts) in a real server: transfers alternate between a
 * thread and the main thread, curl reads the same bytes from both, every line and event is written
 * on the main thread, and the threads end with the server. The behaviours of a transfer on a thread
 * are checked by server-threads.test.ts, limits-threads.test.ts and interop-threads.test.ts.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { transferThreadCount } from '../../src/tftp/transfer-threads.js';
import { sha256, startServer, tempDir, waitFor } from './helpers.js';

const run = promisify(execFile);

test('transferThreadCount: 0 is one per core, at most 4; a setting is taken as given', (t) => {
  t.is(transferThreadCount(0, 1), 1);
  t.is(transferThreadCount(0, 2), 2);
  t.is(transferThreadCount(0, 64), 4);
  t.is(transferThreadCount(1, 8), 1);
  t.is(transferThreadCount(3, 2), 3);
});

test('curl downloads alternate between a thread and the main thread; lines and events are the main thread’s, with the client', async (t) => {
  const s = await startServer({ threads: 2 });
  t.teardown(() => s.close());
  const dir = await tempDir('tftp-threads-');
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const content = await s.put('ipxe.efi', 300_001);
  for (let i = 0; i < 4; i++) {
    const out = path.join(dir, `out${i}`);
    await run('curl', ['--silent', '--show-error', '--max-time', '30', '--tftp-blksize', '1468', '-o', out, `tftp://127.0.0.1:${s.port}/ipxe.efi`]);
    t.is(sha256(await readFile(out)), sha256(content), `download ${i}`);
  }
  t.true(await waitFor(() => s.logs.filter((l) => l.msg === 'tftp transfer complete').length === 4));
  t.is(s.server.stats().threads.handedOver, 2, 'the first and the third went to the thread');
  t.is(s.server.stats().threads.running, 1);
  for (const line of s.logs.filter((l) => l.msg === 'tftp transfer complete')) {
    t.like(line, { subsystem: 'tftp', file: 'ipxe.efi', bytes: 300_001, blksize: 1468 });
    t.regex(String(line.client), /^127\.0\.0\.1:\d+$/);
  }
  t.is(s.events.list().filter((e) => e.type === 'tftp-file').length, 4);
  t.is(s.server.stats().transfers, 0);
});

test('the threads end with the server, and a restarted server starts new ones', async (t) => {
  const s = await startServer({ threads: 3 });
  t.teardown(() => s.close());
  t.is(s.server.stats().threads.running, 2, 'started with the server');
  await s.server.stop();
  t.is(s.server.stats().threads.running, 0);
  const { port } = await s.server.start();
  const content = await s.put('f', 5000);
  const dir = await tempDir('tftp-threads-');
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await run('curl', ['--silent', '--show-error', '--max-time', '30', '-o', path.join(dir, 'f'), `tftp://127.0.0.1:${port}/f`]);
  t.is(sha256(await readFile(path.join(dir, 'f'))), sha256(content));
  t.is(s.server.stats().threads.handedOver, 1);
});

test('a socket factory keeps every transfer on the main thread (its sockets cannot move)', async (t) => {
  const dgram = await import('node:dgram');
  const s = await startServer({ threads: 2, socketFactory: () => dgram.createSocket('udp4') });
  t.teardown(() => s.close());
  t.is(s.server.stats().threads.running, 0);
});
