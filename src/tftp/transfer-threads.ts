/**
 * Transfer threads: in a boot storm the TFTP server's one thread spends its time in send
 * syscalls (on a local segment the kernel delivers each datagram inside the sender's call), so
 * with more than one core, transfers of in-memory boot files are spread over worker threads, each
 * with its own sockets and event loop, and the main thread keeps one share of them itself.
 *
 * What stays on the main thread: the listening socket, every request's resolution (names, virtual
 * files, the boot-file cache), the limits and the reaping, and every log line and event (a
 * thread's lines are sent here and written through the transfer's own logger, so they read the
 * same). What a thread does: the transfer socket and the state machine of transfer.ts, from the
 * first reply to the last ACK, sending from the cached file's shared memory (no copy).
 *
 * Transfers go round-robin over the threads and the main thread (`threads` in all, the main one
 * included). The threads start with the server, which listens once they have loaded; one that
 * dies ends its transfers (logged, an event each) and is not used again.
 *
 * Only cached octet reads are handed over: a large file read from disk, netascii and virtual
 * files are sent from the main thread.
 *
 * The main thread learns of a thread's first ACK by message, so a transfer acknowledged a moment
 * ago can still be taken for unacknowledged when a limit is reached in that moment and be reaped:
 * its client times out and asks again, as for any reaped transfer.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.js';
import type { NegotiationLimits } from './negotiate.js';
import type { RequestPacket, TftpPacket } from './packet.js';
import type { HandedTransfer, RemotePeer, Transfer, TransferLogLevel } from './transfer.js';

/** What a thread needs to run a handed-over transfer's state machine (transfer.ts TransferContext). */
export interface ThreadSettings {
  host: string;
  limits: NegotiationLimits;
  retries: number;
  pendingMs: number;
}

/** Main thread -> transfer thread. */
export type ToThread =
  | { t: 'start'; id: number; handed: HandedTransfer; settings: ThreadSettings; levels: TransferLogLevel[] }
  | { t: 'repeat'; id: number; request: RequestPacket }
  | { t: 'moved-on'; id: number; name: string }
  | { t: 'abort'; id: number; reason: string };

/** Transfer thread -> main thread. */
export type FromThread =
  | { t: 'log'; id: number; level: TransferLogLevel; fields: Record<string, unknown>; msg: string }
  | { t: 'record'; type: 'tftp-file' | 'tftp-error'; address: string; detail: Record<string, unknown> }
  | { t: 'warn'; fields: Record<string, unknown>; msg: string }
  | { t: 'send-main'; packet: TftpPacket; to: { address: string; port: number } }
  | { t: 'acked'; id: number }
  | { t: 'finished'; id: number; retry: RequestPacket | undefined; completed: boolean }
  | { t: 'ready' };

/** What the threads do on the main thread's behalf. */
export interface ThreadHost {
  log: Logger;
  settings: ThreadSettings;
  record(type: 'tftp-file' | 'tftp-error', address: string, detail: Record<string, unknown>): void;
  warnLimited(fields: Record<string, unknown>, msg: string): void;
  sendFromMain(packet: TftpPacket, to: { address: string; port: number }): void;
}

/** The threads of one TFTP server. */
export interface TransferThreads {
  /** Hand `transfer` over, or undefined when it is the main thread's turn (or no thread can take it). */
  offload(transfer: Transfer, handed: HandedTransfer): RemotePeer | undefined;
  /** Resolves once every thread has loaded (a thread that fails to is logged and not used). */
  ready(): Promise<void>;
  /** Transfers handed over since start, and threads running. */
  stats(): { handedOver: number; running: number };
  /** End every thread (their transfers were aborted first). */
  stop(): Promise<void>;
}

/** `--tftp-threads`: 0 means one per core, at most 4. */
export function transferThreadCount(setting: number, cores: number): number {
  return setting > 0 ? setting : Math.max(1, Math.min(cores, 4));
}

const LEVELS: readonly TransferLogLevel[] = ['debug', 'info', 'warn', 'error'];

/**
 * Start a thread on transfer-thread.js beside this file. Run from source (tests, the bench
 * script under tsx) it is transfer-thread.ts, and a worker does not inherit tsx's loader from
 * `--import=tsx`, so the thread registers it before importing the entry.
 */
