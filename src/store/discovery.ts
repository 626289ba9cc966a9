/**
 * The discovery loop's write side, over the runtime state store (never db.json): a machine seen
 * booting is noted (first/last seen, address, profile served; an unknown MAC is registered as
 * discovered, within the cap, unless discovery is off), and facts reported by the agent are
 * stored. Discovered state never changes which profile a machine boots: selection reads only
 * the operator's records.
 */
import { ApplianceError } from '../errors.js';
import { normalizeMac } from '../events.js';
import type { Logger } from '../log.js';
import type { Facts } from './schema.js';
import { DEFAULT_STATE_LIMITS, createStateStore, type StateOutcome, type StateStore } from './state-store.js';
import type { Store } from './store.js';

/** Default cap on machines registered by discovery. */
export const DEFAULT_DISCOVERY_CAP = DEFAULT_STATE_LIMITS.maxDiscovered;

/** What a sighting or report did (`dropped`: not a MAC). */
export type DiscoveryOutcome = StateOutcome;

/** Options for {@link createDiscovery}. */
export interface DiscoveryOptions {
  store: Store;
  /** Where runtime state goes (default: an in-memory state store). */
  state?: StateStore;
  log: Logger;
}

/** Notes boots and stores reported facts. */
export interface Discovery {
  readonly state: StateStore;
  /** A machine asked for its boot script. Never rejects: booting must not wait on it. */
  sighted(update: { mac: string; uuid?: string | undefined; ip?: string | undefined; profile?: string | undefined }): Promise<DiscoveryOutcome | 'dropped'>;
  /**
   * Store a machine's facts (registering it when unknown). Rejects with ERR_DISCOVERY_FULL,
   * ERR_DISCOVERY_OFF, ERR_FACTS_TOO_LARGE, ERR_STATE_FULL or the write's error.
   */
  reportFacts(mac: string, facts: Facts, ip: string | undefined): Promise<DiscoveryOutcome>;
  /** Write everything queued now. */
  flush(): Promise<void>;
}

/** Create the discovery writer. */
export function createDiscovery(options: DiscoveryOptions): Discovery {
  const { store } = options;
  const state = options.state ?? createStateStore({ log: options.log });
  const declared = async (mac: string): Promise<boolean> => (await store.getMachine(mac)) !== undefined;
  return {
    state,
    async sighted(input) {
      const mac = normalizeMac(input.mac);
      if (!mac) return 'dropped';
      try {
        return state.sighted({ ...input, mac }, await declared(mac));
      } catch {
        return 'dropped';
      }
    },
    async reportFacts(macInput, facts, ip) {
      const mac = normalizeMac(macInput);
      if (!mac) throw new ApplianceError('ERR_VALIDATION', 'mac: not a MAC address', { field: 'mac' });
      return state.putFacts(mac, facts, ip, await declared(mac));
    },
    flush: () => state.flush(),
  };
}
