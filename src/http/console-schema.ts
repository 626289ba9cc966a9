/**
 * The database JSON Schema as the web console's editor uses it: the published schema
 * (`GET /api/schema`) plus, on every pattern, the zod message people read on a 422
 * (`x-message`, an annotation validators ignore), so the console shows "must be /assets/<path>
 * ..." at the field rather than a regular expression.
 */
import { z } from 'zod';
import { DbSchema, dbJsonSchema } from '../store/schema.js';

interface CheckDef {
  check?: string;
  format?: string;
  error?: unknown;
}

/** Generate the annotated schema (draft 2020-12, input mode like the published one). */
export function consoleJsonSchema(): Record<string, unknown> {
  const annotated = z.toJSONSchema(DbSchema, {
    io: 'input',
    unrepresentable: 'any',
    override: (ctx) => {
      const checks = (ctx.zodSchema as unknown as { _zod: { def: { checks?: Array<{ _zod: { def: CheckDef } }> } } })._zod.def.checks ?? [];
      for (const c of checks) {
        const d = c._zod.def;
        if (d.check !== 'string_format' || d.format !== 'regex' || d.error === undefined) continue;
        const message = typeof d.error === 'function' ? (d.error as (issue: unknown) => unknown)({}) : d.error;
        if (typeof message === 'string') (ctx.jsonSchema as Record<string, unknown>)['x-message'] = message;
      }
    },
  }) as Record<string, unknown>;
  const published = dbJsonSchema();
  return { ...annotated, $id: published['$id'], title: published['title'] };
}
