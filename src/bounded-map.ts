/**
 * Trimming a Map kept in insertion order (oldest first) to a bound, as every table that a
 * stranger's packets can fill does (events per MAC, the DHCP phase log, DHCP sightings).
 *
 * Not `map.delete(map.keys().next().value)` once per insert: V8 leaves a deleted entry as a hole
 * until the table is rehashed, and a new iterator walks every hole from the front, so with the
 * oldest entry deleted on each insert a 10,000-entry table spends ~12 us per insert skipping
 * holes (measured; 0.3-0.5 us when trimmed in batches). That was the largest single cost of a
 * ProxyDHCP offer to a new machine. So a full table drops its oldest 1/16 at once (one walk),
 * and holds between 15/16 of `max` and `max` entries; a table with max < 16 still drops exactly
 * one.
 */

/** Delete the oldest entries of `map` when it holds more than `max`; `onDrop` hears each one. */
export function trimOldest<K, V>(map: Map<K, V>, max: number, onDrop?: (key: K, value: V) => void): void {
  if (map.size <= max) return;
  let excess = map.size - max + Math.floor(max / 16);
  for (const [key, value] of map) {
    map.delete(key);
    onDrop?.(key, value);
    if (--excess <= 0) break;
  }
}
