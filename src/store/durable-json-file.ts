/**
 * A lowdb adapter for the database file that validates what it reads and writes durably.
 * lowdb's own JSONFile (steno) renames atomically but never fsyncs, so a power cut can leave an
 * empty or truncated file after the rename; here each write goes to a temp file in the same
 * directory, is fsynced, renamed over the target, and the directory is fsynced so the rename
 * itself survives a crash (the previous file stays intact until the rename).
 */
import { linkSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Adapter } from 'lowdb';
import { syncDir, tempPathFor, writeTempFileSynced, type WriteTempFile } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import { locateJsonPath, parseErrorPosition } from './json-locate.js';
import { parseDb, type Db } from './schema.js';

export { writeTempFileSynced, type WriteTempFile } from '../durable-file.js';

/** Serialize the database the way it is stored: 2-space JSON with a final newline. */
export function serializeDb(db: Db): string {
  return `${JSON.stringify(db, null, 2)}\n`;
}

/**
 * Parse file text into a validated Db. Throws ERR_STORE_BAD_JSON with the line and column of
 * the syntax error, or ERR_VALIDATION listing every problem (up to MAX_REPORTED_ISSUES) as
 * `file:line:column: field: message`, machines named by MAC.
 */
export function parseDbText(text: string, file: string): Db {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const pos = parseErrorPosition(text, message);
    const where = pos ? `${file}:${pos.line}:${pos.column}` : file;
    throw new ApplianceError(
      'ERR_STORE_BAD_JSON',
      `${where}: not valid JSON: ${message}`,
      { file, ...(pos ? { line: pos.line, column: pos.column } : {}) },
      { cause: err },
    );
  }
  return parseDbValue(raw, text, file);
}

/** parseDb with each problem located in `text` (line:column) and all of them in the message. */
export function parseDbValue(raw: unknown, text: string, file: string): Db {
  try {
    return parseDb(raw);
  } catch (err) {
    if (!(err instanceof ApplianceError) || err.code !== 'ERR_VALIDATION') throw err;
    const issues = (err.detail?.issues ?? []) as { field: string; path: (string | number)[]; message: string }[];
    const located = issues.map((i) => {
      const pos = locateJsonPath(text, i.path);
      return { field: i.field, message: i.message, ...(pos ? { line: pos.line, column: pos.column } : {}) };
    });
    // In file order, so the report reads top to bottom like the file.
    located.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    const lines = located.map((i) => `${i.line !== undefined ? `${file}:${i.line}:${i.column}` : file}: ${i.field}: ${i.message}`);
    // Past the bound the report says how many it left out, so a fix of the listed ones is not
    // mistaken for a fix of all.
    const total = typeof err.detail?.['total'] === 'number' ? err.detail['total'] : lines.length;
    const count = total > lines.length ? `${total} problems (${lines.length} shown)` : `${lines.length} problems`;
    throw new ApplianceError(
      'ERR_VALIDATION',
      lines.length > 1 ? `${count}: ${lines.join('; ')}` : (lines[0] ?? err.message),
      { ...err.detail, file, issues: located, ...(located[0]?.line !== undefined ? { line: located[0].line, column: located[0].column } : {}) },
      { cause: err },
    );
  }
}

/** lowdb Adapter<Db> with validation on read and fsync'd atomic replace on write. */
export class DurableJsonFile implements Adapter<Db> {
  readonly file: string;
  /** Text last read from or written to the file: lets a watcher ignore our own writes. */
  lastText: string | undefined;
  readonly #writeTemp: WriteTempFile;

  constructor(file: string, options: { writeTemp?: WriteTempFile } = {}) {
    this.file = file;
    this.#writeTemp = options.writeTemp ?? writeTempFileSynced;
  }

  /** Raw text of the file, or null when it does not exist. */
  async readText(): Promise<string | null> {
    try {
      return await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** lowdb read: the validated database, or null when the file does not exist. Throws when invalid. */
  async read(): Promise<Db | null> {
    const text = await this.readText();
    if (text === null) return null;
    const db = parseDbText(text, this.file);
    this.lastText = text;
    return db;
  }

  /** lowdb write: validated, then temp + fsync + rename + fsync(dir) (durable-file.ts). */
  async write(data: Db): Promise<void> {
    const text = serializeDb(parseDb(data));
    let mode = 0o644;
    try {
      mode = (await stat(this.file)).mode & 0o777;
    } catch {
      // New file: default mode.
    }
    try {
      const tmp = tempPathFor(this.file);
      try {
        await this.#writeTemp(tmp, text, mode);
        swapIfUnchanged(this.file, tmp, this.lastText);
      } finally {
        await rm(tmp, { force: true }).catch(() => undefined);
      }
      await syncDir(path.dirname(this.file));
    } catch (err) {
      if (err instanceof ApplianceError) throw err;
      throw new ApplianceError(
        'ERR_STORE_WRITE',
        `could not write ${this.file}: ${(err as Error).message}; the previous file is unchanged`,
        { file: this.file },
        { cause: err },
      );
    }
    this.lastText = text;
  }
}

/** Where the database is parked for the instant of a swap (restored at open after a crash). */
export function previousPathFor(file: string): string {
  return `${file}.previous`;
}

/**
 * Replace `file` with `tmp` only if `file` still holds `expected` (undefined: must not exist),
 * with no window in which a hand edit could be lost: the current file is moved aside atomically
 * (rename), compared, and the new one is put in place with link(), which fails if an editor
 * created the file in the meantime. A hand edit that landed is left in place (or put back) and
 * ERR_STORE_CONFLICT is thrown. Synchronous on purpose: no other task runs in between.
 */
function swapIfUnchanged(file: string, tmp: string, expected: string | undefined): void {
  const previous = previousPathFor(file);
  const conflict = () =>
    new ApplianceError(
      'ERR_STORE_CONFLICT',
      `${file} was edited by hand while this write was in flight; the hand edit was loaded and this write refused: retry it`,
      { file },
    );
  let moved = false;
  try {
    renameSync(file, previous);
    moved = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (moved) {
    const current = readFileSync(previous, 'utf8');
    if (expected === undefined || current !== expected) {
      // Put the hand edit back (unless an even newer one arrived) and refuse.
      try {
        linkSync(previous, file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      unlinkSync(previous);
      throw conflict();
    }
  }
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      // An editor saved in the instant the file was aside: theirs is the newest.
      if (moved) unlinkSync(previous);
      throw conflict();
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
      // A filesystem without hard links: a plain rename (a hand edit in this instant could be lost).
      renameSync(tmp, file);
      if (moved) unlinkSync(previous);
      return;
    }
    if (moved) renameSync(previous, file);
    throw err;
  }
  if (moved) unlinkSync(previous);
}
