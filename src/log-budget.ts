/**
 * A log budget: at most `limit` lines of one kind per interval, then silence, then one summary
 * line with how many were held back. Hostile traffic (a fuzzer, a starvation run) must not turn
 * into megabytes of warn lines; an operator still learns that it happened and how much.
 */

/** What `take` says: write this line, or count it silently. */
export interface LogBudget {
  /**
   * Whether this event may be logged now. When an interval has ended with events held back,
   * `suppressed` says how many (log that number alongside, once).
   */
  take(now?: number): { log: boolean; suppressed: number };
  /** Events held back so far in the current interval. */
  pending(): number;
}

/** Create a budget of `limit` lines per `intervalMs` (clock injectable for tests). */
export function createLogBudget(limit: number, intervalMs: number, clock: () => number = Date.now): LogBudget {
  let windowStart = -Infinity;
  let used = 0;
  let held = 0;
  return {
    take(now = clock()) {
      if (now - windowStart >= intervalMs) {
        const suppressed = held;
        windowStart = now;
        used = 1;
        held = 0;
        return { log: true, suppressed };
      }
      if (used < limit) {
        used += 1;
        return { log: true, suppressed: 0 };
      }
      held += 1;
      return { log: false, suppressed: 0 };
    },
    pending() {
      return held;
    },
  };
}
