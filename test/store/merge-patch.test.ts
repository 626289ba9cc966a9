import test from 'ava';
import { applyMergePatch } from '../../src/store/merge-patch.js';

// RFC 7396 Appendix A, every example: [original, patch, result].
const EXAMPLES: Array<[unknown, unknown, unknown]> = [
  [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
  [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
  [{ a: 'b' }, { a: null }, {}],
  [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
  [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
  [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
  [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
  [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
  [
    ['a', 'b'],
    ['c', 'd'],
    ['c', 'd'],
  ],
  [{ a: 'b' }, ['c'], ['c']],
  [{ a: 'foo' }, null, null],
  [{ a: 'foo' }, 'bar', 'bar'],
  [{ e: null }, { a: 1 }, { e: null, a: 1 }],
  [[1, 2], { a: 'b', c: null }, { a: 'b' }],
  [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
];

test('applyMergePatch: every example of RFC 7396 Appendix A', (t) => {
  for (const [original, patch, result] of EXAMPLES) {
    const before = structuredClone(original);
    t.deepEqual(applyMergePatch(original, patch), result, `${JSON.stringify(original)} + ${JSON.stringify(patch)}`);
    t.deepEqual(original, before, 'the target is not modified');
  }
});

test('applyMergePatch: a "__proto__" key from a client body changes no prototype', (t) => {
  const out = applyMergePatch({ a: 1 }, JSON.parse('{"__proto__": {"polluted": true}, "b": 2}')) as Record<string, unknown>;
  t.deepEqual(out, { a: 1, b: 2 });
  t.is(Object.getPrototypeOf(out), Object.prototype);
  t.is(({} as Record<string, unknown>)['polluted'], undefined);
});
