/**
 * Read-only TFTP server: RFC 1350 with option negotiation (RFC 2347), blksize (RFC 2348),
 * timeout and tsize (RFC 2349), windowsize (RFC 7440) and block-number rollover past 65535
 * (wraps to 0, as tftp-hpa, curl and iPXE expect).
 *
 * One listening socket takes requests; every transfer gets its own socket on an ephemeral port
 * (its TID, RFC 1350 section 4), connected to the client. The transfer state machine is in
 * transfer.ts; boot files are served from memory (file-cache.ts), larger files streamed.
 *
 * Decisions a lab engineer may look for (tftpd-hpa is the reference):
 * - Names: `\` is translated to `/`, leading `/` stripped (like `-s`), any `..` segment refused
 *   (error 2), symlinks leaving the root refused (error 2); see files.ts normalizeRequestName.
 * - netascii is converted (LF -> CR LF, CR -> CR NUL) like tftp-hpa; tsize is then not answered.
 * - WRQ: error 2. Unknown opcode / malformed request on port 69: error 4. Too-short datagrams,
 *   stray ACK/ERROR on port 69: dropped (debug log). Errors answering a request come from the
 *   listening socket; everything of a transfer from its own socket. Datagrams from another
 *   address or port never reach a transfer (connected socket; the kernel answers them with ICMP
 *   port unreachable, as for tftpd-hpa).
 * - A duplicate ACK never causes a resend (Sorcerer's Apprentice); loss is repaired by the
 *   retransmission timer (`timeoutMs` or the client's `timeout` option up to `timeoutMaxMs`,
 *   `retries` times) once the client has acknowledged something, and by the client repeating its
 *   request before that.
 * - Slots: at most `maxTransfers` at once and `maxPerClient` per client address. When a limit is
 *   reached, the oldest transfer that never got an ACK (abandoned, or a spoofed request) is
 *   reaped for the new one; only when every slot is a live transfer is the request refused with
 *   error 0 "server busy". A transfer never acknowledged holds its slot `pendingMs` at most.
 * - Threads: with `threads` above 1, transfers of cached boot files are spread over that many
 *   threads, this one included (transfer-threads.ts); requests, limits, logs and events stay here.
 * - IPv4 only (udp4), as PXE.
 */
import dgram from 'node:dgram';
import { ApplianceError, ConfigError } from '../errors.js';
import type { EventLog } from '../events.js';
import type { Logger } from '../log.js';
import { createLogBudget } from '../log-budget.js';
import { createFileCache, type FileCache } from './file-cache.js';
import { clip, DEFAULT_FALLBACK_DIRS } from './files.js';
import { decodePacket, encodePacket, TFTP_ERROR, TftpDecodeError, type RequestPacket, type TftpPacket } from './packet.js';
import { BLKSIZE_MAX, BLKSIZE_MIN, type NegotiationLimits } from './negotiate.js';
import type { VirtualFiles } from './read-source.js';
import { trimOldest } from '../bounded-map.js';
import { createRecentRequests } from './recent-requests.js';
import { sameRequest, Transfer, type TftpSocketFactory, type TransferContext } from './transfer.js';
import { createTransferThreads, type TransferThreads } from './transfer-threads.js';

export type { TftpSource } from './files.js';
export type { TftpSocketFactory } from './transfer.js';
export type { VirtualFileRequest, VirtualFiles } from './read-source.js';

