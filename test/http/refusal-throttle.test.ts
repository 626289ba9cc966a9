import test from 'ava';
import { createRefusalThrottle } from '../../src/http/refusal-throttle.js';

test('one refusal per machine per window is recorded; the next one says how many were not', (t) => {
  let now = 0;
  const throttle = createRefusalThrottle({ windowMs: 60_000, now: () => now });
  t.deepEqual(throttle.admit('a'), { record: true, suppressed: 0 });
  for (let i = 0; i < 5; i++) t.deepEqual(throttle.admit('a'), { record: false });
  t.deepEqual(throttle.admit('b'), { record: true, suppressed: 0 }, 'machines are throttled apart');
  now = 59_999;
  t.deepEqual(throttle.admit('a'), { record: false });
  now = 60_000;
  t.deepEqual(throttle.admit('a'), { record: true, suppressed: 6 });
  t.deepEqual(throttle.admit('a'), { record: false });
  now = 200_000;
  t.deepEqual(throttle.admit('a'), { record: true, suppressed: 1 });
});

test('bounded: past maxMachines the oldest machine is forgotten (its next refusal is recorded again)', (t) => {
  const throttle = createRefusalThrottle({ maxMachines: 2, now: () => 0 });
  for (const mac of ['a', 'b', 'c']) t.like(throttle.admit(mac), { record: true });
  t.like(throttle.admit('a'), { record: true }, 'a was forgotten');
  t.like(throttle.admit('c'), { record: false });
});
