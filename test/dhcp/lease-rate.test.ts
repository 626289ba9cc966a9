/** The per-segment new-lease budget (lease-rate.ts): pure, clock passed in. */
import test from 'ava';
import { createLeaseRateLimiter, leaseSource } from '../../src/dhcp/lease-rate.js';

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
