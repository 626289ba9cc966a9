/**
 * Profile selection: which profile a machine boots. A pure function of the database and what
 * the machine told us (MAC, UUID, arch), so it is table-tested without a network.
 *
 * Order (first hit wins):
 *  0. a machine's pending one-shot boot (`nextBoot`, for /ipxe) or the provisioning it started
 *     (`provisioning`, for cloud-config and preseed requests), see lifecycle.ts;
 *  1. a machine record found by UUID, then by MAC, that names a profile;
 *  2. the most specific matching group: a group matches when every key of its selector matches
 *     (mac, uuid, arch, each label against the machine record's labels, and each fact
 *     expression against its reported facts, see fact-selector.ts); specificity is the number
 *     of keys it matched (each label and each fact expression counts as one key); an empty selector matches
 *     every machine with specificity 0 (a catch-all that wins over the default). Ties go to the group whose
 *     id sorts first (plain string comparison), so the answer never depends on file order;
 *  3. the default profile.
 * `local-disk` is a built-in profile (lifecycle.ts) unless the database defines one.
 * A profile named by the winning rule that does not exist is reported as `kind: 'none'`
 * rather than silently falling through: the operator asked for it by name.
 */
import { normalizeMac, normalizeUuid } from '../identity.js';
import { checkFacts } from './fact-selector.js';
import { LOCAL_DISK_PROFILE } from './lifecycle.js';
import { LOCAL_DISK_PROFILE_ID, type Db, type Facts, type Group, type Machine, type Profile } from './schema.js';

/** What a booting machine tells us about itself (from the iPXE query string). */
export interface SelectQuery {
  mac?: string | undefined;
  uuid?: string | undefined;
  arch?: string | undefined;
  /**
   * `boot` (default): an /ipxe request, which a pending one-shot answers. `config`: a
   * cloud-config or preseed request, which a provisioning in progress answers.
   */
  purpose?: 'boot' | 'config' | undefined;
  /**
   * The machine's last facts report (runtime state store), for fact selectors on groups. Never
   * part of the operator's record: it can only match a group's fact selector, never a record.
   */
  facts?: Facts | undefined;
}

/** How a profile was chosen, for logs and the boot script header. */
export type SelectedVia = 'once' | 'provisioning' | 'machine-uuid' | 'machine-mac' | 'group' | 'default';

/** The outcome of selection: a profile, or none with the reason (never an exception). */
export type Selection =
  | { kind: 'profile'; profile: Profile; via: SelectedVia; machine?: Machine; group?: Group; reasons?: string[] }
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

/** How one group's selector compared with a machine: matched keys, or the first that failed. */
export interface GroupMatch {
  group: string;
  /** Number of selector keys matched (specificity), or -1 when a key failed. */
  score: number;
  /** One line per matched key, e.g. `labels.rack == a`, `cpu.count >= 4 (got 8)`. */
  reasons: string[];
  /** Why it did not match (the first key that failed). */
  failed?: string;
}

/** Compare one group's selector with a machine, key by key, saying why (see GroupMatch). */
export function explainGroup(group: Group, query: SelectQuery, machine: Machine | undefined): GroupMatch {
  const sel = group.selector;
  const reasons: string[] = [];
  const no = (failed: string): GroupMatch => ({ group: group.id, score: -1, reasons, failed });
  if (sel.mac !== undefined) {
    const mac = query.mac ? normalizeMac(query.mac) : machine?.mac;
    if (mac !== sel.mac) return no(`mac == ${sel.mac} (got ${mac ?? 'none'})`);
    reasons.push(`mac == ${sel.mac}`);
  }
  if (sel.uuid !== undefined) {
    const uuid = normalizeUuid(query.uuid) ?? machine?.uuid;
    if (uuid !== sel.uuid) return no(`uuid == ${sel.uuid} (got ${uuid ?? 'none'})`);
    reasons.push(`uuid == ${sel.uuid}`);
  }
  if (sel.arch !== undefined) {
    if (query.arch === undefined || query.arch.toLowerCase() !== sel.arch.toLowerCase()) return no(`arch == ${sel.arch} (got ${query.arch ?? 'none'})`);
    reasons.push(`arch == ${sel.arch}`);
  }
  for (const [key, value] of Object.entries(sel.labels ?? {})) {
    const got = machine?.labels?.[key];
    if (got !== value) return no(`labels.${key} == ${value} (got ${got ?? 'none'})`);
    reasons.push(`labels.${key} == ${value}`);
  }
  if (sel.facts !== undefined && sel.facts.length > 0) {
    // Facts are the machine's own claim (POST .../facts): a machine without a record or
    // without facts matches no fact selector.
    const { checks } = checkFacts(sel.facts, query.facts);
    for (const c of checks) {
      if (!c.matched) return no(`facts: ${c.reason}`);
      reasons.push(`facts: ${c.reason}`);
    }
  }
  return { group: group.id, score: reasons.length, reasons };
}

