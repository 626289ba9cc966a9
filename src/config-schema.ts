/**
 * The JSON Schema (draft 2020-12) of `config/appliance.json`, generated from the one options table
 * (OPTIONS in config.ts), so an editor checks the file as the appliance will. What it accepts is
 * what loadConfig accepts: numbers (or digit strings) for ports and counts, true/false (or the
 * words flags take) for switches, a list or a comma-separated string for address lists.
 */
import { OPTIONS, type OptionSpec } from './config.js';

const DIGITS = '^\\s*\\d+\\s*$';
const BOOL_WORDS = '^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|1|0)$';

function propertySchema(spec: OptionSpec): Record<string, unknown> {
  const description = spec.help + (spec.default !== undefined ? ` [default: ${spec.default}]` : '');
  switch (spec.kind) {
    case 'port':
      return {
        description,
        anyOf: [
          { type: 'integer', minimum: 0, maximum: 65535 },
          { type: 'string', pattern: DIGITS },
        ],
      };
    case 'int':
      return {
        description,
        anyOf: [
          { type: 'integer', minimum: spec.min ?? 0, ...(spec.max !== undefined ? { maximum: spec.max } : {}) },
          { type: 'string', pattern: DIGITS },
        ],
      };
    case 'enum':
      return { description, enum: [...spec.values!] };
    case 'bool':
      return { description, anyOf: [{ type: 'boolean' }, { type: 'string', pattern: BOOL_WORDS }] };
    case 'ipv4':
      return { description, type: 'string', format: 'ipv4' };
    case 'ipv4list':
      return {
        description,
        anyOf: [
          { type: 'array', items: { type: 'string', format: 'ipv4' }, minItems: 1 },
          { type: 'string', minLength: 7 },
        ],
      };
    case 'range':
      return { description, type: 'string', pattern: '^\\s*\\d{1,3}(\\.\\d{1,3}){3}\\s*-\\s*\\d{1,3}(\\.\\d{1,3}){3}\\s*$' };
    case 'ipv6':
      return { description, type: 'string', format: 'ipv6' };
    case 'ipv6list':
      return {
        description,
        anyOf: [
          { type: 'array', items: { type: 'string', format: 'ipv6' }, minItems: 1 },
          { type: 'string', minLength: 2 },
        ],
      };
    case 'range6':
      return { description, type: 'string', pattern: '^\\s*[0-9A-Fa-f:.]+\\s*-\\s*[0-9A-Fa-f:.]+\\s*$' };
    case 'string':
    case 'path':
    case 'dir':
      return { description, type: 'string', minLength: 1 };
  }
}

/** The schema object; `schema/appliance-config.schema.json` is this, committed. */
export function configJsonSchema(): Record<string, unknown> {
  const properties: Record<string, unknown> = {
    $schema: { type: 'string', description: 'the schema this file follows (for editors); ignored by the appliance' },
  };
  for (const spec of OPTIONS) properties[spec.key] = propertySchema(spec);
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://netboot-appliance.invalid/schema/appliance-config.schema.json',
    title: 'netboot-appliance settings (config/appliance.json)',
    description:
      'Each key is also a flag (--http-port for httpPort) and an APPLIANCE_* environment variable; flags win over the environment, the environment over this file.',
    type: 'object',
    properties,
    additionalProperties: false,
  };
}
