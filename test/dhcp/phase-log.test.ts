import test from 'ava';
import { createPhaseLog } from '../../src/dhcp/phase-log.js';

test('phase log: first reply of a kind per machine at info, repeats within the window at debug, bounded table', (t) => {
  const log = createPhaseLog(60_000, 2);
  t.is(log.level('m1', 'offer', 0), 'info');
  t.is(log.level('m1', 'offer', 3000), 'debug', 'a retransmitted DISCOVER');
  t.is(log.level('m1', 'ack', 3500), 'info', 'the next phase');
  t.is(log.level('m2', 'offer', 4000), 'info', 'another machine');
  t.is(log.level('m1', 'offer', 61_000), 'info', 'after the window');
  // Only 2 pairs are remembered: the oldest went first.
  t.is(log.level('m1', 'ack', 62_000), 'info');
});
