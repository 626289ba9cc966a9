/**
 * The lowdb-backed file store: one hand-editable JSON file. Writes go through the core's queue
 * and the durable adapter; hand edits are picked up without a restart (fs.watch on the
 * directory, so editors that write a new file and rename it over the old one are seen, plus a
 * slow mtime poll for filesystems where inotify says nothing, e.g. some bind mounts). A file that
 * fails to parse or validate is refused with a log line naming the field, and the last good
 * state keeps serving; API writes are refused (ERR_STORE_FILE_INVALID) until the file is fixed,
 * so they never overwrite the operator's unfinished edit. An API write never overwrites a hand
 * edit that landed after the file was read: the file is compared again right before the rename,
 * and a changed file is reloaded and the API write refused (ERR_STORE_CONFLICT, 409), with a log
 * line saying so. Only the operator's records live here: runtime state is in state-store.ts.
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Low } from 'lowdb';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';
import { createDefaultDb } from './defaults.js';
import { DurableJsonFile, parseDbText, previousPathFor, type WriteTempFile } from './durable-json-file.js';
import { assertDbTemplates } from './references.js';
import { locateJsonPath } from './json-locate.js';
import { DB_SCHEMA_FILE } from './defaults.js';
import { LEGACY_RUNTIME_FIELDS, dbJsonSchema, type Db } from './schema.js';
import { createStoreCore, type Store, type StoreStatus } from './store.js';
import { isTempFileOf, writeFileDurable } from '../durable-file.js';

/** Options for {@link openFileStore}. */
export interface FileStoreOptions {
  /** Path of the JSON database; created with defaults when missing. */
  path: string;
  log: Logger;
  /** Initial content when the file does not exist (default: createDefaultDb()). */
  defaults?: Db;
  /** Watch the file for hand edits (default true). */
  watch?: boolean;
  /** Quiet time after the last change event before reloading, ms (default 100). */
  debounceMs?: number;
  /** Use fs.watch events (default true); false leaves only the poll (tests, odd filesystems). */
  fsEvents?: boolean;
  /** mtime/size poll interval as a fallback for missing fs events, ms; 0 disables (default 2000). */
  pollMs?: number;
  /** Test seam: replaces the temp-file writer (simulate a failed or torn write). */
  writeTemp?: WriteTempFile;
  /** Templates directory: profiles naming a template that is not there are refused. */
  templatesDir?: string;
  /**
   * Runtime fields found in machine records of an older db.json (facts, discovered machines):
   * handed over once at start (to the state store), then removed from the file.
   */
  migrate?: (records: LegacyMachineState[]) => Promise<void>;
}

/** Runtime data an older db.json kept in machine records. */
export interface LegacyMachineState {
  mac: string;
  /** The record was registered by discovery (state "discovered"): it leaves db.json entirely. */
  discovered: boolean;
  uuid?: string;
  facts?: unknown;
  factsAt?: string;
  lastSeenIp?: string;
  discoveredAt?: string;
}

/** Split runtime data out of a parsed older db.json (mutates `raw`); the records found. */
export function extractLegacyState(raw: unknown): LegacyMachineState[] {
  const machines = raw && typeof raw === 'object' ? (raw as { machines?: unknown }).machines : undefined;
  if (!Array.isArray(machines)) return [];
  const found: LegacyMachineState[] = [];
  const keep: unknown[] = [];
  for (const m of machines) {
    const rec = m as Record<string, unknown>;
    const hasLegacy = rec && typeof rec === 'object' && LEGACY_RUNTIME_FIELDS.some((k) => k in rec);
    const discovered = rec?.['state'] === 'discovered';
    if (!hasLegacy && !discovered) {
      keep.push(m);
      continue;
    }
    const out: LegacyMachineState = { mac: String(rec['mac']), discovered };
    if (typeof rec['uuid'] === 'string') out.uuid = rec['uuid'];
    if (rec['facts'] !== undefined) out.facts = rec['facts'];
    for (const k of ['factsAt', 'lastSeenIp', 'discoveredAt'] as const) if (typeof rec[k] === 'string') out[k] = rec[k] as string;
    found.push(out);
    if (discovered) continue;
    const cleaned = { ...rec };
    for (const k of LEGACY_RUNTIME_FIELDS) delete cleaned[k];
    keep.push(cleaned);
  }
  (raw as { machines: unknown[] }).machines = keep;
  return found;
}

/** What a reload did. */
export type ReloadOutcome = 'unchanged' | 'reloaded' | 'refused' | 'missing';

