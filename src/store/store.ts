/**
 * The Store interface (profiles, machines, groups, default profile) and the in-memory
 * implementation that the lowdb file store builds on and tests use as a fake. Every write is
 * validated (zod) and serialized through one queue, so concurrent API writes never lose one
 * another; a write that fails to persist changes nothing.
 */
import { ApplianceError } from '../errors.js';
import { normalizeMac } from '../identity.js';
import { applyMergePatch } from './merge-patch.js';
import {
  GroupSchema,
  IdSchema,
  MachineSchema,
  ProfileSchema,
  canonicalizeGroup,
  canonicalizeMachine,
  parseDb,
  parseOrThrow,
  type Db,
  type DbInput,
  type Group,
  type Machine,
  type Profile,
} from './schema.js';
import { selectProfile as selectFromDb, type SelectQuery, type Selection } from './select.js';

/** Result of a put: the stored value and whether it was new (201) or replaced (200). */
export interface PutResult<T> {
  value: T;
  created: boolean;
}

/**
 * Where profiles, machines and groups live. Reads never throw for a missing record (undefined);
 * puts validate and throw ERR_VALIDATION naming the field; deletes throw ERR_*_NOT_FOUND, and
 * ERR_PROFILE_IN_USE for a profile still named by a machine, group or the default.
 */
export interface Store {
  listProfiles(): Promise<Profile[]>;
  getProfile(id: string): Promise<Profile | undefined>;
  putProfile(input: unknown): Promise<PutResult<Profile>>;
  deleteProfile(id: string): Promise<void>;
  listMachines(): Promise<Machine[]>;
  /** `mac` in any common notation. */
  getMachine(mac: string): Promise<Machine | undefined>;
  /** Find a machine by UUID (case-insensitive). */
  findMachineByUuid(uuid: string): Promise<Machine | undefined>;
  putMachine(input: unknown): Promise<PutResult<Machine>>;
  deleteMachine(mac: string): Promise<void>;
  /**
   * Read-modify-write one machine inside the write queue: `change` gets a copy and returns the
   * new record (validated like a put). Throws ERR_MACHINE_NOT_FOUND for an unknown MAC.
   */
  updateMachine(mac: string, change: (machine: Machine) => Machine): Promise<Machine>;
  listGroups(): Promise<Group[]>;
  getGroup(id: string): Promise<Group | undefined>;
  putGroup(input: unknown): Promise<PutResult<Group>>;
  deleteGroup(id: string): Promise<void>;
  /**
   * Change a few fields of a record with a JSON merge patch (RFC 7396: `null` removes a field).
   * A machine that has no record yet is created from `{ mac }` plus the patch.
   */
  patchProfile(id: string, patch: unknown): Promise<PutResult<Profile>>;
  patchMachine(mac: string, patch: unknown): Promise<PutResult<Machine>>;
  patchGroup(id: string, patch: unknown): Promise<PutResult<Group>>;
  getDefaultProfileId(): Promise<string | undefined>;
  /** Set (or clear with undefined) the default profile; the profile must exist. */
  setDefaultProfileId(id: string | undefined): Promise<void>;
  /** The profile a machine boots (see select.ts). */
  selectProfile(query: SelectQuery): Promise<Selection>;
  /** A copy of the whole database. */
  snapshot(): Promise<Db>;
  /**
   * A number that changes whenever the database does (a write, a hand edit picked up): a
   * reader polling `snapshot` copies only when it moved.
   */
  revision?(): number;
  /** Health of the backing file: `ok: false` with the reason while a bad hand edit is refused. */
  status(): StoreStatus;
  /** Stop watching files; pending writes finish first. */
  close(): Promise<void>;
}

/** Health of a store's backing file. */
export interface StoreStatus {
  ok: boolean;
  /** Why the file on disk is not being served (bad JSON, field that failed validation). */
  error?: string;
  /** ISO time the current state was loaded or written. */
  loadedAt: string;
}

/** Hooks that turn the in-memory core into a persistent store. */
export interface StoreCoreHooks {
  /** Persist the next state; throwing leaves the state unchanged. */
  persist?: (db: Db) => Promise<void>;
  /** Runs inside the write queue before each write (the file store reloads hand edits here). */
  beforeWrite?: () => Promise<void>;
  /** Checks beyond the schema (template files exist); throws ERR_VALIDATION naming the field. */
  check?: (db: Db) => void;
  status?: () => StoreStatus;
  close?: () => Promise<void>;
}