/** Options of createTftpServer. */
export interface TftpServerOptions {
  /** The TFTP root: names are looked up here first. */
  root: string;
  /** Address to bind; default '0.0.0.0'. Transfer sockets bind the same address. */
  host?: string;
  /** Port to listen on (69 in production, 0 in tests). */
  port: number;
  /** Looked up when a name is not under root; default DEFAULT_FALLBACK_DIRS. */
  fallbackDirs?: readonly string[];
  /** Largest blksize granted (RFC 2348 range 8..65464); default 1468 (fits a 1500 MTU). */
  blksizeMax?: number;
  /** Largest windowsize granted (RFC 7440), 1..1024; default 16. */
  windowsizeMax?: number;
  /** Retransmission timeout when the client sends no `timeout` option; default 1000 ms. */
  timeoutMs?: number;
  /**
   * Largest client `timeout` option honoured (RFC 2349 allows 255 s; larger ones are ignored and
   * `timeoutMs` is used). Default 5000 ms: firmware asks for 1-4 s, and an abandoned transfer
   * then holds its slot (retries + 1) x 5 s at most instead of 25 minutes.
   */
  timeoutMaxMs?: number;
  /** Retransmissions without progress before a transfer is given up; default 5. */
  retries?: number;
  /**
   * How long a transfer the client never acknowledged holds its slot (no retransmission meanwhile);
   * default timeoutMs x (retries + 1).
   */
  pendingMs?: number;
  /** Concurrent transfers in total. Default 1000. */
  maxTransfers?: number;
  /** Concurrent transfers per client address. Default 32. */
  maxPerClient?: number;
  /** Largest file served from memory (boot-file cache); larger ones are streamed. Default 8 MiB. */
  cacheFileBytes?: number;
  /** Total bytes the boot-file cache keeps. Default 64 MiB. */
  cacheTotalBytes?: number;
  log: Logger;
  events?: EventLog;
  virtualFiles?: VirtualFiles;
  /**
   * Threads that send transfers of cached boot files, this one included (transfer-threads.ts);
   * default 1 (all on this thread). Ignored with a `socketFactory` (its sockets live here).
   */
  threads?: number;
  /** Fault-injection seam; default `dgram.createSocket('udp4')`. */
  socketFactory?: TftpSocketFactory;
}

/** Counters of a running server (tests, the benchmark). */
export interface TftpServerStats {
  transfers: number;
  pending: number;
  reaped: number;
  refusedBusy: number;
  cache: ReturnType<FileCache['stats']>;
  /** Transfers handed to transfer threads since start, and threads running. */
  threads: ReturnType<TransferThreads['stats']>;
}

/** A running (or startable) TFTP server. */
export interface TftpServer {
  /** Start the transfer threads and bind the listening socket; resolves with the bound port, rejects (ERR_TFTP_BIND) on error, or (ERR_TFTP_STOPPED) when stop() came first. */
  start(): Promise<{ port: number }>;
  /** Close the listening socket and abort every transfer. */
  stop(): Promise<void>;
  /** The bound port after start(), the configured port before. */
  readonly port: number;
  stats(): TftpServerStats;
}

/** How long after a transfer went out in full an identical request from its port is taken for a late copy. */
const LATE_COPY_MS = 1000;

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`tftp ${name} ${value} is out of range; use an integer from ${min} to ${max}`, { name, value });
  }
  return value;
}

function safeSend(socket: dgram.Socket, buf: Buffer, to: { address: string; port: number }, log: Logger): void {
  try {
    socket.send(buf, to.port, to.address, (err) => {
      if (err) log.debug({ err: err.message, client: `${to.address}:${to.port}` }, 'tftp send failed');
    });
  } catch (err) {
    // The socket was closed under us (server stopping).
    log.debug({ err: (err as Error).message }, 'tftp send on closed socket');
  }
}

/**
 * Create the TFTP server (does not bind; call start()). Throws ConfigError for out-of-range
 * limits.
 */
