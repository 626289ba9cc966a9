/**
 * The verified facts DHCP's boot-file choice reads (boot/loader.ts, called per packet from
 * appliance.ts): an in-memory index, because DHCP decides synchronously and facts live on disk in
 * the state store (state-store.ts). Only VERIFIED facts enter it (a spoofed, unverified report
 * must not change what another machine boots), and of those only what the groups' fact
 * selectors can read: each machine's facts are projected onto the paths the selectors name
 * (`dmi.vendor`, `nics.#.vendor`, `disks.#` ...), so a selector gives the same answer, and the
 * same reason, on the projection as on the whole report, and the DHCP-time choice equals the
 * one the boot script makes with the full facts.
 *
 * Kept current: `note` is called by the state store whenever a machine's stored facts change
 * (verified facts stored, replaced by unverified ones, deleted); `sync` is called at start and
 * whenever DHCP's copy of the database is refreshed (when the store's revision moved), parses
 * the groups' selectors again only when their text changed, and re-reads the verified facts
 * from disk only when the selectors read a path they did not read before. Bounded: a
 * projection larger than `maxEntryBytes`, or one that would take the index past `maxTotalBytes`, is left out (warned
 * about): that machine's DHCP-time choice then ignores its facts, as before this index existed.
 */
import type { Logger } from '../log.js';
import { createLogBudget } from '../log-budget.js';
import { parseFactSelector, type FactValue } from './fact-selector.js';
import type { Db, Facts } from './schema.js';

/** Bounds of the index. */
export interface FactsIndexLimits {
  /** Largest projection of one machine's facts, serialized bytes (default 4 KiB). */
  maxEntryBytes: number;
  /** Largest total of all projections, bytes (default 16 MiB: 4096 machines at the entry bound). */
  maxTotalBytes: number;
}

/** Default bounds. */
export const DEFAULT_FACTS_INDEX_LIMITS: FactsIndexLimits = { maxEntryBytes: 4096, maxTotalBytes: 4096 * 4096 };

/** Where `sync` re-reads verified facts from (the state store). */
export interface FactsSource {
  list(): ReadonlyArray<{ mac: string; factsVerified?: boolean }>;
  getFacts(mac: string): Promise<Facts | undefined>;
}

/** The index (see the module comment). */
export interface FactsIndex {
  /** The projection of `mac`'s verified facts (lowercase colon-separated MAC); one Map lookup. */
  get(mac: string): Facts | undefined;
  /** `mac`'s stored facts changed: verified ones, or undefined (unverified now, or deleted). */
  note(mac: string, facts: Facts | undefined): void;
  /** Follow the groups of `db`: when their selectors read new paths, re-read verified facts from `source`. */
  sync(db: Db, source: FactsSource): Promise<void>;
  /** What the index holds (for /healthz and /metrics). */
  status(): FactsIndexStatus;
}

/** What {@link FactsIndex.status} reports. */
export interface FactsIndexStatus {
  /** Machines whose projection is held. */
  machines: number;
  /** Serialized bytes of the projections held. */
  bytes: number;
  /** Distinct selector paths read. */
  paths: number;
  /** Machines with verified facts left out by the bounds: their DHCP-time choice ignores their facts. */
  skipped: number;
}

/** Options for {@link createFactsIndex}. */
export interface FactsIndexOptions {
  log: Logger;
  limits?: Partial<FactsIndexLimits>;
  /** Clock of the once-a-minute warning (ms; tests). */
  now?: () => number;
  /** The fact-selector parser (default fact-selector.ts; tests count its calls). */
  parse?: (source: string) => { path: readonly string[] };
}

/** A set of selector paths as a trie: `end` where a path stops (its whole value is read there). */
interface PathTrie {
  end: boolean;
  next: Map<string, PathTrie>;
}

const emptyTrie = (): PathTrie => ({ end: false, next: new Map() });

/** The distinct paths the groups' fact selectors read, sorted (expressions that do not parse read nothing). */
export function selectorPaths(db: Pick<Db, 'groups'>, parse: (source: string) => { path: readonly string[] } = parseFactSelector): string[] {
  const out = new Set<string>();
  for (const group of db.groups) {
    for (const source of group.selector.facts ?? []) {
      try {
        out.add(parse(source).path.join('.'));
      } catch {
        // Counts as not matching (fact-selector.ts checkFacts): no fact can change that.
      }
    }
  }
  return [...out].sort();
}

function buildTrie(paths: readonly string[]): PathTrie {
  const root = emptyTrie();
  for (const p of paths) {
    let node = root;
    for (const seg of p.split('.')) {
      let child = node.next.get(seg);
      if (!child) node.next.set(seg, (child = emptyTrie()));
      node = child;
    }
    node.end = true;
  }
  return root;
}

function mergeTries(a: PathTrie, b: PathTrie): PathTrie {
  const next = new Map(a.next);
  for (const [k, t] of b.next) next.set(k, next.has(k) ? mergeTries(next.get(k)!, t) : t);
  return { end: a.end || b.end, next };
}

