/** The state-store bench's inputs: facts exactly at the per-machine bound that the facts POST accepts, distinct MACs. */
import test from 'ava';
import { normalizeMac } from '../../../src/identity.js';
import { benchMac, factsAtBound, STORE_BENCH_MACHINES } from '../../../src/lab/bench-sections/store.js';
import { FactsSchema } from '../../../src/store/schema.js';
import { DEFAULT_STATE_LIMITS } from '../../../src/store/state-store.js';

test('factsAtBound: valid facts whose stored form is exactly the per-machine bound', (t) => {
  for (const i of [0, 1, STORE_BENCH_MACHINES - 1]) {
    const facts = factsAtBound(benchMac(i));
    t.true(FactsSchema.safeParse(facts).success);
    t.is(Buffer.byteLength(`${JSON.stringify(facts)}\n`), DEFAULT_STATE_LIMITS.maxFactsBytes);
  }
  t.is(Buffer.byteLength(`${JSON.stringify(factsAtBound(benchMac(7), 8192))}\n`), 8192);
});

test('benchMac: distinct, normalized MACs for every bench machine', (t) => {
  const macs = new Set(Array.from({ length: STORE_BENCH_MACHINES * 2 }, (_, i) => benchMac(i)));
  t.is(macs.size, STORE_BENCH_MACHINES * 2);
  for (const mac of [...macs].slice(0, 10)) t.is(normalizeMac(mac), mac);
});
