/**
 * Boot decisions at info once per machine per phase, repeats at debug. A PXE ROM retransmits its
 * DISCOVER every few seconds, iPXE asks again after the chainload and clients renew at T1: each
 * answer is logged, but only the first of a kind (per MAC, message type and address) in a minute
 * is an info line; the rest are debug. A flood of new MACs is bounded by the table size (the
 * oldest machines go first, bounded-map.ts), not by memory.
 *
 * Kept per machine, then per phase: no `mac|phase` key is built and hashed for each reply (a
 * concatenated key is flattened before it is hashed; profiled at ~2 % of a ProxyDHCP offer).
 * A machine has a handful of phases (message type x port x boot file, all chosen by us).
 */
import { trimOldest } from '../bounded-map.js';

/** Decides the level of one reply line. */
export interface PhaseLog {
  level(mac: string, phase: string, now?: number): 'info' | 'debug';
}

/** Phases remembered per machine; beyond it the oldest is forgotten (and logged at info again). */
const PHASES_PER_MACHINE = 8;

/** Create a phase log remembering `max` machines' phases for `windowMs` each. */
export function createPhaseLog(windowMs = 60_000, max = 10_000, clock: () => number = Date.now): PhaseLog {
  const seen = new Map<string, Map<string, number>>();
  return {
    level(mac, phase, now = clock()) {
      let phases = seen.get(mac);
      const at = phases?.get(phase);
      if (at !== undefined && now - at < windowMs) return 'debug';
      // An info line: the machine moves to the newest end, so a flood of new MACs forgets the
      // machines not logged for longest first.
      if (phases === undefined) phases = new Map();
      else seen.delete(mac);
      seen.set(mac, phases);
      trimOldest(seen, max);
      phases.delete(phase);
      phases.set(phase, now);
      trimOldest(phases, PHASES_PER_MACHINE);
      return 'info';
    },
  };
}
