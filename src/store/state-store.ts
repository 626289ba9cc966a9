/**
 * Runtime state, kept apart from the operator's db.json: what the appliance saw of each machine
 * (first/last seen, last address, last profile served, the UUID it booted with) and the facts it
 * reported. Boot traffic and discovery write here and never touch db.json.
 *
 * Layout beside db.json (`<db>.state/` by default):
 *
 *   machines/<12 hex digits>.json   one small record per machine (MachineState)
 *   facts/<12 hex digits>.json      that machine's last facts report
 *   timeline.jsonl, timeline.1.jsonl the boot timeline (timeline.ts)
 *
 * One file per machine, so a facts report or a sighting costs that machine's file, not the
 * fleet's. Records are held in memory (a few hundred bytes each); facts stay on disk and are read
 * when one machine is shown. Bounded: a cap on machines registered by discovery, a size bound
 * per facts report, and a bound on all facts together; a write that would pass a bound is
 * refused with a coded error, never a growing file.
 */
import { mkdir, readdir, readFile, rename, rm, open } from 'node:fs/promises';
import path from 'node:path';
import { ApplianceError } from '../errors.js';
import { normalizeMac } from '../events.js';
import type { Logger } from '../log.js';
import { createLogBudget } from '../log-budget.js';
import { tempPathFor, writeFileDurable } from '../durable-file.js';
import type { Facts } from './schema.js';

/** What the appliance knows about one machine at runtime (never written by the operator). */
export interface MachineState {
  /** Lowercase colon-separated MAC. */
  mac: string;
  /** Registered by discovery: the machine booted before the operator declared it. */
  discovered: boolean;
  /** ISO time of the first sighting or report. */
  firstSeen: string;
  /** ISO time of the latest sighting or report. */
  lastSeen: string;
  /** Address of the latest request. */
  lastIp?: string;
  /** Profile served at the latest boot. */
  lastProfile?: string;
  /** SMBIOS UUID the machine booted with (reported by the network: never used for selection). */
  uuid?: string;
  /** When facts were last reported, and their size in bytes (the facts live in facts/). */
  factsAt?: string;
  factsBytes?: number;
  /**
   * The stored facts came with the token of a trusted boot session (http/boot-sessions.ts) or
   * the API token: only then may they drive group selection. Absent on older records.
   */
  factsVerified?: boolean;
}

/** Limits of the state store. */
export interface StateLimits {
  /** Most machines registered by discovery (default 4096). */
  maxDiscovered: number;
  /** Largest facts report of one machine, serialized bytes (default 64 KiB). */
  maxFactsBytes: number;
  /** Largest total of all facts, bytes (default 4096 x 64 KiB = 256 MiB). */
  maxTotalFactsBytes: number;
}

/** Default bounds. */
export const DEFAULT_STATE_LIMITS: StateLimits = { maxDiscovered: 4096, maxFactsBytes: 64 * 1024, maxTotalFactsBytes: 4096 * 64 * 1024 };

/** A sighting: the machine asked for a boot script or another boot file. */
export interface Sighting {
  mac: string;
  ip?: string | undefined;
  uuid?: string | undefined;
  profile?: string | undefined;
}

/** What a sighting or report did. `capped`: new, but the discovery cap is reached; `off`: discovery is switched off. */
export type StateOutcome = 'registered' | 'updated' | 'capped' | 'off';

/** Options for {@link openStateStore}. */
export interface StateStoreOptions {
  /** Directory of the store; undefined keeps everything in memory (tests). */
  dir?: string | undefined;
  log: Logger;
  limits?: Partial<StateLimits>;
  /** Register unknown machines that boot (default true). */
  discovery?: boolean;
  /** Quiet time before dirty records are written, ms (default 200). */
  flushMs?: number;
  now?: () => Date;
  /**
   * Called after a machine's stored facts changed: with them when they are verified, with
   * undefined when they are not (or were deleted). The DHCP facts index follows it (facts-index.ts).
   */
  onFacts?: (mac: string, verified: Facts | undefined) => void;
}

