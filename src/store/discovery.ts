/**
 * The discovery loop's write side, over the runtime state store (never db.json): a machine seen
 * booting is noted (first/last seen, address, profile served; an unknown MAC is registered as
 * discovered, within the cap, unless discovery is off), and facts reported by the agent are
 * stored. Discovered state never changes which profile a machine boots: selection reads the
 * operator's records, plus a machine's facts only when they were verified (selectionFacts).
 */
import { ApplianceError } from '../errors.js';
import { normalizeMac } from '../events.js';
import type { Logger } from '../log.js';
import type { Facts } from './schema.js';
import { DEFAULT_STATE_LIMITS, createStateStore, type StateOutcome, type StateStore } from './state-store.js';
import type { Store } from './store.js';

/** Default cap on machines registered by discovery. */
export const DEFAULT_DISCOVERY_CAP = DEFAULT_STATE_LIMITS.maxDiscovered;

/**
 * What a sighting or report did (`dropped`: not a MAC; `kept`: an unverified report that was
 * not stored because the machine has verified facts, which it must not replace).
 */
export type DiscoveryOutcome = StateOutcome | 'kept';

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
   * Store a machine's facts (registering it when unknown), `verified` (they came with a trusted
   * boot's token or the API token) or not. An unverified report never replaces verified facts.
   * Rejects with ERR_DISCOVERY_FULL, ERR_DISCOVERY_OFF, ERR_FACTS_TOO_LARGE, ERR_STATE_FULL or
   * the write's error.
   */
  reportFacts(mac: string, facts: Facts, ip: string | undefined, verified?: boolean): Promise<DiscoveryOutcome>;
  /** The facts group selection may read: the machine's last report, only when it was verified. */
  selectionFacts(mac: string): Promise<Facts | undefined>;
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
    async reportFacts(macInput, facts, ip, verified = false) {
      const mac = normalizeMac(macInput);
      if (!mac) throw new ApplianceError('ERR_VALIDATION', 'mac: not a MAC address', { field: 'mac' });
      if (!verified && state.get(mac)?.factsVerified) return 'kept';
      return state.putFacts(mac, facts, ip, await declared(mac), verified);
    },
    async selectionFacts(macInput) {
      const mac = normalizeMac(macInput);
      if (!mac || !state.get(mac)?.factsVerified) return undefined;
      return state.getFacts(mac);
    },
    flush: () => state.flush(),
  };
}
