import test from 'ava';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dbJsonSchema, parseDb } from '../../src/store/schema.js';
import { createDefaultDb } from '../../src/store/defaults.js';

const SCHEMA_FILE = fileURLToPath(new URL('../../schema/appliance-db.schema.json', import.meta.url));

test('the committed JSON Schema equals the one generated from the zod schemas', async (t) => {
  const generated = `${JSON.stringify(dbJsonSchema(), null, 2)}\n`;
  // UPDATE_SCHEMA=1 rewrites the committed file after an intentional schema change.
  if (process.env.UPDATE_SCHEMA === '1') await writeFile(SCHEMA_FILE, generated);
  t.is(await readFile(SCHEMA_FILE, 'utf8'), generated, 'run UPDATE_SCHEMA=1 npx ava test/store/schema.test.ts and commit schema/');
});

test('the JSON Schema carries the constraints editors need (patterns, no extra keys)', (t) => {
  const s = JSON.stringify(dbJsonSchema());
  t.regex(s, /"additionalProperties":false/);
  t.regex(s, /assets/);
  t.regex(s, /"required":\["id","kernel"\]/);
});

test('the default database validates', (t) => {
  t.notThrows(() => parseDb(createDefaultDb()));
});
