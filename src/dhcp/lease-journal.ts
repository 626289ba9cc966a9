/**
 * The lease journal: the DHCP servers' lease file (lease-file.ts, the format) kept open for
 * appends.
 *
 * Durability: records are appended in batches (every change recorded while one write and its
 * `fdatasync` run goes into the next one: group commit), and `flush()` resolves once everything
 * recorded before the call is on stable storage, so an ACK sent after it survives a crash or a
 * power cut (RFC 2131 section 4.3.2). `sync: 'none'` (`--lease-sync none`) writes without
 * fdatasync and does not make replies wait, like dnsmasq, which rewrites its lease file without
 * fsync: faster, and a power cut may lose the last seconds of bindings.
 *
 * The journal is compacted (rewritten as one `put` per record, atomically: temp file, fsync,
 * rename, fsync of the directory) at start and whenever it has grown to several times the
 * number of live records; that runs beside the appends (see `Compaction` below), so no flush
 * waits for it. Offers are not journaled (a hold lives in memory only). A corrupt or empty file
 * is moved aside (`FILE.corrupt-TIME`) with an error in the log, and the server starts with an
 * empty table; version 1 files are rewritten as a journal.
 */
import { open, mkdir, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { syncDir, tempPathFor } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';
import { encodeChange, ERR_LEASE_FILE, JOURNAL_HEADER, LeaseTable, parseLeaseFile, readLeaseText } from './lease-file.js';
import type { Lease, LeaseChange, LeaseSnapshot } from './leases.js';

/** How journal appends are made durable; `none` is `--lease-sync none`. */
export const LEASE_SYNC_MODES = ['fdatasync', 'none'] as const;
export type LeaseSync = (typeof LEASE_SYNC_MODES)[number];

/** Leases a compaction encodes before it lets the event loop turn. */
const COMPACT_SLICE = 500;

/** Options of openLeaseJournal. */
export interface LeaseJournalOptions {
  file: string;
  /** Default 'fdatasync'. */
  sync?: LeaseSync;
  log: Logger;
  /** Compact once the journal has this many records per live record (and at least 4096). Default 4. */
  compactFactor?: number;
  /** Called after each slice of leases a compaction encodes, before the event loop turns (tests). */
  onCompactSlice?: (encoded: number, total: number) => void | Promise<void>;
  /**
   * Called after each append with its seconds, write and (sync 'fdatasync') fdatasync: the
   * least an ACK that waits for its record waits (/metrics).
   */
  onWrite?: (seconds: number) => void;
  /** Clock for the name of a moved-aside file and for expiring declines. */
  now?: () => number;
}

/** Counters of a journal. */
export interface LeaseJournalStats {
  appends: number;
  writes: number;
  syncs: number;
  compactions: number;
  records: number;
}

/** An open lease journal. */
export interface LeaseJournal {
  /** The table read at open, for LeasePool.load. */
  readonly loaded: LeaseSnapshot;
  /** Record one change (synchronous: buffered for the next write). */
  record(change: LeaseChange): void;
  /**
   * Resolves once every change recorded before the call is written and (sync 'fdatasync')
   * on stable storage; rejects (ERR_LEASE_FILE) when that write failed. With sync 'none' it
   * resolves at once and the write follows.
   */
  flush(): Promise<void>;
  /** Write what is pending and close the file. */
  close(): Promise<void>;
  stats(): LeaseJournalStats;
}

/**
 * Open (or create) the journal: read it, move a corrupt or empty file aside, compact it, and
 * keep it open for appends. Throws `ERR_LEASE_FILE` only when the file cannot be read or the
 * directory cannot be written.
 */
export async function openLeaseJournal(options: LeaseJournalOptions): Promise<LeaseJournal> {
  const { file, log } = options;
  const sync = options.sync ?? 'fdatasync';
  const now = options.now ?? Date.now;
  const compactFactor = options.compactFactor ?? 4;
  let table = new LeaseTable();
  const text = await readLeaseText(file);
  if (text !== undefined) {
    try {
      const parsed = parseLeaseFile(text, file);
      table = parsed.table;
      if (parsed.torn)
        log.warn({ file }, 'lease file ended in a half-written record (a crash during an append); that record was never acknowledged and is ignored');
    } catch (err) {
      const aside = `${file}.corrupt-${new Date(now()).toISOString().replace(/[:.]/g, '-')}`;
      try {
        await rename(file, aside);
      } catch (renameErr) {
        throw new ApplianceError(
          ERR_LEASE_FILE,
          `${(err as Error).message}; and it cannot be moved aside: ${(renameErr as NodeJS.ErrnoException).code ?? (renameErr as Error).message}`,
          { file },
          { cause: err },
        );
      }
      log.error(
        { file, movedTo: aside, err: (err as Error).message },
        `lease file ${file} is corrupt or empty: moved to ${aside}; starting with no leases (clients keep their addresses by asking for them again)`,
      );
    }
  }
  const loaded = table.snapshot(now());
  const counters = { appends: 0, writes: 0, syncs: 0, compactions: 0 };
  let records = 0;
  let handle: FileHandle | undefined;
  /** Bytes known to be complete in the file: a failed append is cut back to here. */
  let size = 0;
  let pending: string[] = [];
  type Waiter = { resolve(): void; reject(err: Error): void };
  let waiters: Waiter[] = [];
  /** The waiters of the batch being written. */
  let inflight: Waiter[] | undefined;
  let running: Promise<void> | undefined;
  let lazy: NodeJS.Timeout | undefined;
  let closed = false;

  function writeError(err: unknown, what: string): ApplianceError {
    return new ApplianceError(
      ERR_LEASE_FILE,
      `cannot ${what} lease file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { file },
      { cause: err },
    );
  }

  /**
   * A compaction under way: the table's snapshot is encoded (in slices) and written to a temp
   * file while appends go on to the current file; every line recorded since the snapshot is
   * kept in `tail`. Once the temp file is synced (`ready`), the writer installs it between two
   * batches: tail appended, synced, renamed over the journal, directory synced. So no reply
   * waits for the encoding or the bulk write, only for that last step, and a crash at any point
   * leaves a file with every acknowledged record (the old one, or the new one with the tail).
   */
  type Compaction = { tail: string[]; ready: boolean; prepared: Promise<void>; tmp?: string; fh?: FileHandle | undefined; bytes: number; records: number };
  let compaction: Compaction | undefined;
  /** Records in the file when a failed compaction may be tried again. */
  let retryAt = 0;
  /**
   * Each lease's line as record() encoded it, with the lease it encodes: a compaction writes
   * these instead of encoding the whole table again (~5 us a lease, 40-60 ms for 10,000 on the
   * main thread). An entry counts only while its lease is the table's (a later put replaces it).
   */
  const lineOf = new Map<string, { lease: Lease; line: string }>();

  async function prepareCompaction(c: Compaction): Promise<void> {
    const snapshot = table.snapshot(now());
    // Keys a put on the same address took out of the table.
    for (const key of lineOf.keys()) if (!table.byKey.has(key)) lineOf.delete(key);
    const lines = [JOURNAL_HEADER];
    // Encoded in slices with a turn of the event loop between them: tens of thousands of leases
    // encoded at once held every DHCP answer for the whole encoding. The snapshot's lease
    // objects are never changed (a put replaces them).
    for (let i = 0; i < snapshot.leases.length; i++) {
      const lease = snapshot.leases[i]!;
      const cached = lineOf.get(lease.key);
      if (cached !== undefined && cached.lease === lease) lines.push(cached.line);
      else {
        // Read from the file at open (or replaced meanwhile: then the newer entry stays).
        const line = encodeChange({ op: 'put', lease });
        if (cached === undefined) lineOf.set(lease.key, { lease, line });
        lines.push(line);
      }
      if (i % COMPACT_SLICE === COMPACT_SLICE - 1) {
        await options.onCompactSlice?.(i + 1, snapshot.leases.length);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    for (const declined of snapshot.declined) lines.push(encodeChange({ op: 'decline', declined }));
    const data = lines.join('');
    c.tmp = tempPathFor(file);
    c.fh = await open(c.tmp, 'wx', 0o644);
    await c.fh.writeFile(data);
    await c.fh.datasync();
    c.bytes = Buffer.byteLength(data);
    c.records = lines.length - 1;
    c.ready = true;
  }

  async function discardCompaction(c: Compaction): Promise<void> {
    if (compaction === c) compaction = undefined;
    await c.fh?.close().catch(() => undefined);
    c.fh = undefined;
    if (c.tmp !== undefined) await rm(c.tmp, { force: true }).catch(() => undefined);
  }

  function compactionFailed(err: unknown): void {
    retryAt = records + Math.max(4096, compactFactor * table.size);
    log.error({ file, err: (err as Error).message }, 'could not compact the lease file; appends go on to it and the compaction is tried again later');
  }

  /** Start a compaction: the snapshot is taken now, the encoding and the bulk write run on. */
  function startCompaction(): Compaction {
    const c: Compaction = { tail: [], ready: false, prepared: Promise.resolve(), bytes: 0, records: 0 };
    compaction = c;
    c.prepared = prepareCompaction(c).catch(async (err: unknown) => {
      await discardCompaction(c);
      throw err;
    });
    return c;
  }

  /**
   * Install a ready compaction (between two batches: nothing is being appended). Throws, with
   * the journal untouched and the temp file removed, when the tail, sync or rename fails.
   */
  async function installCompaction(c: Compaction): Promise<void> {
    compaction = undefined;
    const extra = c.tail.join('');
    try {
      if (extra !== '') await c.fh!.write(extra);
      await c.fh!.datasync();
      await c.fh!.close();
      c.fh = undefined;
      await rename(c.tmp!, file);
    } catch (err) {
      await discardCompaction(c);
      throw err;
    }
    await syncDir(path.dirname(file));
    await handle?.close().catch(() => undefined);
    // The next append opens the new file.
    handle = undefined;
    size = c.bytes + Buffer.byteLength(extra);
    records = c.records + c.tail.length;
    counters.compactions += 1;
  }

  async function writeBatch(): Promise<void> {
    while (pending.length > 0 || compaction?.ready) {
      const batch = pending;
      const done = waiters;
      pending = [];
      waiters = [];
      inflight = done;
      const c = compaction;
      if (c?.ready) {
        let installed = false;
        try {
          await installCompaction(c);
          installed = true;
        } catch (err) {
          compactionFailed(err);
        }
        if (installed || batch.length === 0) {
          // Every line of this batch was recorded after the snapshot: the tail had it.
          for (const w of done) w.resolve();
          inflight = undefined;
          continue;
        }
      }
      try {
        if (!compaction && !closed && records + batch.length > Math.max(4096, compactFactor * table.size, retryAt)) {
          // In the background: this batch and the next go on to the current file meanwhile.
          const next = startCompaction();
          next.prepared.then(
            () => {
              if (compaction === next && !closed) kick();
            },
            (err: unknown) => compactionFailed(err),
          );
        }
        const data = Buffer.from(batch.join(''));
        const appendStart = process.hrtime.bigint();
        if (!handle) handle = await open(file, 'a');
        try {
          const { bytesWritten } = await handle.write(data, 0, data.length, null);
          if (bytesWritten !== data.length) throw Object.assign(new Error(`short write (${bytesWritten} of ${data.length} bytes)`), { code: 'ENOSPC' });
        } catch (err) {
          // Cut a partial append back off, so the file never holds a torn line in its middle.
          await handle.truncate(size).catch(() => undefined);
          throw err;
        }
        size += data.length;
        records += batch.length;
        counters.writes += 1;
        if (sync === 'fdatasync') {
          await handle.datasync();
          counters.syncs += 1;
        }
        options.onWrite?.(Number(process.hrtime.bigint() - appendStart) / 1e9);
        for (const w of done) w.resolve();
      } catch (err) {
        const error = writeError(err, 'append to');
        for (const w of done) w.reject(error);
        if (done.length === 0) log.error({ file, err: error.message }, 'could not write the lease file');
      }
      inflight = undefined;
    }
  }

  function kick(): void {
    if (lazy) clearTimeout(lazy);
    lazy = undefined;
    if (running) return;
    running = writeBatch().finally(() => {
      running = undefined;
      if ((pending.length > 0 || compaction?.ready) && !closed) kick();
    });
  }

  try {
    await mkdir(path.dirname(file), { recursive: true });
    // Nothing is recorded before open returns: the compacted file is the whole table.
    const first = startCompaction();
    await first.prepared;
    await installCompaction(first);
  } catch (err) {
    throw writeError(err, 'write');
  }

  return {
    loaded,
    record(change) {
      // An offer's hold is not journaled, as dnsmasq and Kea keep offers in memory: a restart
      // forgets it, and the client's REQUEST is answered from the table (the address is free, or
      // it gets a NAK and starts over). Half the records of every exchange, and half the
      // compactions.
      if (change.op === 'put' && change.lease.state === 'offered') return;
      table.apply(change);
      const line = encodeChange(change);
      if (change.op === 'put') lineOf.set(change.lease.key, { lease: change.lease, line });
      else if (change.op === 'drop') lineOf.delete(change.key);
      pending.push(line);
      compaction?.tail.push(line);
      counters.appends += 1;
      // A change nobody waits for goes out with the next flush, or within 1 s.
      if (!lazy && !running && !closed) {
        lazy = setTimeout(kick, 1000);
        lazy.unref();
      }
    },
    flush() {
      if (sync === 'none') {
        if (pending.length > 0 && !closed) kick();
        return Promise.resolve();
      }
      // Nothing pending and no batch being written: every recorded change is on disk already.
      if (pending.length === 0 && !inflight) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        if (pending.length === 0 && inflight) {
          // Everything recorded is in the batch being written: wait for that one.
          inflight.push({ resolve, reject });
          return;
        }
        waiters.push({ resolve, reject });
        kick();
      });
    },
    async close() {
      closed = true;
      if (lazy) clearTimeout(lazy);
      lazy = undefined;
      // A compaction under way is finished, so the file is left compact.
      await compaction?.prepared.catch(() => undefined);
      while (running || pending.length > 0 || compaction?.ready) {
        if (!running) kick();
        await running;
      }
      await handle?.close().catch(() => undefined);
      handle = undefined;
    },
    stats: () => ({ ...counters, records }),
  };
}
