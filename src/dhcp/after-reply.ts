/**
 * Work that follows a DHCP reply: the log line, the boot events (diagnosis, metrics, timeline,
 * sessions) and anything else that does not change the bytes sent. A policy sends first and
 * queues this here; the queue runs once per event-loop turn (setImmediate, i.e. after the poll
 * phase has handed every datagram that was waiting to its policy), so the latency of a reply is
 * decode + decide + encode + send, and a burst of datagrams is answered before any of them is
 * logged. Nothing is dropped: every task runs, in the order it was queued, before the next
 * datagram after this turn is read, so a client that has the reply and asks HTTP next finds the
 * event recorded. The queue holds at most what one turn received (libuv reads a bounded number
 * of datagrams per socket per turn), so it cannot grow without bound.
 */

/** Queue `task` to run after the replies of this event-loop turn. */
export type AfterReply = (task: () => void) => void;

/**
 * Create a queue. A task that throws is reported to `onError` and the rest still run: a
 * bookkeeping failure must never take the DHCP listener down or skip another reply's events.
 */
export function createAfterReply(onError: (err: unknown) => void): AfterReply {
  let tasks: Array<() => void> = [];
  const drain = (): void => {
    const now = tasks;
    tasks = [];
    for (const task of now) {
      try {
        task();
      } catch (err) {
        onError(err);
      }
    }
  };
  return (task) => {
    if (tasks.push(task) === 1) setImmediate(drain);
  };
}