export function createTftpServer(options: TftpServerOptions): TftpServer {
  const host = options.host ?? '0.0.0.0';
  const limits: NegotiationLimits = {
    blksizeMax: checkRange('blksizeMax', options.blksizeMax ?? 1468, BLKSIZE_MIN, BLKSIZE_MAX),
    windowsizeMax: checkRange('windowsizeMax', options.windowsizeMax ?? 16, 1, 1024),
    timeoutMs: checkRange('timeoutMs', options.timeoutMs ?? 1000, 10, 255_000),
    timeoutMaxMs: checkRange('timeoutMaxMs', options.timeoutMaxMs ?? 5000, 1000, 255_000),
  };
  const retries = checkRange('retries', options.retries ?? 5, 0, 100);
  const pendingMs = checkRange('pendingMs', options.pendingMs ?? limits.timeoutMs * (retries + 1), 10, 3_600_000);
  const maxTransfers = checkRange('maxTransfers', options.maxTransfers ?? 1000, 1, 100_000);
  const maxPerClient = checkRange('maxPerClient', options.maxPerClient ?? 32, 1, 100_000);
  const threadCount = options.socketFactory ? 1 : checkRange('threads', options.threads ?? 1, 1, 64);
  const cache = createFileCache({
    maxFileBytes: checkRange('cacheFileBytes', options.cacheFileBytes ?? 8 * 1024 * 1024, 0, 1024 * 1024 * 1024),
    maxTotalBytes: checkRange('cacheTotalBytes', options.cacheTotalBytes ?? 64 * 1024 * 1024, 0, 4 * 1024 * 1024 * 1024),
  });
  const log = options.log.child({ subsystem: 'tftp' });
  const createSocket: TftpSocketFactory = options.socketFactory ?? (() => dgram.createSocket('udp4'));
  /** Every transfer by client `address:port`. */
  const transfers = new Map<string, Transfer>();
  /** Transfers not yet acknowledged, oldest first (Map order is insertion order): the reapable ones. */
  const pending = new Map<string, Transfer>();
  /** Transfers per client address, in start order. */
  const byAddress = new Map<string, Set<Transfer>>();
  const counters = { reaped: 0, refusedBusy: 0 };
  let main: dgram.Socket | undefined;
  let startPromise: Promise<{ port: number }> | undefined;
  let boundPort: number | undefined;
  /** Started with the listening socket, ended with it. */
  let threads: TransferThreads | undefined;

  // Warnings a flood could repeat thousands of times a second: one a second, the rest at debug.
  const warnBudget = createLogBudget(1, 1000);
  function warnLimited(fields: Record<string, unknown>, msg: string): void {
    const { log: write, suppressed } = warnBudget.take();
    if (!write) {
      log.debug(fields, msg);
      return;
    }
    log.warn(suppressed > 0 ? { ...fields, suppressed } : fields, msg);
  }

  const ctx: TransferContext = {
    log,
    events: options.events,
    host,
    dirs: [options.root, ...(options.fallbackDirs ?? DEFAULT_FALLBACK_DIRS)],
    limits,
    retries,
    pendingMs,
    virtualFiles: options.virtualFiles,
    cache,
    createSocket,
    sendFromMain(packet, to) {
      if (main) safeSend(main, encodePacket(packet), to, log);
    },
    record(type, address, detail) {
      const events = options.events;
      if (!events) return;
      try {
        // The MAC comes from the address itself (timelineMac: attribution only), so the event
        // teaches nothing (no addressTrusted; re-learning could only pull the MAC back to a stale address).
        events.record({ mac: events.timelineMac(address) ?? '', type, ip: address, detail });
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'tftp event record failed');
      }
    },
    acknowledged(transfer) {
      if (pending.get(transfer.key) === transfer) pending.delete(transfer.key);
    },
    finished(transfer, client, retry) {
      if (transfers.get(transfer.key) === transfer) {
        transfers.delete(transfer.key);
        if (transfer.completed) {
          completedLately.delete(transfer.key);
          completedLately.set(transfer.key, { request: transfer.request, at: Date.now() });
          trimOldest(completedLately, 4096);
        }
      }
      if (pending.get(transfer.key) === transfer) pending.delete(transfer.key);
      const mine = byAddress.get(client.address);
      if (mine) {
        mine.delete(transfer);
        if (mine.size === 0) byAddress.delete(client.address);
      }
      if (retry && main) startTransfer(retry, client);
    },
    requestedAgain(address, name, since) {
      return recentRequests.askedSince(address, name, since);
    },
    warnLimited,
    offload: (transfer, handed) => threads?.offload(transfer, handed),
  };

  // When each client address last asked for each name (recent-requests.ts).
  const recentRequests = createRecentRequests();
  // Transfers that went out in full a moment ago, by client address:port. A copy of the request
  // that the client repeated while our first reply was on its way can reach us after the
  // transfer it started has ended: with transfer threads the blocks and ACKs bypass the main
  // thread, so a busy main thread may read the copy only after the thread's transfer finished.
  // Started again it would send block 1 to a client that is done. A client asking for the same
  // file again from the same port (RFC 1350 wants a new port per transfer; tftp-hpa's
  // interactive client keeps one) within LATE_COPY_MS is served when it repeats its request.
  const completedLately = new Map<string, { request: RequestPacket; at: number }>();

  /**
   * Make room for a transfer of `address`: within the per-client and the total limit, reaping the
   * oldest never-acknowledged transfer when a limit is reached. False when no slot can be freed.
   */
  function admit(address: string, key: string, file: string): boolean {
    const mine = byAddress.get(address);
    if (mine && mine.size >= maxPerClient) {
      let victim: Transfer | undefined;
      for (const t of mine) {
        if (t.awaitingFirstReply) {
          victim = t;
          break;
        }
      }
      if (!victim) {
        counters.refusedBusy += 1;
        warnLimited({ client: key, file: clip(file), transfers: mine.size, limit: maxPerClient }, 'tftp request refused: client at its transfer limit');
        return false;
      }
      reap(victim, `client at its limit of ${maxPerClient} transfers`);
    }
    if (transfers.size >= maxTransfers) {
      const victim = pending.values().next().value as Transfer | undefined;
      if (!victim) {
        counters.refusedBusy += 1;
        warnLimited({ client: key, file: clip(file), transfers: transfers.size, limit: maxTransfers }, 'tftp request refused: too many transfers');
        return false;
      }
      reap(victim, `server at its limit of ${maxTransfers} transfers`);
    }
    return true;
  }

  function reap(victim: Transfer, why: string): void {
    counters.reaped += 1;
    warnLimited({ client: victim.key, reaped: counters.reaped, why }, 'tftp transfer limit reached: unacknowledged transfer reaped');
    victim.abort(`reaped: ${why}`);
  }

  function startTransfer(request: RequestPacket, client: { address: string; port: number }): void {
    const key = `${client.address}:${client.port}`;
    const existing = transfers.get(key);
    if (existing) {
      if (sameRequest(existing.request, request)) {
        if (existing.awaitingFirstReply) {
          log.debug({ client: key, file: clip(request.filename) }, 'tftp repeated request: first reply sent again');
          existing.repeatFirstReply(request);
        } else {
          // A late copy of the request (the client repeated it while our reply was on its way
          // under load): the transfer it started is running; restarting it would strand the
          // client, which only listens to the first transfer's port.
          log.debug({ client: key, file: clip(request.filename) }, 'tftp repeated request for a running transfer ignored');
        }
        return;
      }
      // Same client port, different (or later) request: the client has moved on.
      existing.abort('superseded by a new request');
    } else {
      const done = completedLately.get(key);
      if (done && Date.now() - done.at < LATE_COPY_MS && sameRequest(done.request, request)) {
        log.debug({ client: key, file: clip(request.filename) }, 'tftp repeated request for a transfer that just completed ignored');
        return;
      }
    }
    recentRequests.note(client.address, request.filename);
    // A new request from another port of the same client: a transfer still waiting only for its
    // final ACK was received (the client reads one file at a time).
    for (const other of byAddress.get(client.address) ?? []) other.clientMovedOn(request.filename);
    if (!admit(client.address, key, request.filename)) {
      ctx.sendFromMain({ op: 'error', code: TFTP_ERROR.NOT_DEFINED, message: 'server busy' }, client);
      return;
    }
    const transfer = new Transfer(ctx, request, client);
    transfers.set(key, transfer);
    pending.set(key, transfer);
    const mine = byAddress.get(client.address);
    if (mine) mine.add(transfer);
    else byAddress.set(client.address, new Set([transfer]));
    void transfer.run();
  }

  function onMainMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const client = { address: rinfo.address, port: rinfo.port };
    const from = `${rinfo.address}:${rinfo.port}`;
    if (rinfo.port === 0) {
      // Nothing can be sent back to port 0 (spoofed or broken sender).
      log.debug({ from, bytes: msg.length }, 'tftp datagram from port 0 dropped');
      return;
    }
    let packet: TftpPacket;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      const reason = err instanceof TftpDecodeError ? err.reason : 'error';
      const opcode = err instanceof TftpDecodeError ? err.opcode : undefined;
      log.debug({ from, bytes: msg.length, reason, opcode }, 'tftp undecodable datagram');
      // Unknown opcode and malformed requests are answered with error 4 (RFC 1350); a datagram
      // too short to carry an opcode, or a broken ERROR, is dropped.
      if (reason === 'unknown-opcode' || opcode === 1 || opcode === 2) {
        ctx.sendFromMain({ op: 'error', code: TFTP_ERROR.ILLEGAL_OPERATION, message: 'illegal tftp operation' }, client);
      }
      return;
    }
    switch (packet.op) {
      case 'rrq':
        startTransfer(packet, client);
        return;
      case 'wrq':
        log.info({ from, file: clip(packet.filename), mac: options.events?.macForIp(rinfo.address) }, 'tftp write request refused');
        ctx.sendFromMain({ op: 'error', code: TFTP_ERROR.ACCESS_VIOLATION, message: 'read-only server' }, client);
        return;
      case 'data':
      case 'oack':
        log.debug({ from, op: packet.op }, 'tftp transfer packet on the request port');
        ctx.sendFromMain({ op: 'error', code: TFTP_ERROR.ILLEGAL_OPERATION, message: 'illegal tftp operation' }, client);
        return;
      case 'ack':
      case 'error':
        // Never answer an ERROR; a stray ACK on port 69 is a confused client, not worth an error.
        log.debug({ from, op: packet.op }, 'tftp stray packet on the request port dropped');
        return;
    }
  }

  /** Bind the listening socket (start(), once the transfer threads are ready). */
  function listen(): Promise<{ port: number }> {
    return new Promise<{ port: number }>((resolve, reject) => {
      const socket = createSocket('listen');
      const onBindError = (err: Error): void => {
        startPromise = undefined;
        try {
          socket.close();
        } catch {
          // never bound
        }
        reject(
          new ApplianceError(
            'ERR_TFTP_BIND',
            `cannot listen for tftp on ${host}:${options.port}: ${err.message}; pick another port or run with CAP_NET_BIND_SERVICE for port 69`,
            { host, port: options.port },
            { cause: err },
          ),
        );
      };
      socket.once('error', onBindError);
      socket.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => {
        try {
          onMainMessage(msg, rinfo);
        } catch (err) {
          log.error({ err: (err as Error).message }, 'tftp request handler failed');
        }
      });
      try {
        socket.bind(options.port, host, () => {
          socket.off('error', onBindError);
          socket.on('error', (err: Error) => log.error({ err: err.message }, 'tftp socket error'));
          main = socket;
          boundPort = socket.address().port;
          try {
            // A lab full of machines powering on at once sends a burst of requests; a larger
            // receive buffer (capped by net.core.rmem_max) keeps the kernel from dropping them.
            socket.setRecvBufferSize(1024 * 1024);
          } catch (err) {
            log.debug({ err: (err as Error).message }, 'tftp receive buffer left at the default');
          }
          log.info(
            {
              host,
              port: boundPort,
              root: options.root,
              blksizeMax: limits.blksizeMax,
              windowsizeMax: limits.windowsizeMax,
              maxTransfers,
              maxPerClient,
              timeoutMaxMs: limits.timeoutMaxMs,
              threads: threadCount,
            },
            'tftp listening',
          );
          resolve({ port: boundPort });
        });
      } catch (err) {
        onBindError(err as Error);
      }
    });
  }

  return {
    get port() {
      return boundPort ?? options.port;
    },
    stats: () => ({
      transfers: transfers.size,
      pending: pending.size,
      reaped: counters.reaped,
      refusedBusy: counters.refusedBusy,
      cache: cache.stats(),
      threads: threads?.stats() ?? { handedOver: 0, running: 0 },
    }),
    start() {
      if (startPromise) return startPromise;
      // The transfer threads load first, so the first transfers find them ready.
      const started = createTransferThreads(threadCount, {
        log,
        settings: { host, limits, retries, pendingMs },
        record: ctx.record,
        warnLimited,
        sendFromMain: ctx.sendFromMain,
      });
      threads = started;
      startPromise = started
        .ready()
        // stop() while the threads were loading: nothing is bound.
        .then(() =>
          threads === started ? listen() : Promise.reject(new ApplianceError('ERR_TFTP_STOPPED', 'tftp server stopped before it listened', { host })),
        )
        .catch(async (err: unknown) => {
          startPromise = undefined;
          if (threads === started) threads = undefined;
          await started.stop();
          throw err;
        });
      return startPromise;
    },
    async stop() {
      const socket = main;
      main = undefined;
      startPromise = undefined;
      for (const transfer of [...transfers.values()]) transfer.abort('server stopping');
      transfers.clear();
      pending.clear();
      byAddress.clear();
      cache.clear();
      const running = threads;
      threads = undefined;
      await running?.stop();
      if (socket) {
        await new Promise<void>((resolve) => socket.close(() => resolve()));
        log.info({ port: boundPort }, 'tftp stopped');
      }
    },
  };
}
