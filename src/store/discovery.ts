/**
 * The discovery loop's write side: machines seen booting for the first time are registered
 * (`state: "discovered"`) and facts reported by the microkernel agent are stored. Updates are
 * coalesced per MAC and written in batches (one validated, fsync'd write per burst), and the
 * number of discovered machines is capped, so a flood of spoofed MACs on the boot network
 * costs a bounded amount of memory and disk, never one file rewrite per packet.
 */
import { ApplianceError } from '../errors.js';
import { normalizeMac } from '../events.js';
import type { Logger } from '../log.js';
import type { Facts } from './schema.js';
import { normalizeUuid } from './select.js';
import type { DiscoveryOutcome, DiscoveryUpdate, Store } from './store.js';

/** Default cap on machines in state `discovered` (operators assign or delete them). */
export const DEFAULT_DISCOVERY_CAP = 4096;

/** Options for {@link createDiscovery}. */
export interface DiscoveryOptions {
  store: Store;
  log: Logger;
  /** Most machines kept in state `discovered` (default 4096). */
  cap?: number;
  /** Quiet time collecting updates before one write, ms (default 100). */
  batchMs?: number;
  /** Most distinct MACs waiting for a write; further sightings are dropped (default 1024). */
  maxPending?: number;
  now?: () => Date;
}

/** Registers first boots and stores reported facts, in batches. */
export interface Discovery {
  /**
   * A machine asked for its boot script. Unknown MACs are queued for registration; known ones
   * cost nothing. Never rejects (a failed write is logged): booting must not wait on it.
   */
  sighted(update: { mac: string; uuid?: string | undefined; ip?: string | undefined }): Promise<DiscoveryOutcome | 'dropped'>;
  /**
   * Store a machine's facts (registering it when unknown). Resolves once written; rejects with
   * ERR_VALIDATION for bad facts, ERR_DISCOVERY_FULL when the machine is new and the cap is
   * reached, or the store's error when the write failed.
   */
  reportFacts(mac: string, facts: Facts, ip: string | undefined): Promise<DiscoveryOutcome>;
  /** Write everything queued now. */
  flush(): Promise<void>;
}

interface Pending {
  update: DiscoveryUpdate;
  waiters: Array<{ resolve: (o: DiscoveryOutcome) => void; reject: (e: unknown) => void }>;
}

/** Create the discovery writer over `store`. */
export function createDiscovery(options: DiscoveryOptions): Discovery {
  const { store } = options;
  const log = options.log.child({ subsystem: 'discovery' });
  const cap = options.cap ?? DEFAULT_DISCOVERY_CAP;
  const batchMs = options.batchMs ?? 100;
  const maxPending = options.maxPending ?? 1024;
  const now = options.now ?? (() => new Date());
  let pending = new Map<string, Pending>();
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  let cappedSince: number | undefined;
  let cappedCount = 0;

  const noteCapped = (mac: string): void => {
    cappedCount++;
    // One warning per minute while capped, with the number refused, not one line per MAC.
    const t = now().getTime();
    if (cappedSince === undefined || t - cappedSince >= 60_000) {
      log.warn({ mac, cap, refused: cappedCount }, `discovered-machine cap (${cap}) reached; new machines are not registered until some are assigned a state or deleted`);
      cappedSince = t;
      cappedCount = 0;
    }
  };

  const runBatch = async (): Promise<void> => {
    timer = undefined;
    const batch = [...pending.values()];
    pending = new Map();
    if (batch.length === 0) return;
    try {
      const outcomes = await store.recordDiscoveries(
        batch.map((p) => p.update),
        { cap },
      );
      batch.forEach((p, i) => {
        const outcome = outcomes[i] ?? 'known';
        if (outcome === 'registered') log.info({ mac: p.update.mac, ip: p.update.ip, uuid: p.update.uuid }, 'new machine discovered; registered with state discovered');
        if (outcome === 'capped') noteCapped(p.update.mac);
        for (const w of p.waiters) w.resolve(outcome);
      });
    } catch (err) {
      log.warn({ err: (err as Error).message, machines: batch.length }, 'could not store discovery updates');
      for (const p of batch) for (const w of p.waiters) w.reject(err);
    }
  };

  const schedule = (): void => {
    if (timer) return;
    timer = setTimeout(() => {
      // Batches run one after another: the store serializes writes anyway, and this keeps the
      // next batch collecting while one is being written.
      inFlight = inFlight.then(runBatch);
    }, batchMs);
    // Not unref'd: callers await the batch, and at most batchMs of delay at exit is harmless.
  };

  const enqueue = (update: DiscoveryUpdate): Promise<DiscoveryOutcome> =>
    new Promise((resolve, reject) => {
      const existing = pending.get(update.mac);
      if (existing) {
        // Coalesce: the latest facts win; a sighting never erases queued facts.
        existing.update = { ...existing.update, ...update, facts: update.facts ?? existing.update.facts, uuid: update.uuid ?? existing.update.uuid };
        existing.waiters.push({ resolve, reject });
      } else {
        pending.set(update.mac, { update, waiters: [{ resolve, reject }] });
      }
      schedule();
    });

  return {
    async sighted(input) {
      const mac = normalizeMac(input.mac);
      if (!mac) return 'dropped';
      if (await store.getMachine(mac)) return 'known';
      if (!pending.has(mac) && pending.size >= maxPending) {
        log.warn({ mac, maxPending }, 'too many unknown machines waiting to be registered; sighting dropped');
        return 'dropped';
      }
      return enqueue({ mac, at: now().toISOString(), uuid: input.uuid, ip: input.ip }).catch(() => 'dropped' as const);
    },
    async reportFacts(macInput, facts, ip) {
      const mac = normalizeMac(macInput);
      if (!mac) throw new ApplianceError('ERR_VALIDATION', 'mac: not a MAC address', { field: 'mac' });
      if (!pending.has(mac) && pending.size >= maxPending) {
        throw new ApplianceError('ERR_DISCOVERY_BUSY', 'too many machines are reporting at once; retry in a few seconds', { mac });
      }
      const reported = typeof facts.uuid === 'string' ? normalizeUuid(facts.uuid) : undefined;
      const outcome = await enqueue({ mac, at: now().toISOString(), facts, ip, uuid: reported });
      if (outcome === 'capped') {
        throw new ApplianceError('ERR_DISCOVERY_FULL', `the appliance already holds ${cap} discovered machines; assign or delete some before new machines can report`, { mac });
      }
      return outcome;
    },
    async flush() {
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
        inFlight = inFlight.then(runBatch);
      }
      await inFlight;
    },
  };
}