/** A Store backed by a JSON file, with explicit reload for SIGHUP and tests. */
export interface FileStore extends Store {
  readonly path: string;
  /** Re-read the file now (serialized with writes). */
  reload(): Promise<ReloadOutcome>;
}

/**
 * Open (or create) the database file and return a store over it. Rejects with
 * ERR_STORE_BAD_JSON / ERR_VALIDATION when the file exists but is invalid at start: there is
 * no last good state to serve yet.
 */
export async function openFileStore(options: FileStoreOptions): Promise<FileStore> {
  const file = path.resolve(options.path);
  const log = options.log.child({ subsystem: 'store' });
  const debounceMs = options.debounceMs ?? 100;
  const pollMs = options.pollMs ?? 2000;
  await mkdir(path.dirname(file), { recursive: true });
  // Temp files left by a crash between writing and renaming are garbage: the rename never
  // happened, so the database file itself is the previous, intact version.
  for (const name of await readdir(path.dirname(file))) {
    if (isTempFileOf(file, name)) {
      await rm(path.join(path.dirname(file), name), { force: true });
      log.warn({ file, temp: name }, 'removed a temp file left by an interrupted write');
    }
  }

  // A crash in the instant of a swap leaves the database parked beside its name: put it back.
  const parked = previousPathFor(file);
  if (
    !(await stat(file).then(
      () => true,
      () => false,
    )) &&
    (await stat(parked).then(
      () => true,
      () => false,
    ))
  ) {
    await rename(parked, file);
    log.warn({ file }, 'restored the database from the copy an interrupted write had parked beside it');
  }
  const adapter = new DurableJsonFile(file, options.writeTemp ? { writeTemp: options.writeTemp } : {});
  const check = (db: Db): void => {
    if (options.templatesDir !== undefined) assertDbTemplates(db, options.templatesDir);
  };
  await migrateLegacy(adapter, file, log, options.migrate);
  // One Low instance per file (lowdb keeps no cross-instance lock). Constructed directly: the
  // JSONFilePreset helper silently switches to an in-memory adapter when NODE_ENV=test.
  const low = new Low<Db>(adapter, options.defaults ?? createDefaultDb());
  try {
    await low.read();
    if (adapter.lastText !== undefined) checkLocated(low.data, adapter.lastText, file, check);
  } catch (err) {
    if (err instanceof ApplianceError) {
      throw new ApplianceError(err.code, `${file}: ${err.message}`, { ...err.detail, file }, { cause: err });
    }
    throw err;
  }
  if (adapter.lastText === undefined) {
    await low.write();
    await writeSchemaBeside(file, log);
    log.info({ file }, 'database file did not exist; created it with defaults');
  }

  let fileError: string | undefined;
  let writeError: string | undefined;
  let refusedText: string | undefined;
  let closed = false;
  let loadedAt = new Date().toISOString();

  const core = createStoreCore(low.data, {
    persist: async (next) => {
      const previous = low.data;
      low.data = next;
      try {
        await low.write();
        writeError = undefined;
      } catch (err) {
        low.data = previous;
        if (err instanceof ApplianceError && err.code === 'ERR_STORE_CONFLICT') {
          // The operator's edit wins: load it, refuse the API write, say so.
          const outcome = await reloadNow();
          log.warn(
            { file, outcome },
            'a hand edit of the database landed while an API write was in flight: reloaded the hand edit and refused the API write (409); retry it',
          );
        } else {
          writeError = (err as Error).message;
        }
        throw err;
      }
    },
    check,
    beforeWrite: async () => {
      // A hand edit that the watcher has not delivered yet must not be overwritten.
      const outcome = await reloadNow();
      if (outcome === 'refused') {
        throw new ApplianceError(
          'ERR_STORE_FILE_INVALID',
          `${file} was edited by hand and is invalid (${fileError}); fix the file before writing through the API`,
          { file },
        );
      }
    },
    status: () => {
      const error = fileError ?? writeError;
      return { ok: error === undefined, ...(error !== undefined ? { error } : {}), loadedAt };
    },
  });

  /** Read the file; swap in a valid edit, refuse an invalid one. Call inside the queue. */
  async function reloadNow(): Promise<ReloadOutcome> {
    const text = await adapter.readText();
    if (text === null) {
      // Editors that rename briefly leave no file; a deleted file is recreated on the next write.
      return 'missing';
    }
    if (text === adapter.lastText) {
      fileError = undefined;
      return 'unchanged';
    }
    try {
      const db = parseDbText(text, file);
      checkLocated(db, text, file, check);
      adapter.lastText = text;
      low.data = db;
      core.replace(db);
      fileError = undefined;
      refusedText = undefined;
      loadedAt = new Date().toISOString();
      log.info({ file, profiles: db.profiles.length, machines: db.machines.length, groups: db.groups.length }, 'database file changed; reloaded');
      return 'reloaded';
    } catch (err) {
      const e = err as ApplianceError;
      fileError = e.message;
      if (refusedText !== text) {
        refusedText = text;
        log.warn(
          {
            file,
            field: e.detail?.field,
            line: e.detail?.line,
            column: e.detail?.column,
            issues: e.detail?.issues,
            total: e.detail?.total,
            code: e.code,
            err: e.message,
          },
          'database file refused; keeping the last good state',
        );
      }
      return 'refused';
    }
  }

  const reload = (): Promise<ReloadOutcome> => core.exclusive(reloadNow);

  let timer: NodeJS.Timeout | undefined;
  const schedule = (): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      reload().catch((err: unknown) => log.warn({ file, err: (err as Error).message }, 'database reload failed'));
    }, debounceMs);
    timer.unref();
  };

  let watcher: FSWatcher | undefined;
  let poller: NodeJS.Timeout | undefined;
  if (options.watch ?? true) {
    if (options.fsEvents ?? true)
      try {
        // Watch the directory, not the file: an editor's rename replaces the inode a file watch
        // would be attached to.
        watcher = watch(path.dirname(file), { persistent: false }, (_event, name) => {
          if (name === null || name === path.basename(file)) schedule();
        });
        watcher.on('error', (err) => log.warn({ file, err: err.message }, 'database watch failed; relying on polling'));
      } catch (err) {
        log.warn({ file, err: (err as Error).message }, 'cannot watch the database directory; relying on polling');
      }
    if (pollMs > 0) {
      const signature = async (): Promise<string> => {
        try {
          const st = await stat(file);
          return `${st.ino}:${st.size}:${st.mtimeMs}`;
        } catch {
          return 'missing';
        }
      };
      let last = await signature();
      poller = setInterval(() => {
        void signature().then((sig) => {
          if (sig !== last) schedule();
          last = sig;
        });
      }, pollMs);
      poller.unref();
    }
  }

  return {
    ...core,
    path: file,
    reload,
    status(): StoreStatus {
      return core.status();
    },
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      if (poller) clearInterval(poller);
      watcher?.close();
      await core.close();
    },
  };
}