/**
 * `value` cut down to what the paths in `trie` reach, with the answers of fact-selector.ts
 * `factValues` kept: a path's end keeps its whole value; a list keeps its length (`list.#`),
 * with the elements no path reads as null; `#` reads every element, an index one element.
 */
function project(value: FactValue, trie: PathTrie): FactValue {
  if (trie.end) return value;
  if (Array.isArray(value)) {
    const every = trie.next.get('#');
    const fan = every && every.next.size > 0 ? { end: false, next: every.next } : undefined;
    return value.map((element, i) => {
      const one = trie.next.get(String(i));
      const sub = fan && one ? mergeTries(fan, one) : (fan ?? one);
      return sub ? project(element, sub) : null;
    });
  }
  if (value !== null && typeof value === 'object') {
    // fromEntries defines own properties, so a "__proto__" key stays a key.
    const kept: Array<[string, FactValue]> = [];
    for (const [key, sub] of trie.next) if (key !== '#' && Object.hasOwn(value, key)) kept.push([key, project(value[key]!, sub)]);
    return Object.fromEntries(kept);
  }
  return value;
}

/** Create an empty index (it reads no selector paths until the first `sync`). */
export function createFactsIndex(options: FactsIndexOptions): FactsIndex {
  const log = options.log.child({ subsystem: 'facts-index' });
  const limits: FactsIndexLimits = { ...DEFAULT_FACTS_INDEX_LIMITS, ...options.limits };
  const entries = new Map<string, { facts: Facts; bytes: number }>();
  let total = 0;
  let trie = emptyTrie();
  let pathsKey = '';
  // The database is re-read whenever it changed (appliance.ts watchDb), its groups rarely:
  // their selectors are parsed again only when their text did.
  let selectorsText: string | undefined;
  let parsedPaths: string[] = [];
  let generation = 0;
  let running: Promise<void> = Promise.resolve();
  /** MACs noted while a re-read runs: what the re-read read of them may be older. */
  let touched: Set<string> | undefined;
  const skipped = new Set<string>();
  // One warning a minute about projections left out; the next says how many were not warned about.
  const warnBudget = createLogBudget(1, 60_000, options.now);

  const drop = (mac: string): void => {
    const old = entries.get(mac);
    if (old) {
      total -= old.bytes;
      entries.delete(mac);
    }
    skipped.delete(mac);
  };

  const put = (mac: string, facts: Facts | undefined): void => {
    drop(mac);
    if (facts === undefined || trie.next.size === 0) return;
    const projected = project(facts, trie) as Facts;
    if (Object.keys(projected).length === 0) return;
    const bytes = Buffer.byteLength(JSON.stringify(projected));
    if (bytes > limits.maxEntryBytes || total + bytes > limits.maxTotalBytes) {
      skipped.add(mac);
      const { log: warn, suppressed } = warnBudget.take();
      if (warn) {
        log.warn(
          { mac, bytes, total, ...limits, ...(suppressed > 0 ? { suppressed } : {}) },
          `the facts fact selectors read of ${mac} (${bytes} bytes) do not fit the dhcp facts index: its boot file is chosen without facts (the boot script still uses them); select on smaller facts`,
        );
      }
      return;
    }
    entries.set(mac, { facts: projected, bytes });
    total += bytes;
  };

  const reread = async (source: FactsSource, mine: number): Promise<void> => {
    touched = new Set();
    try {
      const verified = new Set<string>();
      for (const rec of source.list()) {
        if (generation !== mine) return;
        if (!rec.factsVerified) continue;
        verified.add(rec.mac);
        if (touched.has(rec.mac)) continue;
        const facts = await source.getFacts(rec.mac).catch(() => undefined);
        if (!touched.has(rec.mac) && generation === mine) put(rec.mac, facts);
      }
      for (const mac of [...entries.keys(), ...skipped]) if (!verified.has(mac) && !touched.has(mac)) drop(mac);
      if (trie.next.size > 0) log.debug({ machines: entries.size, bytes: total, skipped: skipped.size }, 'dhcp facts index built');
    } finally {
      touched = undefined;
    }
  };

  return {
    get: (mac) => entries.get(mac)?.facts,
    note(mac, facts) {
      touched?.add(mac);
      put(mac, facts);
    },
    sync(db, source) {
      const text = JSON.stringify(db.groups.map((g) => g.selector.facts ?? []));
      if (text !== selectorsText) {
        parsedPaths = selectorPaths(db, options.parse);
        selectorsText = text;
      }
      const paths = parsedPaths;
      const key = paths.join('\n');
      if (key === pathsKey) return running;
      pathsKey = key;
      trie = buildTrie(paths);
      const mine = ++generation;
      if (paths.length === 0) {
        entries.clear();
        skipped.clear();
        total = 0;
      }
      running = running.then(() => (generation === mine && paths.length > 0 ? reread(source, mine) : undefined));
      return running;
    },
    status: () => ({ machines: entries.size, bytes: total, paths: pathsKey === '' ? 0 : pathsKey.split('\n').length, skipped: skipped.size }),
  };
}
