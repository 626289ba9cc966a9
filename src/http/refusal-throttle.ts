/**
 * How often a refused, unauthenticated request of one machine goes into the boot timeline.
 * Anyone on the segment can send refused callbacks in a machine's name as fast as it likes; the
 * timeline keeps a bounded history per machine (events.ts, 200 events) and on disk (timeline.ts),
 * so recording each refusal would let a flood push the machine's real boot events out. One
 * refusal per machine per window is recorded; the ones in between are counted and the next
 * recorded refusal says how many there were (`suppressed`). The log still has every one.
 */

import { trimOldest } from '../bounded-map.js';

/** What to do with one refusal. */
export type RefusalAdmission = { record: false } | { record: true; suppressed: number };

/** The throttle: one per route that records refusals. */
export interface RefusalThrottle {
  admit(mac: string): RefusalAdmission;
}

/** Options for {@link createRefusalThrottle}. */
export interface RefusalThrottleOptions {
  /** One recorded refusal per machine per this many ms (default 60 s). */
  windowMs?: number;
  /** Machines remembered (default 4096; the oldest are forgotten in batches, bounded-map.ts, and with them their counts). */
  maxMachines?: number;
  now?: () => number;
}

/** Default window of {@link createRefusalThrottle}. */
export const DEFAULT_REFUSAL_WINDOW_MS = 60_000;

/** Create a throttle (see the module comment). */
export function createRefusalThrottle(options: RefusalThrottleOptions = {}): RefusalThrottle {
  const windowMs = options.windowMs ?? DEFAULT_REFUSAL_WINDOW_MS;
  const maxMachines = options.maxMachines ?? 4096;
  const now = options.now ?? Date.now;
  const seen = new Map<string, { at: number; suppressed: number }>();
  return {
    admit(mac) {
      const t = now();
      const last = seen.get(mac);
      if (last && t - last.at < windowMs) {
        last.suppressed += 1;
        return { record: false };
      }
      const suppressed = last?.suppressed ?? 0;
      seen.delete(mac);
      seen.set(mac, { at: t, suppressed: 0 });
      trimOldest(seen, maxMachines);
      return { record: true, suppressed };
    },
  };
}
