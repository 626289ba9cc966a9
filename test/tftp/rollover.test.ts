import test from 'ava';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { sha256, startServer, tempDir, tftpGet } from './helpers.js';

const run = promisify(execFile);

// 33 MiB + 100 bytes: at blksize 512 that is 67 785 blocks, past the 16-bit block number, so the
// wire number wraps 65535 -> 0 (tftp-hpa, curl and iPXE expect wrap to 0, not to 1).
const SIZE = 33 * 1024 * 1024 + 100;

test('rollover: a file over 32 MiB at blksize 512 (curl, own client window 1 and 16), streamed in bounded memory', async (t) => {
  const dir = await tempDir();
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'big.img');
  const hash = createHash('sha256');
  const handle = await open(file, 'w');
  for (let written = 0; written < SIZE;) {
    const chunk = randomBytes(Math.min(1024 * 1024, SIZE - written));
    hash.update(chunk);
    await handle.write(chunk);
    written += chunk.length;
  }
  await handle.close();
  const expected = hash.digest('hex');
  const s = await startServer({ root: dir });
  t.teardown(() => s.close());

  // curl first, while this process holds nothing big: the server streams, so its buffer memory
  // stays far below the file size during the whole 33 MiB transfer.
  const out = path.join(dir, 'curl.out');
  const before = process.memoryUsage().arrayBuffers;
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  }, 20);
  try {
    await run('curl', ['--silent', '--show-error', '--max-time', '90', '--tftp-blksize', '512', '-o', out, `tftp://127.0.0.1:${s.port}/big.img`]);
  } finally {
    clearInterval(sampler);
  }
  t.is(sha256(await readFile(out)), expected);
  t.log(`buffer memory growth during the curl transfer: ${((peak - before) / 1024 / 1024).toFixed(1)} MiB`);
  t.true(peak - before < 16 * 1024 * 1024, `grew by ${peak - before} bytes`);

  const lockstep = await tftpGet(s.port, 'big.img', { options: [['blksize', '512']], deadlineMs: 90_000 });
  t.is(lockstep.blocks, Math.floor(SIZE / 512) + 1);
  t.true(lockstep.blocks > 65_535);
  t.is(sha256(lockstep.data), expected);

  const windowed = await tftpGet(s.port, 'big.img', {
    options: [
      ['blksize', '512'],
      ['windowsize', '16'],
    ],
    deadlineMs: 90_000,
  });
  t.is(sha256(windowed.data), expected);
});
