import test from 'ava';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadOrCreateApiToken, tokensMatch, assertBearer, API_TOKEN_FILE } from '../../src/http/token.js';
import { captureLogger, tempDir } from '../store/helpers.js';

test('generates a token on first start (mode 0600), logs the location not the value, then reuses it', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const { log, lines } = captureLogger();
  const token = await loadOrCreateApiToken(path.join(dir, 'config'), log);
  t.regex(token, /^[A-Za-z0-9_-]{43}$/);
  const file = path.join(dir, 'config', API_TOKEN_FILE);
  t.is((await stat(file)).mode & 0o777, 0o600);
  t.is((await readFile(file, 'utf8')).trim(), token);
  const all = JSON.stringify(lines);
  t.true(all.includes(file));
  t.false(all.includes(token), 'token value never logged');
  t.is(await loadOrCreateApiToken(path.join(dir, 'config'), log), token);
});

test('a file with a too-short token is refused with ERR_CONFIG', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  await writeFile(path.join(dir, API_TOKEN_FILE), 'short\n');
  await t.throwsAsync(loadOrCreateApiToken(dir, captureLogger().log), { code: 'ERR_CONFIG' });
});

test('token comparison', (t) => {
  t.true(tokensMatch('abc', 'abc'));
  t.false(tokensMatch('abd', 'abc'));
  t.false(tokensMatch('', ''));
  t.notThrows(() => assertBearer('Bearer abc', 'abc'));
  t.throws(() => assertBearer('Bearer abcd', 'abc'), { code: 'ERR_UNAUTHORIZED' });
  t.throws(() => assertBearer(undefined, 'abc'), { code: 'ERR_UNAUTHORIZED' });
});
