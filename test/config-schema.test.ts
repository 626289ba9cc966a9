/** schema/appliance-config.schema.json: generated from OPTIONS, and it agrees with loadConfig. */
import test from 'ava';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { configJsonSchema } from '../src/config-schema.js';
import { loadConfig, OPTIONS } from '../src/config.js';

const ROOT = resolve(import.meta.dirname, '..');
const SCHEMA_FILE = join(ROOT, 'schema', 'appliance-config.schema.json');

test('the committed config schema equals the one generated from the options table', (t) => {
  const generated = `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
  // UPDATE_SCHEMA=1 rewrites the committed file after an intentional change to OPTIONS.
  if (process.env.UPDATE_SCHEMA === '1') writeFileSync(SCHEMA_FILE, generated);
  t.is(readFileSync(SCHEMA_FILE, 'utf8'), generated, 'run UPDATE_SCHEMA=1 npx ava test/config-schema.test.ts and commit schema/');
  const props = Object.keys((configJsonSchema() as { properties: object }).properties);
  t.deepEqual(props, ['$schema', ...OPTIONS.map((o) => o.key)]);
});

const validator = z.fromJSONSchema(configJsonSchema() as never);

test('the example file names the schema and follows it', (t) => {
  const example = JSON.parse(readFileSync(join(ROOT, 'config', 'appliance.example.json'), 'utf8')) as Record<string, unknown>;
  t.is(example.$schema, '../schema/appliance-config.schema.json');
  t.true(validator.safeParse(example).success);
});

function home(): string {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-schema-'));
  for (const d of ['tftpboot', 'assets', 'templates', 'config']) mkdirSync(join(dir, d));
  return dir;
}

// [setting, value in the file, accepted?] — the schema and loadConfig must agree on each.
const cases: Array<[string, unknown, boolean]> = [
  ['httpPort', 8081, true],
  ['httpPort', '8081', true],
  ['httpPort', 70000, false],
  ['httpPort', true, false],
  ['leaseTime', 600, true],
  ['leaseTime', 10, false],
  ['force', true, true],
  ['force', 'yes', true],
  ['force', 1, false],
  ['dns', ['10.0.0.1', '1.1.1.1'], true],
  ['dns', '10.0.0.1,1.1.1.1', true],
  ['dns', ['10.0.0.1', 'dns.example'], false],
  ['dns', [], false],
  ['dhcpRange', '10.0.0.100-10.0.0.150', true],
  ['dhcpRange', ['10.0.0.100', '10.0.0.150'], false],
  ['dhcpMode', 'proxy', true],
  ['dhcpMode', 'PROXY', false],
  ['domain', 'lab.example', true],
  ['domain', 42, false],
  ['logFormat', 'human', true],
  ['router', '10.0.0.1', true],
  ['router', 'gateway', false],
  ['nonsense', 1, false],
];
for (const [key, value, ok] of cases) {
  test(`file setting ${key}=${JSON.stringify(value)} is ${ok ? 'accepted' : 'refused'} by both the schema and loadConfig`, (t) => {
    t.is(validator.safeParse({ [key]: value }).success, ok, 'schema');
    const h = home();
    writeFileSync(
      join(h, 'config', 'appliance.json'),
      JSON.stringify({ $schema: '../schema/appliance-config.schema.json', address: '10.0.0.1', [key]: value }),
    );
    const load = () => loadConfig({ home: h, env: {}, interfaces: {} });
    if (ok) t.notThrows(load);
    else t.throws(load, { code: 'ERR_CONFIG' } as never);
  });
}
