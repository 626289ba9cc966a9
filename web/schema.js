// A small JSON Schema (draft 2020-12) validator for the subset the appliance's published schema
// uses (GET /api/schema, generated from the server's zod schemas): type, properties, required,
// additionalProperties, propertyNames, pattern, min/maxLength, min/maxItems, items, anyOf,
// enum, const, $ref into $defs, minimum/maximum and the ipv4 / date-time formats; `x-message`
// on a pattern is the server's own wording for it (GET /api/console/schema). The server
// validates again on save; this lets the editor show the error at the field before saving.

const FORMATS = {
  ipv4: (s) => /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(s),
  'date-time': (s) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(s) && !Number.isNaN(Date.parse(s)),
};

const patterns = new Map();
function regex(p) {
  if (!patterns.has(p)) patterns.set(p, new RegExp(p, 'u'));
  return patterns.get(p);
}

function typeOf(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(want, v) {
  const t = typeOf(v);
  return want === t || (want === 'number' && t === 'integer');
}

function describe(schema) {
  if (schema.description) return schema.description;
  if (schema.enum) return `one of ${schema.enum.map((x) => JSON.stringify(x)).join(', ')}`;
  return null;
}

/**
 * Validate `value` against `schema` (with `root` for $ref). Returns a list of
 * `{ path: (string|number)[], message }`, empty when valid.
 */
export function validate(schema, value, root = schema, path = []) {
  const errors = [];
  const fail = (message, at = path) => errors.push({ path: at, message });
  if (schema === true || schema === undefined) return errors;
  if (schema === false) return [{ path, message: 'is not allowed' }];
  if (schema.$ref) {
    const m = /^#\/\$defs\/(.+)$/.exec(schema.$ref);
    const target = m ? root.$defs?.[decodeURIComponent(m[1])] : undefined;
    if (target) errors.push(...validate(target, value, root, path));
  }
  if (schema.anyOf) {
    const results = schema.anyOf.map((s) => validate(s, value, root, path));
    if (!results.some((r) => r.length === 0)) {
      // Report the alternative of the value's own type, else the first, so the message is useful.
      const sameType = schema.anyOf.findIndex((s) => s.type && typeMatches(s.type, value));
      errors.push(...results[sameType >= 0 ? sameType : 0]);
    }
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeMatches(t, value))) {
      fail(`must be ${types.map((t) => (t === 'object' ? 'an object' : t === 'array' ? 'a list' : `a ${t}`)).join(' or ')}`);
      return errors;
    }
  }
  if (schema.enum && !schema.enum.some((x) => x === value)) fail(`must be ${describe(schema)}`);
  if ('const' in schema && schema.const !== value) fail(`must be ${JSON.stringify(schema.const)}`);
  if (typeof value === 'string') {
    if (schema.maxLength !== undefined && [...value].length > schema.maxLength) fail(`must be at most ${schema.maxLength} characters`);
    if (schema.minLength !== undefined && [...value].length < schema.minLength) fail(`must be at least ${schema.minLength} characters`);
    if (schema.pattern !== undefined && !regex(schema.pattern).test(value)) fail(schema['x-message'] ?? `does not match ${schema.pattern}`);
    if (schema.format && FORMATS[schema.format] && !FORMATS[schema.format](value))
      fail(`must be ${schema.format === 'ipv4' ? 'an IPv4 address' : 'an ISO 8601 date-time'}`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) fail(`must be at least ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) fail(`must be at most ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (schema.maxItems !== undefined && value.length > schema.maxItems) fail(`must have at most ${schema.maxItems} items`);
    if (schema.minItems !== undefined && value.length < schema.minItems) fail(`must have at least ${schema.minItems} items`);
    if (schema.items) value.forEach((v, i) => errors.push(...validate(schema.items, v, root, [...path, i])));
  }
  if (typeOf(value) === 'object') {
    for (const key of schema.required ?? []) if (!(key in value)) fail('is required', [...path, key]);
    const props = schema.properties ?? {};
    for (const [k, v] of Object.entries(value)) {
      if (schema.propertyNames) {
        const bad = validate(schema.propertyNames, k, root, [...path, k]);
        if (bad.length) fail(`name ${JSON.stringify(k)} ${bad[0].message}`, [...path, k]);
      }
      if (k in props) errors.push(...validate(props[k], v, root, [...path, k]));
      else if (schema.additionalProperties === false) fail(`unknown field ${JSON.stringify(k)}`, [...path, k]);
      else if (typeof schema.additionalProperties === 'object') errors.push(...validate(schema.additionalProperties, v, root, [...path, k]));
    }
  }
  return errors;
}

/** The item schema of one collection of the database schema: profiles, machines or groups. */
export function itemSchema(root, collection) {
  return root.properties?.[collection]?.items;
}