/** The in-memory heart of every store, with `replace` for reloads from disk. */
export interface StoreCore extends Store {
  /** The current validated state (not a copy: do not mutate). */
  current(): Db;
  /** Swap in a validated state (hand edit picked up). */
  replace(db: Db): void;
  /** Run `task` inside the write queue (serialized with writes). */
  exclusive<T>(task: () => Promise<T>): Promise<T>;
}

/** Marks a write that changed nothing (not persisted); carries the write's result. */
class Unchanged<T> {
  constructor(readonly value: T) {}
}

function notFound(kind: 'profile' | 'machine' | 'group', key: string): ApplianceError {
  return new ApplianceError(`ERR_${kind.toUpperCase()}_NOT_FOUND`, `${kind} ${JSON.stringify(key)} does not exist`, {
    [kind === 'machine' ? 'mac' : 'id']: key,
  });
}

/** Build a store around an initial state; `hooks.persist` makes it durable. */
export function createStoreCore(initial: DbInput, hooks: StoreCoreHooks = {}): StoreCore {
  let db = parseDb(initial);
  let revision = 0;
  let loadedAt = new Date().toISOString();
  let queue: Promise<unknown> = Promise.resolve();

  const exclusive = <T>(task: () => Promise<T>): Promise<T> => {
    const run = queue.then(task, task);
    queue = run.catch(() => undefined);
    return run;
  };

  /**
   * Apply `change` to a copy, validate the whole document, persist, then publish. A change may
   * return NO_CHANGE (with its result) to skip persisting when it changed nothing.
   */
  const write = <T>(change: (draft: Db) => T): Promise<T> => writeIfChanged<T>(change);
  const writeIfChanged = <T>(change: (draft: Db) => T | Unchanged<T>): Promise<T> =>
    exclusive(async () => {
      await hooks.beforeWrite?.();
      const draft = structuredClone(db);
      const result = change(draft);
      if (result instanceof Unchanged) return result.value as T;
      const next = parseDb(draft);
      hooks.check?.(next);
      await hooks.persist?.(next);
      db = next;
      revision += 1;
      loadedAt = new Date().toISOString();
      return result;
    });

  const copy = <T>(v: T): T => structuredClone(v);
  const macKey = (mac: string): string => normalizeMac(mac) ?? mac;

  const profileUsers = (d: Db, id: string): string[] => [
    ...(d.defaultProfile === id ? ['defaultProfile'] : []),
    ...d.machines.filter((m) => m.profile === id).map((m) => `machine ${m.mac}`),
    ...d.groups.filter((g) => g.profile === id).map((g) => `group ${g.id}`),
  ];

  return {
    current: () => db,
    replace(next) {
      db = next;
      revision += 1;
      loadedAt = new Date().toISOString();
    },
    exclusive,
    async listProfiles() {
      return copy(db.profiles);
    },
    async getProfile(id) {
      return copy(db.profiles.find((p) => p.id === id));
    },
    async putProfile(input) {
      const profile = parseOrThrow(ProfileSchema, input);
      return write((d) => {
        const i = d.profiles.findIndex((p) => p.id === profile.id);
        if (i >= 0) d.profiles[i] = profile;
        else d.profiles.push(profile);
        return { value: copy(profile), created: i < 0 };
      });
    },
    async deleteProfile(id) {
      return write((d) => {
        const i = d.profiles.findIndex((p) => p.id === id);
        if (i < 0) throw notFound('profile', id);
        const users = profileUsers(d, id);
        if (users.length > 0) {
          throw new ApplianceError(
            'ERR_PROFILE_IN_USE',
            `profile "${id}" is still used by ${users.slice(0, 5).join(', ')}${users.length > 5 ? ', ...' : ''}; reassign them first`,
            { id, users },
          );
        }
        d.profiles.splice(i, 1);
      });
    },
    async listMachines() {
      return copy(db.machines);
    },
    async getMachine(mac) {
      const key = macKey(mac);
      return copy(db.machines.find((m) => m.mac === key));
    },
    async findMachineByUuid(uuid) {
      const key = uuid.toLowerCase();
      return copy(db.machines.find((m) => m.uuid === key));
    },
    async putMachine(input) {
      const machine = canonicalizeMachine(parseOrThrow(MachineSchema, input));
      return write((d) => {
        const i = d.machines.findIndex((m) => m.mac === machine.mac);
        if (i >= 0) d.machines[i] = machine;
        else d.machines.push(machine);
        if (machine.uuid && d.machines.some((m) => m.mac !== machine.mac && m.uuid === machine.uuid)) {
          throw new ApplianceError('ERR_VALIDATION', `uuid: another machine already has uuid ${machine.uuid}`, { field: 'uuid' });
        }
        return { value: copy(machine), created: i < 0 };
      });
    },
    async deleteMachine(mac) {
      const key = macKey(mac);
      return write((d) => {
        const i = d.machines.findIndex((m) => m.mac === key);
        if (i < 0) throw notFound('machine', key);
        d.machines.splice(i, 1);
      });
    },
    async updateMachine(mac, change) {
      const key = macKey(mac);
      return write((d) => {
        const i = d.machines.findIndex((m) => m.mac === key);
        if (i < 0) throw notFound('machine', key);
        const next = canonicalizeMachine(parseOrThrow(MachineSchema, change(structuredClone(d.machines[i]!))));
        if (next.mac !== key) throw new ApplianceError('ERR_VALIDATION', 'mac: an update cannot change the MAC', { field: 'mac' });
        d.machines[i] = next;
        return copy(next);
      });
    },
    async listGroups() {
      return copy(db.groups);
    },
    async getGroup(id) {
      return copy(db.groups.find((g) => g.id === id));
    },
    async putGroup(input) {
      const group = canonicalizeGroup(parseOrThrow(GroupSchema, input));
      return write((d) => {
        const i = d.groups.findIndex((g) => g.id === group.id);
        if (i >= 0) d.groups[i] = group;
        else d.groups.push(group);
        return { value: copy(group), created: i < 0 };
      });
    },
    async deleteGroup(id) {
      return write((d) => {
        const i = d.groups.findIndex((g) => g.id === id);
        if (i < 0) throw notFound('group', id);
        d.groups.splice(i, 1);
      });
    },
    async patchProfile(id, patch) {
      return write((d) => {
        const i = d.profiles.findIndex((p) => p.id === id);
        if (i < 0) throw notFound('profile', id);
        const next = parseOrThrow(ProfileSchema, { ...(applyMergePatch(d.profiles[i], patch) as object), id });
        d.profiles[i] = next;
        return { value: copy(next), created: false };
      });
    },
    async patchMachine(mac, patch) {
      const key = macKey(mac);
      return write((d) => {
        const i = d.machines.findIndex((m) => m.mac === key);
        const base = i >= 0 ? d.machines[i] : { mac: key };
        const next = canonicalizeMachine(parseOrThrow(MachineSchema, { ...(applyMergePatch(base, patch) as object), mac: key }));
        if (i >= 0) d.machines[i] = next;
        else d.machines.push(next);
        return { value: copy(next), created: i < 0 };
      });
    },
    async patchGroup(id, patch) {
      return write((d) => {
        const i = d.groups.findIndex((g) => g.id === id);
        if (i < 0) throw notFound('group', id);
        const next = canonicalizeGroup(parseOrThrow(GroupSchema, { ...(applyMergePatch(d.groups[i], patch) as object), id }));
        d.groups[i] = next;
        return { value: copy(next), created: false };
      });
    },
    async getDefaultProfileId() {
      return db.defaultProfile;
    },
    async setDefaultProfileId(id) {
      if (id !== undefined) parseOrThrow(IdSchema, id, ['defaultProfile']);
      return write((d) => {
        if (id === undefined) {
          delete d.defaultProfile;
          return;
        }
        if (!d.profiles.some((p) => p.id === id)) throw notFound('profile', id);
        d.defaultProfile = id;
      });
    },
    async selectProfile(query) {
      return copy(selectFromDb(db, query));
    },
    async snapshot() {
      return copy(db);
    },
    revision: () => revision,
    status() {
      return hooks.status?.() ?? { ok: true, loadedAt };
    },
    async close() {
      await exclusive(async () => undefined);
      await hooks.close?.();
    },
  };
}

/** An in-memory Store (tests, and a fake for the HTTP app); same validation as the file store. */
export function createMemoryStore(initial: Partial<DbInput> = {}): Store {
  return createStoreCore({ profiles: [], machines: [], groups: [], ...initial });
}
