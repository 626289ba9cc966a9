/**
 * Profile selection: which profile a machine boots. A pure function of the database and what
 * the machine told us (MAC, UUID, arch), so it is table-tested without a network.
 *
 * Order (first hit wins):
 *  1. a machine record found by UUID, then by MAC, that names a profile;
 *  2. the most specific matching group: a group matches when every key of its selector matches
 *     (mac, uuid, arch, and each label against the machine record's labels); specificity is
 *     the number of keys it matched (each label counts as one key); an empty selector matches
 *     every machine with specificity 0 (a catch-all that wins over the default). Ties go to the group whose
 *     id sorts first (plain string comparison), so the answer never depends on file order;
 *  3. the default profile.
 * A profile named by the winning rule that does not exist is reported as `kind: 'none'`
 * rather than silently falling through: the operator asked for it by name.
 */
import { normalizeMac, normalizeUuid } from '../identity.js';
import type { Db, Group, Machine, Profile } from './schema.js';

/** What a booting machine tells us about itself (from the iPXE query string). */
export interface SelectQuery {
  mac?: string | undefined;
  uuid?: string | undefined;
  arch?: string | undefined;
}

/** How a profile was chosen, for logs and the boot script header. */
export type SelectedVia = 'machine-uuid' | 'machine-mac' | 'group' | 'default';

/** The outcome of selection: a profile, or none with the reason (never an exception). */
export type Selection =
  | { kind: 'profile'; profile: Profile; via: SelectedVia; machine?: Machine; group?: Group }
  | { kind: 'none'; reason: string; machine?: Machine; group?: Group };

/** @deprecated import from identity.ts; kept so branches written before the move still build. */
export { isPlaceholderUuid, normalizeUuid } from '../identity.js';

/** Find the machine record for a query: by UUID first, then by MAC. */
export function findMachine(db: Db, query: SelectQuery): { machine: Machine; via: 'machine-uuid' | 'machine-mac' } | undefined {
  const uuid = normalizeUuid(query.uuid);
  if (uuid) {
    const m = db.machines.find((x) => x.uuid === uuid);
    if (m) return { machine: m, via: 'machine-uuid' };
  }
  const mac = query.mac ? normalizeMac(query.mac) : undefined;
  if (mac) {
    const m = db.machines.find((x) => x.mac === mac);
    if (m) return { machine: m, via: 'machine-mac' };
  }
  return undefined;
}

/** Number of selector keys matched, or -1 when any key fails. */
export function matchGroup(group: Group, query: SelectQuery, machine: Machine | undefined): number {
  const sel = group.selector;
  let score = 0;
  if (sel.mac !== undefined) {
    const mac = query.mac ? normalizeMac(query.mac) : machine?.mac;
    if (mac !== sel.mac) return -1;
    score++;
  }
  if (sel.uuid !== undefined) {
    const uuid = normalizeUuid(query.uuid) ?? machine?.uuid;
    if (uuid !== sel.uuid) return -1;
    score++;
  }
  if (sel.arch !== undefined) {
    if (query.arch === undefined || query.arch.toLowerCase() !== sel.arch.toLowerCase()) return -1;
    score++;
  }
  for (const [key, value] of Object.entries(sel.labels ?? {})) {
    if (machine?.labels?.[key] !== value) return -1;
    score++;
  }
  return score;
}

/** Select the profile a machine boots (see the module comment for the order). */
export function selectProfile(db: Db, query: SelectQuery): Selection {
  const found = findMachine(db, query);
  const machine = found?.machine;
  const byId = (id: string): Profile | undefined => db.profiles.find((p) => p.id === id);

  if (found && machine?.profile !== undefined) {
    const profile = byId(machine.profile);
    if (!profile) return { kind: 'none', reason: `machine ${machine.mac} names profile "${machine.profile}", which does not exist`, machine };
    return { kind: 'profile', profile, via: found.via, machine };
  }

  let best: { group: Group; score: number } | undefined;
  for (const group of db.groups) {
    const score = matchGroup(group, query, machine);
    if (score < 0) continue;
    if (!best || score > best.score || (score === best.score && group.id < best.group.id)) best = { group, score };
  }
  if (best) {
    const { group } = best;
    const profile = byId(group.profile);
    const base = machine ? { machine, group } : { group };
    if (!profile) return { kind: 'none', reason: `group "${group.id}" names profile "${group.profile}", which does not exist`, ...base };
    return { kind: 'profile', profile, via: 'group', ...base };
  }

  const withMachine = machine ? { machine } : {};
  if (db.defaultProfile === undefined) {
    return { kind: 'none', reason: 'no machine record, group or default profile matches this machine', ...withMachine };
  }
  const profile = byId(db.defaultProfile);
  if (!profile) return { kind: 'none', reason: `default profile "${db.defaultProfile}" does not exist`, ...withMachine };
  return { kind: 'profile', profile, via: 'default', ...withMachine };
}