function spawn(): Worker {
  const ext = path.extname(fileURLToPath(import.meta.url));
  const url = new URL(`./transfer-thread${ext}`, import.meta.url);
  const options = { resourceLimits: THREAD_HEAP };
  if (ext !== '.ts') return new Worker(url, options);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); })`, { ...options, eval: true });
}

/**
 * A thread's heap: it holds a few hundred transfers' state and garbage of one datagram each, and
 * without a bound of its own it would take the process's `--initial-old-space-size` before
 * collecting (measured: 25 MiB more peak RSS through a 200-client storm).
 */
const THREAD_HEAP = { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 4 };

interface Thread {
  /** Undefined once the thread has died or was stopped. */
  worker: Worker | undefined;
  dead: boolean;
  transfers: Map<number, Transfer>;
  /** Resolves when the thread has loaded its entry, or has died. */
  loaded: Promise<void>;
  markLoaded(): void;
}

/** `threads` in all, the main thread included: 1 hands nothing over. The threads start at once. */
export function createTransferThreads(threads: number, host: ThreadHost): TransferThreads {
  // The first transfer goes to a thread, then the main thread, and so on.
  let turn = threads > 1 ? 1 : 0;
  let nextId = 1;
  let handedOver = 0;
  let stopped = false;
  // The log level is set at start and never changes: the levels a thread forwards are known now.
  const levels = LEVELS.filter((level) => host.log.isLevelEnabled(level));

  function onMessage(thread: Thread, msg: FromThread): void {
    switch (msg.t) {
      case 'log':
        thread.transfers.get(msg.id)?.remoteLog(msg.level, msg.fields, msg.msg);
        return;
      case 'record':
        host.record(msg.type, msg.address, msg.detail);
        return;
      case 'warn':
        host.warnLimited(msg.fields, msg.msg);
        return;
      case 'send-main':
        host.sendFromMain(msg.packet, msg.to);
        return;
      case 'acked':
        thread.transfers.get(msg.id)?.remoteAcknowledged();
        return;
      case 'finished': {
        const transfer = thread.transfers.get(msg.id);
        thread.transfers.delete(msg.id);
        transfer?.remoteEnded(msg.retry, msg.completed);
        return;
      }
      case 'ready':
        thread.markLoaded();
        return;
    }
  }

  function died(thread: Thread, why: string): void {
    if (thread.dead) return;
    thread.dead = true;
    thread.worker = undefined;
    thread.markLoaded();
    if (stopped) return;
    host.log.error({ err: why, transfers: thread.transfers.size }, 'tftp transfer thread ended; its transfers failed, the rest are sent from the main thread');
    for (const [, transfer] of thread.transfers) {
      host.record('tftp-error', transfer.client.address, { file: transfer.request.filename, reason: 'thread-exit' });
      transfer.remoteEnded(undefined, false);
    }
    thread.transfers.clear();
  }

  function startThread(): Thread {
    let markLoaded = (): void => undefined;
    const loaded = new Promise<void>((resolve) => (markLoaded = resolve));
    const thread: Thread = { worker: undefined, dead: false, transfers: new Map(), loaded, markLoaded };
    let worker: Worker;
    try {
      worker = spawn();
    } catch (err) {
      died(thread, (err as Error).message);
      return thread;
    }
    worker.unref();
    worker.on('message', (msg: FromThread) => {
      try {
        onMessage(thread, msg);
      } catch (err) {
        host.log.error({ err: (err as Error).message }, 'tftp transfer thread message failed');
      }
    });
    worker.on('error', (err) => died(thread, err.message));
    worker.on('exit', (code) => died(thread, `exit code ${code}`));
    thread.worker = worker;
    return thread;
  }

  const pool: Thread[] = [];
  for (let i = 1; i < threads; i++) pool.push(startThread());

  function post(thread: Thread, msg: ToThread): void {
    thread.worker?.postMessage(msg);
  }

  return {
    offload(transfer, handed) {
      if (pool.length === 0 || stopped || !(handed.content.buffer instanceof SharedArrayBuffer)) return undefined;
      const slot = turn;
      turn = (turn + 1) % (pool.length + 1);
      const thread = slot === 0 ? undefined : pool[slot - 1];
      const worker = thread?.worker;
      if (!thread || !worker) return undefined;
      const id = nextId++;
      try {
        worker.postMessage({ t: 'start', id, handed, settings: host.settings, levels } satisfies ToThread);
      } catch (err) {
        died(thread, (err as Error).message);
        return undefined;
      }
      thread.transfers.set(id, transfer);
      handedOver += 1;
      return {
        repeat: (request) => post(thread, { t: 'repeat', id, request }),
        movedOn: (name) => post(thread, { t: 'moved-on', id, name }),
        // Kept in the map until the thread says it finished: its last lines (the abort's) are still written.
        abort: (reason) => post(thread, { t: 'abort', id, reason }),
      };
    },
    async ready() {
      // A thread that failed to start or load is dead (died() logged it): its turns go to the main thread.
      await Promise.all(pool.map((t) => t.loaded));
    },
    stats: () => ({ handedOver, running: pool.filter((t) => t.worker !== undefined).length }),
    async stop() {
      stopped = true;
      await Promise.all(pool.map((t) => t.worker?.terminate().catch(() => undefined)));
      for (const t of pool) {
        t.worker = undefined;
        t.transfers.clear();
      }
    },
  };
}
