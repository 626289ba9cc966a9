import test from 'ava';
import { createPhaseLog } from '../../src/dhcp/phase-log.js';

test('phase log: first reply of a kind per machine at info, repeats within the window at debug', (t) => {
  const log = createPhaseLog(60_000, 10);
  t.is(log.level('m1', 'offer', 0), 'info');
  t.is(log.level('m1', 'offer', 3000), 'debug', 'a retransmitted DISCOVER');
  t.is(log.level('m1', 'ack', 3500), 'info', 'the next phase');
  t.is(log.level('m1', 'ack', 4000), 'debug');
  t.is(log.level('m2', 'offer', 4000), 'info', 'another machine');
  t.is(log.level('m1', 'offer', 61_000), 'info', 'after the window');
  t.is(log.level('m1', 'offer', 62_000), 'debug', 'the window starts again');
});

test('phase log: bounded in machines (the least recently logged go first) and in phases per machine', (t) => {
  const log = createPhaseLog(60_000, 2);
  t.is(log.level('m1', 'offer', 0), 'info');
  t.is(log.level('m2', 'offer', 1), 'info');
  t.is(log.level('m1', 'ack', 2), 'info', 'm1 is now the most recently logged');
  t.is(log.level('m3', 'offer', 3), 'info', 'a third machine: m2 is forgotten');
  t.is(log.level('m1', 'offer', 4), 'debug', 'm1 is remembered');
  t.is(log.level('m3', 'offer', 5), 'debug', 'm3 is remembered');
  t.is(log.level('m2', 'offer', 6), 'info', 'm2 was forgotten');
  // A flood of MACs leaves at most 2 machines: the first of them is long forgotten.
  for (let i = 0; i < 1000; i++) log.level(`flood${i}`, 'offer', 10);
  t.is(log.level('m3', 'offer', 11), 'info');

  const one = createPhaseLog(60_000, 10);
  t.is(one.level('m', 'phase0', 0), 'info');
  for (let i = 1; i <= 40; i++) one.level('m', `phase${i}`, i);
  t.is(one.level('m', 'phase40', 50), 'debug', 'the newest phases are remembered');
  t.is(one.level('m', 'phase0', 51), 'info', 'one machine cannot grow the table without bound');
});
