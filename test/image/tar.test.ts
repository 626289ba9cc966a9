import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TAR_BLOCK, decodeTarHeader, encodeTar, encodeTarHeader } from '../../src/image/tar.js';

const MTIME = 1_767_225_600;

test('GNU tar lists and extracts what encodeTar writes (modes, owner, mtime, long names)', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tar-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const long = `${'d'.repeat(80)}/${'e'.repeat(60)}/file.txt`;
  const archive = encodeTar([
    { entry: { name: 'usr/', type: 'directory', mode: 0o755, mtime: MTIME } },
    { entry: { name: 'usr/run.sh', type: 'file', mode: 0o755, mtime: MTIME }, data: Buffer.from('#!/bin/sh\necho hi\n') },
    { entry: { name: long, type: 'file', mode: 0o600, mtime: MTIME }, data: Buffer.alloc(1000, 0x61) },
  ]);
  t.is(archive.length % TAR_BLOCK, 0);
  const file = path.join(dir, 'a.tar');
  writeFileSync(file, archive);
  const listing = execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', file], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
  t.regex(listing, /^drwxr-xr-x 0\/0 +0 2026-01-01 00:00:00 usr\/$/m);
  t.regex(listing, /^-rwxr-xr-x 0\/0 +18 2026-01-01 00:00:00 usr\/run\.sh$/m);
  t.regex(listing, new RegExp(`^-rw------- 0/0 +1000 2026-01-01 00:00:00 ${long}$`, 'm'));
  execFileSync('tar', ['-xf', file, '-C', dir]);
  t.is(readFileSync(path.join(dir, 'usr/run.sh'), 'utf8'), '#!/bin/sh\necho hi\n');
  t.is(readFileSync(path.join(dir, long)).length, 1000);
});

test('decodeTarHeader inverts encodeTarHeader and rejects a corrupted header', (t) => {
  const entry = { name: 'a/b/c.json', type: 'file' as const, mode: 0o644, size: 1234, mtime: MTIME };
  const h = encodeTarHeader(entry);
  t.deepEqual(decodeTarHeader(h), entry);
  t.deepEqual(encodeTarHeader(decodeTarHeader(h)!), h);
  t.is(decodeTarHeader(Buffer.alloc(TAR_BLOCK)), undefined);
  h[0] = h[0]! ^ 1;
  t.throws(() => decodeTarHeader(h), { code: 'ERR_TAR_DECODE' } as never);
});

test('member names that escape the archive root are refused', (t) => {
  for (const name of ['/etc/passwd', '../x', 'a/../../b', '']) {
    t.throws(() => encodeTarHeader({ name, type: 'file', mode: 0o644, size: 0, mtime: 0 }), { code: 'ERR_TAR_FIELD' } as never, name);
  }
  t.throws(() => encodeTarHeader({ name: 'dir', type: 'directory', mode: 0o755, size: 0, mtime: 0 }), { code: 'ERR_TAR_FIELD' } as never);
});
