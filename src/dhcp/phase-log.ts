/**
 * Boot decisions at info once per machine per phase, repeats at debug. A PXE ROM retransmits its
 * DISCOVER every few seconds, iPXE asks again after the chainload and clients renew at T1: each
 * answer is logged, but only the first of a kind (per MAC, message type and address) in a minute
 * is an info line; the rest are debug. A flood of new MACs is bounded by the table size (the
 * oldest entries go first, bounded-map.ts), not by memory.
 */
import { trimOldest } from '../bounded-map.js';

/** Decides the level of one reply line. */
export interface PhaseLog {
  level(mac: string, phase: string, now?: number): 'info' | 'debug';
}

/** Create a phase log remembering `max` (machine, phase) pairs for `windowMs` each. */
export function createPhaseLog(windowMs = 60_000, max = 10_000, clock: () => number = Date.now): PhaseLog {
  const seen = new Map<string, number>();
  return {
    level(mac, phase, now = clock()) {
      const key = `${mac}|${phase}`;
      const at = seen.get(key);
      if (at !== undefined && now - at < windowMs) return 'debug';
      seen.delete(key);
      seen.set(key, now);
      trimOldest(seen, max);
      return 'info';
    },
  };
}
