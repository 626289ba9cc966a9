/**
 * Interop with TFTP clients nobody here wrote: curl, tftp-hpa, atftp and the `tftp` npm package.
 * The tools are installed here and in CI (Debian: curl, tftp-hpa, atftp); a missing tool fails
 * the test, it never skips.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { sha256, startServer, tempDir, type TestServer } from './helpers.js';

const run = promisify(execFile);

/** Run a client binary; a missing binary is a test failure with a clear message. */
async function tool(bin: string, args: string[], cwd?: string): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(bin, args, { timeout: 60_000, ...(cwd ? { cwd } : {}) });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string; code?: unknown };
    if (e.code === 'ENOENT') throw new Error(`${bin} is not installed; install the Debian package (curl, tftp-hpa, atftp) to run the interop tests`);
    throw new Error(`${bin} ${args.join(' ')} failed (${String(e.code)}): ${e.stderr ?? ''}${e.stdout ?? ''}`);
  }
}

interface Fixture {
  s: TestServer;
  dir: string;
  content: Buffer;
  text: Buffer;
}

async function setup(t: { teardown(fn: () => unknown): void }): Promise<Fixture> {
  const dir = await tempDir('tftp-interop-');
  const s = await startServer();
  t.teardown(async () => {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  });
  const content = await s.put('image.bin', 1_500_123);
  const text = await s.put('menu.txt', Buffer.from('#!ipxe\nchain http://10.0.0.1/boot.ipxe\r\nline with bare \r cr\n'.repeat(200), 'latin1'));
  return { s, dir, content, text };
}

test('curl tftp:// with --tftp-blksize 512 and 1468, --tftp-no-options; missing file and traversal fail', async (t) => {
  const { s, dir, content } = await setup(t);
  const url = `tftp://127.0.0.1:${s.port}/image.bin`;
  for (const args of [['--tftp-blksize', '512'], ['--tftp-blksize', '1468'], ['--tftp-no-options'], []]) {
    const out = path.join(dir, `curl-${args.join('')}.out`);
    await tool('curl', ['--silent', '--show-error', '--max-time', '30', ...args, '-o', out, url]);
    t.is(sha256(await readFile(out)), sha256(content), args.join(' ') || 'defaults');
  }
  await t.throwsAsync(tool('curl', ['--silent', '--max-time', '10', '-o', path.join(dir, 'x'), `tftp://127.0.0.1:${s.port}/missing.bin`]));
  await writeFile(path.join(dir, 'secret'), 'secret');
  await symlink(path.join(dir, 'secret'), path.join(s.root, 'escape'));
  await t.throwsAsync(tool('curl', ['--silent', '--max-time', '10', '-o', path.join(dir, 'y'), `tftp://127.0.0.1:${s.port}/escape`]));
  await t.throwsAsync(tool('curl', ['--silent', '--path-as-is', '--max-time', '10', '-o', path.join(dir, 'z'), `tftp://127.0.0.1:${s.port}/../secret`]));
  t.true(s.logs.some((l) => l.reason === 'symlink-escapes-root'));
});

test('tftp-hpa client: binary mode, and ascii (netascii) mode round-trips a text file', async (t) => {
  const { s, dir, content, text } = await setup(t);
  const out = path.join(dir, 'hpa.out');
  await tool('tftp', ['127.0.0.1', String(s.port), '-m', 'binary', '-c', 'get', 'image.bin', out]);
  t.is(sha256(await readFile(out)), sha256(content));
  // tftp-hpa converts netascii back (CR LF -> LF, CR NUL -> CR): the original bytes come back.
  const textOut = path.join(dir, 'hpa.txt');
  await tool('tftp', ['127.0.0.1', String(s.port), '-m', 'ascii', '-c', 'get', 'menu.txt', textOut]);
  t.is(sha256(await readFile(textOut)), sha256(text));
  t.true(s.logs.some((l) => l.msg === 'tftp read request' && l.mode === 'netascii'));
});

test('atftp: plain, blksize 1024, windowsize 8, tsize', async (t) => {
  const { s, dir, content } = await setup(t);
  const cases: string[][] = [
    [],
    ['--option', 'blksize 1024'],
    ['--option', 'blksize 1468', '--option', 'windowsize 8'],
    ['--option', 'tsize 0', '--option', 'blksize 512'],
  ];
  for (const [i, options] of cases.entries()) {
    const out = path.join(dir, `atftp-${i}.out`);
    await tool('atftp', [...options, '--get', '-r', 'image.bin', '-l', out, '127.0.0.1', String(s.port)]);
    t.is(sha256(await readFile(out)), sha256(content), options.join(' ') || 'plain');
  }
  t.true(s.logs.some((l) => l.msg === 'tftp transfer complete' && l.windowsize === 8 && l.blksize === 1468));
});

interface NpmTftpClient {
  get(remote: string, local: string, cb: (err?: Error) => void): void;
}
interface NpmTftp {
  createClient(options: { host: string; port: number; blockSize?: number; windowSize?: number; retries?: number; timeout?: number }): NpmTftpClient;
}

test('the tftp npm package as client: windowSize 1/4/16, ten at once', async (t) => {
  const { s, dir, content } = await setup(t);
  const tftp = createRequire(import.meta.url)('tftp') as NpmTftp;
  const get = (options: { blockSize?: number; windowSize?: number }, out: string): Promise<void> =>
    new Promise((resolve, reject) => {
      tftp
        .createClient({ host: '127.0.0.1', port: s.port, retries: 3, timeout: 1000, ...options })
        .get('image.bin', out, (err) => (err ? reject(err) : resolve()));
    });
  for (const [i, options] of [{ windowSize: 1, blockSize: 512 }, { windowSize: 4 }, { windowSize: 16, blockSize: 1024 }].entries()) {
    const out = path.join(dir, `npm-${i}.out`);
    await get(options, out);
    t.is(sha256(await readFile(out)), sha256(content), JSON.stringify(options));
  }
  await Promise.all(Array.from({ length: 10 }, (_, i) => get({ windowSize: 1 + (i % 8) }, path.join(dir, `npm-par-${i}.out`))));
  for (let i = 0; i < 10; i++) t.is(sha256(await readFile(path.join(dir, `npm-par-${i}.out`))), sha256(content), `parallel ${i}`);
  t.true(s.logs.some((l) => l.msg === 'tftp transfer complete' && l.windowsize === 16));
});
