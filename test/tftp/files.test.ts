import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BOOT_FILE_CATALOGUE } from '../../src/boot-catalogue.js';
import { findBootFiles } from '../../src/tftp/boot-files.js';

/** The x86 files Debian packages, keyed as the tests below name them. */
const BOOT_FILES = { bios: 'undionly.kpxe', efi64: 'snponly.efi', efi64Full: 'ipxe.efi' } as const;
import {
  createBufferReader,
  createIterableReader,
  createNetasciiReader,
  normalizeRequestName,
  openSource,
  resolveFile,
  type BlockReader,
} from '../../src/tftp/files.js';
import { tempDir } from './helpers.js';

const names: Array<[string, { kind: 'ok'; name: string } | { kind: 'refused'; code: 1 | 2 }]> = [
  ['undionly.kpxe', { kind: 'ok', name: 'undionly.kpxe' }],
  ['/undionly.kpxe', { kind: 'ok', name: 'undionly.kpxe' }],
  ['//boot//x.efi', { kind: 'ok', name: 'boot/x.efi' }],
  ['./a/./b', { kind: 'ok', name: 'a/b' }],
  ['boot\\x64\\wdsnbp.com', { kind: 'ok', name: 'boot/x64/wdsnbp.com' }],
  ['\\boot\\bcd', { kind: 'ok', name: 'boot/bcd' }],
  ['..', { kind: 'refused', code: 2 }],
  ['../etc/passwd', { kind: 'refused', code: 2 }],
  ['/../../etc/passwd', { kind: 'refused', code: 2 }],
  ['a/../../b', { kind: 'refused', code: 2 }],
  ['a/../b', { kind: 'refused', code: 2 }],
  ['..\\..\\etc\\passwd', { kind: 'refused', code: 2 }],
  ['a\\..\\..\\b', { kind: 'refused', code: 2 }],
  ['a\0b', { kind: 'refused', code: 2 }],
  ['', { kind: 'refused', code: 1 }],
  ['/', { kind: 'refused', code: 1 }],
  ['./', { kind: 'refused', code: 1 }],
  ['...', { kind: 'ok', name: '...' }],
  ['..a', { kind: 'ok', name: '..a' }],
];

for (const [raw, expected] of names) {
  test(`normalizeRequestName(${JSON.stringify(raw)})`, (t) => {
    const result = normalizeRequestName(raw);
    t.is(result.kind, expected.kind);
    if (expected.kind === 'ok' && result.kind === 'ok') t.is(result.name, expected.name);
    if (expected.kind === 'refused' && result.kind === 'refused') t.is(result.code, expected.code);
  });
}

test('resolveFile: root first, then fallback; symlinks inside ok, escaping refused; dirs and fifos refused', async (t) => {
  const base = await tempDir();
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const root = path.join(base, 'root');
  const fallback = path.join(base, 'fallback');
  const outside = path.join(base, 'outside');
  await mkdir(path.join(root, 'sub'), { recursive: true });
  await mkdir(fallback);
  await mkdir(outside);
  await writeFile(path.join(root, 'a.bin'), 'root-a');
  await writeFile(path.join(root, 'sub', 'b.bin'), 'root-b');
  await writeFile(path.join(fallback, 'a.bin'), 'fallback-a');
  await writeFile(path.join(fallback, 'only-fallback.bin'), 'fallback-only');
  await writeFile(path.join(outside, 'secret'), 'secret');
  await symlink(path.join(root, 'sub', 'b.bin'), path.join(root, 'link-inside'));
  await symlink(path.join(outside, 'secret'), path.join(root, 'link-out'));
  await symlink('../outside', path.join(root, 'dir-out'));
  // A package-managed system dir (not group/other-writable) may link out, as Debian's
  // /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi does; a world-writable one may not.
  await symlink(path.join(outside, 'secret'), path.join(fallback, 'fb-link-out'));
  const shared = path.join(base, 'shared');
  await mkdir(shared);
  await chmod(shared, 0o777);
  await chmod(fallback, 0o755);
  await symlink(path.join(outside, 'secret'), path.join(shared, 'shared-link-out'));
  await symlink('loop', path.join(root, 'loop'));
  execFileSync('mkfifo', [path.join(root, 'fifo')]);
  const dirs = [root, fallback, path.join(base, 'does-not-exist'), shared];

  const read = async (name: string): Promise<string> => {
    const r = await resolveFile(name, dirs);
    if (r.kind !== 'found') return `refused:${r.code}:${r.reason}`;
    const text = (await r.handle.readFile()).toString();
    await r.handle.close();
    return text;
  };
  t.is(await read('a.bin'), 'root-a');
  t.is(await read('sub/b.bin'), 'root-b');
  t.is(await read('only-fallback.bin'), 'fallback-only');
  t.is(await read('link-inside'), 'root-b');
  t.is(await read('link-out'), 'refused:2:symlink-escapes-root');
  t.is(await read('dir-out/secret'), 'refused:2:symlink-escapes-root');
  t.is(await read('fb-link-out'), 'secret');
  t.is(await read('shared-link-out'), 'refused:2:symlink-escapes-root');
  t.is(await read('loop'), 'refused:2:resolve-eloop');
  t.is(await read('sub'), 'refused:2:not-a-regular-file');
  t.is(await read('fifo'), 'refused:2:not-a-regular-file');
  t.is(await read('missing'), 'refused:1:not-found');
  t.is(await read('a.bin/x'), 'refused:1:not-found');
});