/** Run `check` on `db`; its problems are reported like schema problems, with line and column in `text`. */
function checkLocated(db: Db, text: string, file: string, check: (db: Db) => void): void {
  try {
    check(db);
  } catch (err) {
    if (!(err instanceof ApplianceError) || err.code !== 'ERR_VALIDATION') throw err;
    const issues = (err.detail?.issues ?? []) as { field: string; path: (string | number)[]; message: string }[];
    const lines = issues.map((i) => {
      const pos = locateJsonPath(text, i.path);
      return `${pos ? `${file}:${pos.line}:${pos.column}` : file}: ${i.field}: ${i.message}`;
    });
    throw new ApplianceError('ERR_VALIDATION', lines.join('; ') || err.message, { ...err.detail, file }, { cause: err });
  }
}

/** Move runtime data out of an older db.json once, before it is read as the operator's file. */
async function migrateLegacy(adapter: DurableJsonFile, file: string, log: Logger, migrate: FileStoreOptions['migrate']): Promise<void> {
  if (!migrate) return;
  const text = await adapter.readText();
  if (text === null) return;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return; // Reported by the normal read.
  }
  const found = extractLegacyState(raw);
  if (found.length === 0) return;
  await migrate(found);
  await writeFileDurable(file, `${JSON.stringify(raw, null, 2)}\n`);
  log.warn(
    { file, machines: found.length, discovered: found.filter((f) => f.discovered).length },
    'moved runtime state (facts, discovered machines) out of the database file into the state store; db.json rewritten once',
  );
}

/** The JSON Schema beside a new database, so the "$schema" it carries resolves in editors. */
async function writeSchemaBeside(file: string, log: Logger): Promise<void> {
  const target = path.join(path.dirname(file), DB_SCHEMA_FILE);
  try {
    await writeFileDurable(target, `${JSON.stringify(dbJsonSchema(), null, 2)}\n`);
  } catch (err) {
    log.warn({ file: target, err: (err as Error).message }, 'cannot write the JSON Schema beside the database');
  }
}
