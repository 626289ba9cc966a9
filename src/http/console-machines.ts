/**
 * Gathers, for the console, every machine the appliance knows: records in the store (declared by
 * the operator, or registered by discovery with `state: "discovered"`) and MACs that only
 * appear in the event log (DHCP/TFTP traffic, no boot script yet: often the stuck ones). The
 * one place that knows where runtime facts live; rows are built from the neutral MachineSource.
 */
import type { HttpDeps } from './context.js';
import { machineRow, type MachineRow, type MachineSource } from './console-view.js';

/** Every known machine as a MachineSource, in MAC order (just `only` when given). */
export async function listMachineSources(deps: Pick<HttpDeps, 'store' | 'events'>, only?: string): Promise<MachineSource[]> {
  const sources = new Map<string, MachineSource>();
  for (const m of await deps.store.listMachines()) {
    if (only !== undefined && m.mac !== only) continue;
    const discovered = m.state === 'discovered';
    sources.set(m.mac, {
      mac: m.mac,
      declared: discovered ? undefined : m,
      runtime: { discovered, firstSeen: m.discoveredAt, lastSeen: m.factsAt, lastIp: m.lastSeenIp, uuid: m.uuid },
      facts: m.facts,
    });
  }
  // Wire traffic only: a deleted machine's facts report is not a reason to list it again.
  for (const e of deps.events.list({ limit: 10_000 })) {
    if (e.mac && e.type !== 'facts' && e.type !== 'discovered' && !sources.has(e.mac) && (only === undefined || e.mac === only)) sources.set(e.mac, { mac: e.mac });
  }
  return [...sources.values()].sort((a, b) => a.mac.localeCompare(b.mac));
}

/** The machines table (one row when `only` is a MAC). */
export async function consoleMachineRows(deps: Pick<HttpDeps, 'store' | 'events'>, only?: string): Promise<MachineRow[]> {
  const rows: MachineRow[] = [];
  for (const source of await listMachineSources(deps, only)) {
    const selection = await deps.store.selectProfile({ mac: source.mac, uuid: source.declared?.uuid ?? source.runtime?.uuid });
    rows.push(machineRow(source, selection, deps.events.list({ mac: source.mac }), deps.events.lastIp(source.mac)));
  }
  return rows;
}
