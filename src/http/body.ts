/**
 * JSON request bodies without a body-parser dependency: bounded size, JSON media type, and
 * coded errors (ERR_BAD_JSON 400, ERR_UNSUPPORTED_MEDIA_TYPE 415, ERR_BODY_TOO_LARGE 413).
 */
import type Koa from 'koa';
import { ApplianceError } from '../errors.js';

/** Default body limit: profiles and machines are small documents. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** Read and parse the JSON body of `ctx`; it must be a JSON object. */
export async function readJsonBody(ctx: Koa.Context, limit = MAX_BODY_BYTES): Promise<Record<string, unknown>> {
  const type = ctx.get('Content-Type');
  if (type !== '' && !/^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i.test(type)) {
    throw new ApplianceError('ERR_UNSUPPORTED_MEDIA_TYPE', `content-type ${JSON.stringify(type)} is not JSON; send application/json`);
  }
  const declared = Number(ctx.get('Content-Length') || '0');
  if (declared > limit) throw new ApplianceError('ERR_BODY_TOO_LARGE', `request body is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new ApplianceError('ERR_BODY_TOO_LARGE', `request body is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new ApplianceError('ERR_BAD_JSON', 'request body is empty; send a JSON object');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ApplianceError('ERR_BAD_JSON', `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ApplianceError('ERR_VALIDATION', '(root): expected a JSON object', { field: '(root)' });
  }
  return value as Record<string, unknown>;
}
