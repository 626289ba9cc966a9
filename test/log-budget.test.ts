/** The log budget (src/log-budget.ts): pure, clock passed in. */
import test from 'ava';
import { createLogBudget } from '../src/log-budget.js';

test('log budget: the limit per interval, then silence, then a count of what was held back', (t) => {
  const b = createLogBudget(2, 1000);
  t.deepEqual(
    [b.take(0), b.take(1), b.take(2), b.take(3)],
    [
      { log: true, suppressed: 0 },
      { log: true, suppressed: 0 },
      { log: false, suppressed: 0 },
      { log: false, suppressed: 0 },
    ],
  );
  t.is(b.pending(), 2);
  t.deepEqual(b.take(1000), { log: true, suppressed: 2 });
  t.is(b.pending(), 0);
});
