/**
 * A lowdb adapter for the database file that validates what it reads and writes durably.
 * lowdb's own JSONFile (steno) renames atomically but never fsyncs, so a power cut can leave an
 * empty or truncated file after the rename; here each write goes to a temp file in the same
 * directory, is fsynced, renamed over the target, and the directory is fsynced so the rename
 * itself survives a crash (the previous file stays intact until the rename).
 */
import { readFile, stat } from 'node:fs/promises';
import type { Adapter } from 'lowdb';
import { writeFileDurable, writeTempFileSynced, type WriteTempFile } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import { parseDb, type Db } from './schema.js';

export { writeTempFileSynced, type WriteTempFile } from '../durable-file.js';

/** Serialize the database the way it is stored: 2-space JSON with a final newline. */
export function serializeDb(db: Db): string {
  return `${JSON.stringify(db, null, 2)}\n`;
}

/** Parse file text into a validated Db; throws ERR_STORE_BAD_JSON or ERR_VALIDATION (with field). */
export function parseDbText(text: string, file: string): Db {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ApplianceError('ERR_STORE_BAD_JSON', `${file} is not valid JSON: ${(err as Error).message}`, { file }, { cause: err });
  }
  return parseDb(raw);
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
      await writeFileDurable(this.file, text, { mode, writeTemp: this.#writeTemp });
    } catch (err) {
      throw new ApplianceError('ERR_STORE_WRITE', `could not write ${this.file}: ${(err as Error).message}; the previous file is unchanged`, { file: this.file }, { cause: err });
    }
    this.lastText = text;
  }
}