async function drain(reader: BlockReader, size: number): Promise<Buffer[]> {
  const blocks: Buffer[] = [];
  for (let i = 0; i < 10_000; i++) {
    const block = await reader.read(size);
    blocks.push(Buffer.from(block));
    if (block.length < size) break;
  }
  await reader.close();
  return blocks;
}

test('netascii reader: LF -> CR LF, CR -> CR NUL, across chunk boundaries', async (t) => {
  const input = Buffer.from('line1\nline2\r\nbare\rend\n', 'latin1');
  const expected = Buffer.from('line1\r\nline2\r\0\r\nbare\r\0end\r\n', 'latin1');
  for (const chunk of [1, 2, 3, 7, 1024]) {
    for (const block of [1, 4, 512]) {
      const blocks = await drain(createNetasciiReader(createBufferReader(input), chunk), block);
      t.deepEqual(Buffer.concat(blocks), expected, `chunk ${chunk} block ${block}`);
    }
  }
});

test('iterable reader cuts arbitrary chunks (strings and bytes) into exact blocks and ends', async (t) => {
  async function* gen(): AsyncGenerator<Uint8Array | string> {
    yield 'abc';
    yield new Uint8Array(0);
    yield Buffer.from('defgh');
    yield 'i';
  }
  const blocks = await drain(createIterableReader(gen()), 4);
  t.deepEqual(
    blocks.map((b) => b.toString()),
    ['abcd', 'efgh', 'i'],
  );
  const exact = await drain(
    createIterableReader(
      (async function* () {
        yield 'abcd';
      })(),
    ),
    4,
  );
  t.deepEqual(
    exact.map((b) => b.toString()),
    ['abcd', ''],
  );
});

test('openSource: buffer has its size; factory keeps declared size; close ends the iterator', async (t) => {
  const a = openSource(Buffer.from('hello'));
  t.is(a.size, 5);
  let finished = false;
  const b = openSource({
    size: 10,
    open: () =>
      (async function* () {
        try {
          yield 'x'.repeat(100);
          yield 'y';
        } finally {
          finished = true;
        }
      })(),
  });
  t.is(b.size, 10);
  t.is((await b.reader.read(4)).toString(), 'xxxx');
  await b.reader.close();
  t.true(finished);
});

test('findBootFiles: root beats system, missing reported, escaping symlink not counted', async (t) => {
  const base = await tempDir();
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const root = path.join(base, 'root');
  const system = path.join(base, 'system');
  await mkdir(root);
  await mkdir(system);
  await writeFile(path.join(root, BOOT_FILES.bios), 'x');
  await writeFile(path.join(system, BOOT_FILES.bios), 'y');
  await writeFile(path.join(system, BOOT_FILES.efi64), 'y');
  await writeFile(path.join(base, 'elsewhere.efi'), 'z');
  await symlink(path.join(base, 'elsewhere.efi'), path.join(root, BOOT_FILES.efi64Full));
  const found = findBootFiles(root, [path.join(base, 'nope'), system], BOOT_FILES);
  const by = Object.fromEntries(found.map((f) => [f.firmware, f]));
  t.is(by.bios?.source, 'tftp-root');
  t.is(by.bios?.path, path.join(root, BOOT_FILES.bios));
  t.is(by.efi64?.source, 'system');
  t.is(by.efi64Full?.source, 'missing');
  t.is(by.efi64Full?.path, undefined);
});

test('findBootFiles follows package symlinks in a system dir (Debian: ipxe.efi -> /boot/ipxe.efi)', async (t) => {
  const base = await tempDir();
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const system = path.join(base, 'system');
  await mkdir(system, { mode: 0o755 });
  await chmod(system, 0o755);
  await writeFile(path.join(base, 'boot-ipxe.efi'), 'z');
  await symlink(path.join(base, 'boot-ipxe.efi'), path.join(system, BOOT_FILES.efi64Full));
  const entry = findBootFiles(path.join(base, 'no-root'), [system], BOOT_FILES).find((f) => f.firmware === 'efi64Full');
  t.is(entry?.source, 'system');
  t.is(entry?.path, path.join(system, BOOT_FILES.efi64Full));
});

test("findBootFiles finds the catalogue's required files in Debian's ipxe package (/usr/lib/ipxe, installed here and in CI)", (t) => {
  const required = Object.fromEntries(BOOT_FILE_CATALOGUE.filter((e) => e.required).map((e) => [e.name, e.name]));
  const found = findBootFiles('/nonexistent-tftp-root', undefined, required);
  t.is(found.length, 3);
  for (const entry of found) {
    t.is(entry.source, 'system', entry.name);
    t.true(entry.path?.startsWith('/usr/lib/ipxe/'), entry.name);
  }
});
