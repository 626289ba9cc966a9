/** The --log-file sink (src/log-file.ts): asynchronous, batched, complete after flush, reopened for logrotate. */
import test from 'ava';
import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOG_FILE_QUEUE_BYTES, openLogFile } from '../src/log-file.js';

function tempFile(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'log-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'appliance.log');
}

test('lines are written after write() returns, in order, all of them once flush() resolves', async (t) => {
  const path = tempFile(t);
  const errors: unknown[] = [];
  const sink = openLogFile(path, (err) => errors.push(err));
  for (let i = 0; i < 5000; i++) sink.write(`line ${i}\n`);
  // Asynchronous: nothing (or only the first batch's start) is on disk in the same tick.
  t.true(readFileSync(path, 'utf8').length < 5000 * 'line 0000\n'.length);
  await sink.flush();
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  t.is(lines.length, 5000);
  t.deepEqual(
    lines,
    Array.from({ length: 5000 }, (_, i) => `line ${i}`),
  );
  t.deepEqual(errors, []);
});

test('flush() with nothing queued resolves; an existing file is appended to', async (t) => {
  const path = tempFile(t);
  const first = openLogFile(path, () => undefined);
  await first.flush();
  first.write('one\n');
  await first.flush();
  const second = openLogFile(path, () => undefined);
  second.write('two\n');
  await second.flush();
  t.is(readFileSync(path, 'utf8'), 'one\ntwo\n');
});

test('reopen() after logrotate moved the file: lines before it stay in the old file, lines after go to a new one', async (t) => {
  const path = tempFile(t);
  const sink = openLogFile(path, () => undefined);
  for (let i = 0; i < 100; i++) sink.write(`old ${i}\n`);
  renameSync(path, `${path}.1`);
  sink.reopen();
  for (let i = 0; i < 100; i++) sink.write(`new ${i}\n`);
  await sink.flush();
  const old = readFileSync(`${path}.1`, 'utf8');
  const fresh = readFileSync(path, 'utf8');
  t.is(old.trimEnd().split('\n').length, 100);
  t.false(old.includes('new '));
  t.is(fresh.trimEnd().split('\n').length, 100);
  t.false(fresh.includes('old '));
});

test('a reopen that fails keeps the old file and reports it; logging goes on', async (t) => {
  const path = tempFile(t);
  const errors: Array<{ code?: string; what: string }> = [];
  const sink = openLogFile(path, (err, what) => errors.push({ ...(err.code !== undefined ? { code: err.code } : {}), what }));
  sink.write('before\n');
  await sink.flush();
  // The directory is gone: the file cannot be created again.
  rmSync(join(path, '..'), { recursive: true, force: true });
  sink.reopen();
  sink.write('after\n');
  await sink.flush();
  t.deepEqual(errors, [{ code: 'ENOENT', what: 'reopen' }]);
});

test('flushSync() writes what is queued at once (the exit handler)', (t) => {
  const path = tempFile(t);
  const sink = openLogFile(path, () => undefined);
  sink.write('a\n');
  sink.write('b\n');
  sink.write('c\n');
  sink.flushSync();
  // 'a' may still be in flight asynchronously; the queued lines are on disk now.
  t.regex(readFileSync(path, 'utf8'), /b\nc\n/);
});

test('a disk that does not keep up costs bounded memory: lines past the queue limit are dropped and counted in the file', async (t) => {
  const path = tempFile(t);
  const sink = openLogFile(path, () => undefined);
  const line = `${'x'.repeat(1023)}\n`;
  const count = Math.ceil(LOG_FILE_QUEUE_BYTES / line.length) + 100;
  for (let i = 0; i < count; i++) sink.write(line);
  await sink.flush();
  sink.write('next\n');
  await sink.flush();
  const text = readFileSync(path, 'utf8');
  const kept = text.split('\n').filter((l) => l.startsWith('xxx')).length;
  t.true(kept < count, 'some lines were dropped');
  const notice = /"msg":"(\d+) log lines dropped: the log file did not keep up"/.exec(text);
  t.truthy(notice);
  t.is(Number(notice![1]) + kept, count);
  t.true(text.endsWith('next\n'));
});

test('a lone line reaches the file without a flush, after a short wait for company', async (t) => {
  const path = tempFile(t);
  const sink = openLogFile(path, () => undefined);
  sink.write('alone\n');
  t.is(readFileSync(path, 'utf8'), '', 'not written in the same tick');
  for (let i = 0; i < 100 && readFileSync(path, 'utf8') === ''; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  t.is(readFileSync(path, 'utf8'), 'alone\n');
  // Lines that came while a write was in flight follow without a flush too.
  for (let i = 0; i < 3; i++) sink.write(`more ${i}\n`);
  for (let i = 0; i < 100 && readFileSync(path, 'utf8').split('\n').length < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  t.is(readFileSync(path, 'utf8'), 'alone\nmore 0\nmore 1\nmore 2\n');
});
