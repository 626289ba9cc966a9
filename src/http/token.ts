/**
 * The API bearer token: comparison in constant time, and the generated token the CLI uses when
 * none is configured (stored beside the database with mode 0600; its location is logged, never
 * its value).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';

/** File name of the generated token inside the database directory. */
export const API_TOKEN_FILE = 'api-token';

/**
 * Return the token stored in `dir/api-token`, creating it (32 random bytes, base64url, mode
 * 0600) on first start. Rejects with ERR_CONFIG when the file exists but is empty or unreadable.
 */
export async function loadOrCreateApiToken(dir: string, log: Logger): Promise<string> {
  const file = path.join(path.resolve(dir), API_TOKEN_FILE);
  try {
    const token = (await readFile(file, 'utf8')).trim();
    if (token.length < 16) {
      throw new ApplianceError('ERR_CONFIG', `${file} holds no usable token (under 16 characters); delete it to generate a new one`, { file });
    }
    await chmod(file, 0o600);
    log.info({ file }, 'api token loaded from file');
    return token;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof ApplianceError) throw err;
      throw new ApplianceError('ERR_CONFIG', `cannot read api token file ${file}: ${(err as Error).message}`, { file }, { cause: err });
    }
  }
  await mkdir(path.dirname(file), { recursive: true });
  const token = randomBytes(32).toString('base64url');
  // 'wx': never overwrite a token another process created meanwhile.
  await writeFile(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  await chmod(file, 0o600);
  log.info({ file }, 'generated an api token; read it from this file to use the API');
  return token;
}

/** Constant-time comparison of a presented token with the expected one. */
export function tokensMatch(presented: string, expected: string): boolean {
  // Hash both so the comparison is over equal lengths and leaks neither length nor prefix.
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b) && expected.length > 0;
}

/**
 * Which token the Authorization header carries: `write` (the API token), `read` (the read-only
 * token, when one is configured), or undefined.
 */
export function bearerAccess(header: string | undefined, writeToken: string, readToken?: string): 'write' | 'read' | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return undefined;
  if (tokensMatch(m[1]!, writeToken)) return 'write';
  if (readToken !== undefined && readToken.length > 0 && tokensMatch(m[1]!, readToken)) return 'read';
  return undefined;
}

/** Throw ERR_UNAUTHORIZED unless the Authorization header carries `Bearer <expected>`. */
export function assertBearer(header: string | undefined, expected: string): void {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m || !tokensMatch(m[1]!, expected)) {
    throw new ApplianceError('ERR_UNAUTHORIZED', 'writes need "Authorization: Bearer <token>" with the appliance api token');
  }
}
