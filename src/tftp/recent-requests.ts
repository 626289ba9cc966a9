/**
 * When each client address last asked for each file name: tells an abandoned size probe (the
 * client asked again, so the first transfer was only for tsize) from a failed transfer
 * (transfer.ts `requestedAgain`). Any address on the segment can fill it, so it is bounded, the
 * oldest entries dropped in batches (bounded-map.ts).
 */
import { trimOldest } from '../bounded-map.js';
import { clip } from './files.js';

/** The table (see the module comment). */
export interface RecentRequests {
  /** `address` asked for `name` now. */
  note(address: string, name: string): void;
  /** Whether `address` asked for `name` after `since` (ms since the epoch). */
  askedSince(address: string, name: string, since: number): boolean;
  /** Entries held (at most `max`). */
  readonly size: number;
}

/** Create the table: `max` (address, name) pairs at most (default 4096); clock injectable for tests. */
export function createRecentRequests(max = 4096, now: () => number = Date.now): RecentRequests {
  const seen = new Map<string, number>();
  const keyOf = (address: string, name: string): string => `${address}\0${clip(name, 512)}`;
  return {
    note(address, name) {
      const key = keyOf(address, name);
      // Re-inserted, so the table stays in order of last request and the oldest go first.
      seen.delete(key);
      seen.set(key, now());
      trimOldest(seen, max);
    },
    askedSince: (address, name, since) => (seen.get(keyOf(address, name)) ?? 0) > since,
    get size() {
      return seen.size;
    },
  };
}
