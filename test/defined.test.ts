import test from 'ava';
import { definedFields } from '../src/defined.js';

test('definedFields drops undefined values and keeps every other value, falsy ones included', (t) => {
  t.deepEqual(definedFields({ a: undefined, b: 0, c: '', d: null, e: false, f: 'x' }), { b: 0, c: '', d: null, e: false, f: 'x' });
  t.false('a' in definedFields({ a: undefined }));
  // Spread over defaults it never replaces one with undefined.
  const defaults = { port: 8080, host: 'h' };
  const port: number | undefined = undefined;
  t.deepEqual({ ...defaults, ...definedFields({ port }) }, defaults);
});
