/** The per-segment new-lease budget (lease-rate.ts) and the log budget (log-budget.ts): pure, clock passed in. */
import test from 'ava';
import { createLeaseRateLimiter, leaseSource } from '../../src/dhcp/lease-rate.js';
import { createLogBudget } from '../../src/dhcp/log-budget.js';

test('a segment takes its per-minute budget at once, then one lease per refill interval; segments are separate', (t) => {
  const l = createLeaseRateLimiter(6);
  for (let i = 0; i < 6; i++) t.true(l.take('local', 0), `lease ${i}`);
  t.false(l.take('local', 0));
  t.false(l.take('local', 9_000), 'a refill takes 10 s at 6 per minute');
  t.true(l.take('local', 10_000));
  t.true(l.take('relay:10.98.0.1', 10_000), 'a relay has its own budget');
  t.true(createLeaseRateLimiter(0).take('local', 0), '0 is unlimited');
  t.is(leaseSource({ giaddr: '0.0.0.0' }), 'local');
  t.is(leaseSource({ giaddr: '10.98.0.1' }), 'relay:10.98.0.1');
});

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
