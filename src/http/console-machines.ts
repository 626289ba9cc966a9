/**
 * Gathers, for the console, every machine the appliance knows: the operator's records (db.json),
 * machines in the runtime state store (seen booting or reporting facts, registered as
 * discovered when nobody declared them) and MACs that only appear in the event log (DHCP/TFTP
 * traffic, no boot script yet: often the stuck ones). The one place that knows where runtime
 * state lives; rows are built from the neutral MachineSource.
 *
 * Facts live on disk (up to 64 KiB per machine, 256 MiB for a full fleet), so a listing must not
 * read them all: per machine it keeps a digest (the table's summary, the reported hostname, and
 * only the top-level facts that groups' fact selectors read, when small), refreshed when that
 * machine reports again. A listing of 4,096 machines then reads no facts from disk.
 */
import { parseFactSelectorCached } from '../store/fact-selector.js';
import type { Facts, Group } from '../store/schema.js';
import type { MachineState, StateStore } from '../store/state-store.js';
import type { HttpDeps } from './context.js';
import { machineRow, summarizeFacts, type FactsSummary, type MachineRow, type MachineSource } from './console-view.js';

/** Largest selector-relevant part of one machine's facts kept in memory (serialized bytes); larger is read from disk when needed. */
const MAX_KEPT_FACTS_BYTES = 4096;

/** What the console keeps of one facts report. */
interface FactsDigest {
  /** The report it was made from (MachineState.factsAt) and the selector keys it holds. */
  factsAt: string;
  keys: string;
  summary: FactsSummary | null;
  hostname: string | undefined;
  /** The top-level facts named by fact selectors; undefined when too large to keep. */
  selected: Facts | undefined;
}

const digestsByState = new WeakMap<StateStore, Map<string, FactsDigest>>();

/** Top-level fact names that the groups' fact selectors read (sorted). */
export function selectorFactKeys(groups: readonly Group[]): string[] {
  const keys = new Set<string>();
  for (const g of groups) {
    for (const source of g.selector?.facts ?? []) {
      try {
        const first = parseFactSelectorCached(source).path[0];
        if (first !== undefined) keys.add(first);
      } catch {
        // Refused at write time; a group that holds one matches nothing anyway.
      }
    }
  }
  return [...keys].sort();
}

/** The machine's facts digest, from the cache or (once per report) from disk. */
async function factsDigest(state: StateStore, rec: MachineState, keys: readonly string[]): Promise<FactsDigest | undefined> {
  if (rec.factsAt === undefined) return undefined;
  let digests = digestsByState.get(state);
  if (!digests) digestsByState.set(state, (digests = new Map()));
  const keyText = keys.join('\n');
  const cached = digests.get(rec.mac);
  if (cached && cached.factsAt === rec.factsAt && cached.keys === keyText) return cached;
  const facts = await state.getFacts(rec.mac);
  if (!facts) return undefined;
  const selected: Facts = {};
  for (const k of keys) if (Object.hasOwn(facts, k)) selected[k] = facts[k]!;
  const digest: FactsDigest = {
    factsAt: rec.factsAt,
    keys: keyText,
    summary: summarizeFacts(facts),
    hostname: typeof facts['hostname'] === 'string' && facts['hostname'] !== '' ? facts['hostname'] : undefined,
    selected: JSON.stringify(selected).length <= MAX_KEPT_FACTS_BYTES ? selected : undefined,
  };
  digests.set(rec.mac, digest);
  return digest;
}

/** Every known machine as a MachineSource, in MAC order (just `only` when given). */
export async function listMachineSources(deps: Pick<HttpDeps, 'store' | 'events'>, state: StateStore, only?: string): Promise<MachineSource[]> {
  const sources = new Map<string, MachineSource>();
  const want = (mac: string): boolean => only === undefined || mac === only;
  const keys = selectorFactKeys(await deps.store.listGroups());
  for (const m of await deps.store.listMachines()) if (want(m.mac)) sources.set(m.mac, { mac: m.mac, declared: m });
  const records = state.list();
  for (const r of records) {
    if (!want(r.mac)) continue;
    const source = sources.get(r.mac) ?? { mac: r.mac };
    source.runtime = r;
    const digest = await factsDigest(state, r, keys);
    if (digest) {
      source.factsSummary = digest.summary;
      source.factsHostname = digest.hostname;
      // Selection needs facts only when a group has fact selectors, and then only the facts they name.
      if (keys.length > 0) source.facts = digest.selected ?? (await state.getFacts(r.mac));
    }
    sources.set(r.mac, source);
  }
  if (only === undefined) {
    // Forget digests of machines the state store no longer holds.
    const digests = digestsByState.get(state);
    if (digests && digests.size > records.length) {
      const live = new Set(records.map((r) => r.mac));
      for (const mac of digests.keys()) if (!live.has(mac)) digests.delete(mac);
    }
  }
  // Wire traffic only: a deleted machine's facts report is not a reason to list it again.
  for (const e of deps.events.list({ limit: 10_000 })) {
    if (e.mac && e.type !== 'facts' && e.type !== 'discovered' && !sources.has(e.mac) && want(e.mac)) sources.set(e.mac, { mac: e.mac });
  }
  return [...sources.values()].sort((a, b) => a.mac.localeCompare(b.mac));
}

/** The machines table (one row when `only` is a MAC). */
export async function consoleMachineRows(deps: Pick<HttpDeps, 'store' | 'events'>, state: StateStore, only?: string): Promise<MachineRow[]> {
  const rows: MachineRow[] = [];
  for (const source of await listMachineSources(deps, state, only)) {
    // Unverified facts are shown but match no fact selector (routes/facts.ts).
    const facts = source.runtime?.factsVerified ? source.facts : undefined;
    const selection = await deps.store.selectProfile({ mac: source.mac, uuid: source.declared?.uuid ?? source.runtime?.uuid, facts });
    rows.push(machineRow(source, selection, deps.events.list({ mac: source.mac }), deps.events.lastIp(source.mac)));
  }
  return rows;
}