/** The runtime state store. */
export interface StateStore {
  readonly dir: string | undefined;
  readonly limits: StateLimits;
  /** All records, oldest first-seen first. */
  list(): MachineState[];
  get(mac: string): MachineState | undefined;
  /** The machine's last facts report, read from disk. */
  getFacts(mac: string): Promise<Facts | undefined>;
  /**
   * Note a sighting. `declared`: the operator has a record for this MAC (then it is never
   * "discovered", and the cap does not apply). Written in the background, batched.
   */
  sighted(s: Sighting, declared: boolean): StateOutcome;
  /**
   * Store a facts report (durably, before resolving), `verified` or not (default not).
   * Throws ERR_FACTS_TOO_LARGE / ERR_STATE_FULL / ERR_DISCOVERY_FULL / ERR_DISCOVERY_OFF.
   */
  putFacts(mac: string, facts: Facts, ip: string | undefined, declared: boolean, verified?: boolean): Promise<StateOutcome>;
  /** Forget a machine's state and facts; false when there was none. */
  delete(mac: string): Promise<boolean>;
  /** Forget every machine that `isDeclared` says the operator does not know; returns their MACs. */
  deleteDiscovered(isDeclared: (mac: string) => boolean): Promise<string[]>;
  /** Registration of unknown machines on or off (runtime switch; the flag sets the start value). */
  discovery: boolean;
  /** Health: ok false with the reason while writes fail. */
  status(): { ok: boolean; error?: string; machines: number; factsBytes: number };
  /** Write dirty records now. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const fileKey = (mac: string): string => mac.replace(/:/g, '');
const macFromKey = (key: string): string | undefined => (/^[0-9a-f]{12}$/.test(key) ? key.match(/../g)!.join(':') : undefined);

/** Replace a file atomically without fsync: runtime state may lose the last moments at a power cut, never become torn. */
async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = tempPathFor(file);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(text);
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

function parseRecord(text: string, mac: string): MachineState | undefined {
  try {
    const r = JSON.parse(text) as Partial<MachineState>;
    if (typeof r !== 'object' || r === null || typeof r.firstSeen !== 'string' || typeof r.lastSeen !== 'string') return undefined;
    const out: MachineState = { mac, discovered: r.discovered === true, firstSeen: r.firstSeen, lastSeen: r.lastSeen };
    if (typeof r.lastIp === 'string') out.lastIp = r.lastIp;
    if (typeof r.lastProfile === 'string') out.lastProfile = r.lastProfile;
    if (typeof r.uuid === 'string') out.uuid = r.uuid;
    if (typeof r.factsAt === 'string') out.factsAt = r.factsAt;
    if (typeof r.factsBytes === 'number' && r.factsBytes >= 0) out.factsBytes = r.factsBytes;
    if (r.factsVerified === true) out.factsVerified = true;
    return out;
  } catch {
    return undefined;
  }
}

/** Open (or create) the state store in `options.dir` and load its records. */
export async function openStateStore(options: StateStoreOptions): Promise<StateStore> {
  const dir = options.dir !== undefined ? path.resolve(options.dir) : undefined;
  const records = new Map<string, MachineState>();
  if (dir !== undefined) {
    const machinesDir = path.join(dir, 'machines');
    const factsDir = path.join(dir, 'facts');
    await mkdir(machinesDir, { recursive: true });
    await mkdir(factsDir, { recursive: true });
    let skipped = 0;
    for (const name of await readdir(machinesDir)) {
      const mac = macFromKey(name.replace(/\.json$/, ''));
      if (!name.endsWith('.json') || mac === undefined) {
        if (name.startsWith('.') && name.endsWith('.tmp')) await rm(path.join(machinesDir, name), { force: true });
        continue;
      }
      const rec = parseRecord(await readFile(path.join(machinesDir, name), 'utf8').catch(() => ''), mac);
      if (!rec) {
        skipped++;
        continue;
      }
      records.set(mac, rec);
    }
    for (const name of await readdir(factsDir)) if (name.startsWith('.') && name.endsWith('.tmp')) await rm(path.join(factsDir, name), { force: true });
    if (skipped > 0) options.log.warn({ subsystem: 'state', dir: machinesDir, skipped }, 'unreadable machine state records skipped');
  }
  return createStateStore({ ...options, dir }, records);
}

/** A state store over preloaded `records` (none: in memory only, for tests and fakes). */
export function createStateStore(options: StateStoreOptions, records = new Map<string, MachineState>()): StateStore {
  const log = options.log.child({ subsystem: 'state' });
  const limits: StateLimits = { ...DEFAULT_STATE_LIMITS, ...options.limits };
  const now = options.now ?? (() => new Date());
  const flushMs = options.flushMs ?? 200;
  const dir = options.dir;
  const memFacts = new Map<string, Facts>();
  const dirty = new Set<string>();
  let totalFacts = 0;
  let discoveredCount = 0;
  let writeError: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> = Promise.resolve();
  // One warning a minute about machines the cap kept out; the next says how many were not warned about.
  const cappedBudget = createLogBudget(1, 60_000, () => now().getTime());
  const machinesDir = dir !== undefined ? path.join(dir, 'machines') : undefined;
  const factsDir = dir !== undefined ? path.join(dir, 'facts') : undefined;

  for (const r of records.values()) {
    totalFacts += r.factsBytes ?? 0;
    if (r.discovered) discoveredCount++;
  }
  if (dir !== undefined) log.info({ dir, machines: records.size, factsBytes: totalFacts }, 'machine state loaded');

  const writeDirty = async (): Promise<void> => {
    timer = undefined;
    if (!machinesDir) {
      dirty.clear();
      return;
    }
    const macs = [...dirty];
    dirty.clear();
    for (const mac of macs) {
      const rec = records.get(mac);
      const file = path.join(machinesDir, `${fileKey(mac)}.json`);
      try {
        if (rec) await writeAtomic(file, `${JSON.stringify({ ...rec, mac: undefined })}\n`);
        else await rm(file, { force: true });
        writeError = undefined;
      } catch (err) {
        writeError = `cannot write ${file}: ${(err as Error).message}`;
        log.warn({ mac, file, err: (err as Error).message }, 'machine state write failed');
      }
    }
  };
  const schedule = (): void => {
    if (timer) return;
    timer = setTimeout(() => {
      flushing = flushing.then(writeDirty);
    }, flushMs);
    timer.unref();
  };
  const markDirty = (mac: string): void => {
    dirty.add(mac);
    schedule();
  };

  const noteCapped = (mac: string): void => {
    const { log: warn, suppressed } = cappedBudget.take();
    if (warn) {
      log.warn(
        { mac, cap: limits.maxDiscovered, ...(suppressed > 0 ? { suppressed } : {}) },
        `discovered-machine cap (${limits.maxDiscovered}) reached; new machines are not registered until some are declared or deleted`,
      );
    }
  };

  /** Find or create the record for `mac`; undefined when it may not be created. */
  const recordFor = (mac: string, declared: boolean, at: string): { rec: MachineState; created: boolean } | 'capped' | 'off' => {
    const existing = records.get(mac);
    if (existing) {
      // Declared since it was discovered: it is the operator's machine now.
      if (declared && existing.discovered) {
        existing.discovered = false;
        discoveredCount--;
      }
      return { rec: existing, created: false };
    }
    if (!declared) {
      if (!store.discovery) return 'off';
      if (discoveredCount >= limits.maxDiscovered) {
        noteCapped(mac);
        return 'capped';
      }
    }
    const rec: MachineState = { mac, discovered: !declared, firstSeen: at, lastSeen: at };
    records.set(mac, rec);
    if (!declared) discoveredCount++;
    return { rec, created: true };
  };

  const store: StateStore = {
    dir,
    limits,
    discovery: options.discovery ?? true,
    list: () => [...records.values()].map((r) => ({ ...r })),
    get(mac) {
      const r = records.get(normalizeMac(mac) ?? mac);
      return r ? { ...r } : undefined;
    },
    async getFacts(macInput) {
      const mac = normalizeMac(macInput) ?? macInput;
      if (!records.get(mac)?.factsAt) return undefined;
      if (!factsDir) return structuredClone(memFacts.get(mac));
      try {
        return JSON.parse(await readFile(path.join(factsDir, `${fileKey(mac)}.json`), 'utf8')) as Facts;
      } catch {
        return undefined;
      }
    },
    sighted(s, declared) {
      const mac = normalizeMac(s.mac);
      if (!mac) return 'off';
      const at = now().toISOString();
      const found = recordFor(mac, declared, at);
      if (typeof found === 'string') return found;
      const { rec, created } = found;
      rec.lastSeen = at;
      if (s.ip !== undefined) rec.lastIp = s.ip;
      if (s.profile !== undefined) rec.lastProfile = s.profile;
      if (s.uuid !== undefined) rec.uuid = s.uuid;
      markDirty(mac);
      if (created && rec.discovered) log.info({ mac, ip: s.ip, uuid: s.uuid }, 'new machine discovered');
      return created ? 'registered' : 'updated';
    },
    async putFacts(macInput, facts, ip, declared, verified = false) {
      const mac = normalizeMac(macInput);
      if (!mac) throw new ApplianceError('ERR_VALIDATION', 'mac: not a MAC address', { field: 'mac' });
      const text = `${JSON.stringify(facts)}\n`;
      const bytes = Buffer.byteLength(text);
      if (bytes > limits.maxFactsBytes) {
        throw new ApplianceError('ERR_FACTS_TOO_LARGE', `facts of ${bytes} bytes exceed the ${limits.maxFactsBytes}-byte bound per machine`, { mac });
      }
      const previous = records.get(mac)?.factsBytes ?? 0;
      if (totalFacts - previous + bytes > limits.maxTotalFactsBytes) {
        throw new ApplianceError(
          'ERR_STATE_FULL',
          `the state store holds ${totalFacts} bytes of facts, its bound is ${limits.maxTotalFactsBytes}; delete discovered machines to make room`,
          { mac },
        );
      }
      const at = now().toISOString();
      const found = recordFor(mac, declared, at);
      if (found === 'capped')
        throw new ApplianceError(
          'ERR_DISCOVERY_FULL',
          `the appliance already holds ${limits.maxDiscovered} discovered machines; declare or delete some before new machines can report`,
          { mac },
        );
      if (found === 'off') throw new ApplianceError('ERR_DISCOVERY_OFF', 'discovery is switched off: only declared machines may report facts', { mac });
      const { rec, created } = found;
      if (factsDir) {
        try {
          await writeFileDurable(path.join(factsDir, `${fileKey(mac)}.json`), text);
          writeError = undefined;
        } catch (err) {
          if (created) {
            records.delete(mac);
            if (rec.discovered) discoveredCount--;
          }
          writeError = `cannot write facts of ${mac}: ${(err as Error).message}`;
          throw new ApplianceError('ERR_STORE_WRITE', `${writeError}; the previous facts are unchanged`, { mac }, { cause: err });
        }
      } else {
        memFacts.set(mac, structuredClone(facts));
      }
      totalFacts += bytes - previous;
      rec.factsAt = at;
      rec.factsBytes = bytes;
      if (verified) rec.factsVerified = true;
      else delete rec.factsVerified;
      rec.lastSeen = at;
      if (ip !== undefined) rec.lastIp = ip;
      markDirty(mac);
      options.onFacts?.(mac, verified ? facts : undefined);
      return created ? 'registered' : 'updated';
    },
    async delete(macInput) {
      const mac = normalizeMac(macInput) ?? macInput;
      const rec = records.get(mac);
      if (!rec) return false;
      records.delete(mac);
      memFacts.delete(mac);
      totalFacts -= rec.factsBytes ?? 0;
      if (rec.discovered) discoveredCount--;
      options.onFacts?.(mac, undefined);
      if (factsDir) await rm(path.join(factsDir, `${fileKey(mac)}.json`), { force: true });
      markDirty(mac);
      return true;
    },
    async deleteDiscovered(isDeclared) {
      const gone: string[] = [];
      for (const rec of [...records.values()]) {
        if (isDeclared(rec.mac)) continue;
        await store.delete(rec.mac);
        gone.push(rec.mac);
      }
      return gone;
    },
    status() {
      return { ok: writeError === undefined, ...(writeError !== undefined ? { error: writeError } : {}), machines: records.size, factsBytes: totalFacts };
    },
    async flush() {
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
        flushing = flushing.then(writeDirty);
      }
      await flushing;
    },
    async close() {
      await store.flush();
    },
  };
  return store;
}

/** The state directory for a database file: `config/db.json` -> `config/db.state/`. */
export function stateDirFor(dbPath: string): string {
  const base = path.basename(dbPath).replace(/\.json$/i, '');
  return path.join(path.dirname(dbPath), `${base}.state`);
}
