/** The queue of bookkeeping after DHCP replies (src/dhcp/after-reply.ts). */
import test from 'ava';
import { createAfterReply } from '../../src/dhcp/after-reply.js';

test('tasks run after the current turn, in order, all of them; a throw is reported and the rest still run', async (t) => {
  const errors: unknown[] = [];
  const after = createAfterReply((err) => errors.push(err));
  const ran: number[] = [];
  after(() => ran.push(1));
  after(() => {
    throw new Error('broken');
  });
  after(() => ran.push(3));
  t.deepEqual(ran, [], 'nothing runs in the turn that queued it');
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(ran, [1, 3]);
  t.is((errors[0] as Error).message, 'broken');
  // A task queued by a task runs in a later turn, and the queue keeps working.
  // Turns, not a timer: a 10 ms timer could fire before the second turn on a loaded machine
  // (seen in CI). The outer task runs in the next turn and queues the inner one for the turn
  // after; an immediate queued after it runs after it.
  after(() => after(() => ran.push(4)));
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(ran, [1, 3], 'the inner task waits for a later turn');
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(ran, [1, 3, 4]);
});
