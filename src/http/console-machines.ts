/**
 * Gathers, for the console, every machine the appliance knows: the operator's records (db.json),
 * machines in the runtime state store (seen booting or reporting facts, registered as
 * discovered when nobody declared them) and MACs that only appear in the event log (DHCP/TFTP
 * traffic, no boot script yet: often the stuck ones). The one place that knows where runtime
 * state lives; rows are built from the neutral MachineSource.
 */
import type { StateStore } from '../store/state-store.js';
import type { HttpDeps } from './context.js';
import { machineRow, type MachineRow, type MachineSource } from './console-view.js';

/** Every known machine as a MachineSource, in MAC order (just `only` when given). */
export async function listMachineSources(deps: Pick<HttpDeps, 'store' | 'events'>, state: StateStore, only?: string): Promise<MachineSource[]> {
  const sources = new Map<string, MachineSource>();
  const want = (mac: string): boolean => only === undefined || mac === only;
  for (const m of await deps.store.listMachines()) if (want(m.mac)) sources.set(m.mac, { mac: m.mac, declared: m });
  for (const r of state.list()) {
    if (!want(r.mac)) continue;
    const source = sources.get(r.mac) ?? { mac: r.mac };
    source.runtime = r;
    // Facts are read from disk only for machines that reported some.
    if (r.factsAt !== undefined) source.facts = await state.getFacts(r.mac);
    sources.set(r.mac, source);
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
    const selection = await deps.store.selectProfile({ mac: source.mac, uuid: source.declared?.uuid ?? source.runtime?.uuid, facts: source.facts });
    rows.push(machineRow(source, selection, deps.events.list({ mac: source.mac }), deps.events.lastIp(source.mac)));
  }
  return rows;
}