/** Number of selector keys matched, or -1 when any key fails. */
export function matchGroup(group: Group, query: SelectQuery, machine: Machine | undefined): number {
  return explainGroup(group, query, machine).score;
}

/** The most specific group matching the machine (ties: the lower id), with why. */
function bestGroup(db: Db, query: SelectQuery, machine: Machine | undefined): { group: Group; score: number; reasons: string[] } | undefined {
  let best: { group: Group; score: number; reasons: string[] } | undefined;
  for (const group of db.groups) {
    const { score, reasons } = explainGroup(group, query, machine);
    if (score < 0) continue;
    if (!best || score > best.score || (score === best.score && group.id < best.group.id)) best = { group, score, reasons };
  }
  return best;
}

/**
 * The group the machine belongs to by its selectors, whatever chose its profile: a one-shot
 * boots another profile, but the machine stays in its group (matchbox's metadata is the group's).
 */
export function memberGroup(db: Db, query: SelectQuery): Group | undefined {
  return bestGroup(db, query, findMachine(db, query)?.machine)?.group;
}

/** Select the profile a machine boots (see the module comment for the order). */
export function selectProfile(db: Db, query: SelectQuery): Selection {
  const found = findMachine(db, query);
  const machine = found?.machine;
  const byId = (id: string): Profile | undefined => db.profiles.find((p) => p.id === id) ?? (id === LOCAL_DISK_PROFILE_ID ? LOCAL_DISK_PROFILE : undefined);

  // 0. A one-shot boot (for /ipxe) or the provisioning it started (for its configs).
  const pending = query.purpose === 'config' ? machine?.provisioning?.profile : machine?.nextBoot?.profile;
  if (machine && pending !== undefined) {
    const profile = byId(pending);
    if (!profile) return { kind: 'none', reason: `machine ${machine.mac} has a one-shot boot of profile "${pending}", which does not exist`, machine };
    return { kind: 'profile', profile, via: query.purpose === 'config' ? 'provisioning' : 'once', machine };
  }

  if (found && machine?.profile !== undefined) {
    const profile = byId(machine.profile);
    if (!profile) return { kind: 'none', reason: `machine ${machine.mac} names profile "${machine.profile}", which does not exist`, machine };
    return { kind: 'profile', profile, via: found.via, machine };
  }

  const best = bestGroup(db, query, machine);
  if (best) {
    const { group, reasons } = best;
    const profile = byId(group.profile);
    const base = machine ? { machine, group } : { group };
    if (!profile) return { kind: 'none', reason: `group "${group.id}" names profile "${group.profile}", which does not exist`, ...base };
    return { kind: 'profile', profile, via: 'group', ...base, reasons };
  }

  const withMachine = machine ? { machine } : {};
  if (db.defaultProfile === undefined) {
    return { kind: 'none', reason: 'no machine record, group or default profile matches this machine', ...withMachine };
  }
  const profile = byId(db.defaultProfile);
  if (!profile) return { kind: 'none', reason: `default profile "${db.defaultProfile}" does not exist`, ...withMachine };
  return { kind: 'profile', profile, via: 'default', ...withMachine };
}

/** Which group chose the profile and why, for logs and the timeline. */
export function groupDetail(selection: Selection): Record<string, unknown> {
  if (selection.kind !== 'profile' || selection.via !== 'group' || !selection.group) return {};
  return { group: selection.group.id, ...(selection.reasons ? { why: selection.reasons } : {}) };
}
