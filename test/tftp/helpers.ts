/**
 * Test helpers for the TFTP server: a temp root, a server on 127.0.0.1:0 with captured logs and
 * events, a raw UDP peer, a small RFC 7440 client of our own, and a lossy socket factory.
 */
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createEventLog, type EventLog } from '../../src/events.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { decodePacket, encodePacket, type TftpOptions, type TftpPacket } from '../../src/tftp/packet.js';
import { createTftpServer, type TftpServer, type TftpServerOptions } from '../../src/tftp/server.js';

/**
 * The options of EDK2's read requests in the OVMF capture (test/fixtures/tftp/edk2-rrq-tsize-probe.bin):
 * the size probe and the download ask for the same three.
 */
export const EDK2_RRQ_OPTIONS: TftpOptions = [
  ['tsize', '0'],
  ['blksize', '1468'],
  ['windowsize', '4'],
];

/** A read request for `filename` (octet mode unless `mode` is given). */
export function rrq(filename: string, options: TftpOptions = [], mode = 'octet'): TftpPacket {
  return { op: 'rrq', filename, mode, options: options.map(([k, v]): [string, string] => [k, v]) };
}

/** sha256 hex of a buffer. */
export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A fresh temp directory; remove it with rm(dir, {recursive, force}). */
export async function tempDir(prefix = 'tftp-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Parsed pino lines captured from a server. */
export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A running server with its root, logs and events; close() stops it and removes the root. */
export interface TestServer {
  server: TftpServer;
  port: number;
  root: string;
  logs: LogLine[];
  events: EventLog;
  /** Write a file under the root; returns its content. */
  put(name: string, content: Buffer | number): Promise<Buffer>;
  close(): Promise<void>;
}

/** Start a server on 127.0.0.1:0 with a temp root (no fallback dirs unless given). */
export async function startServer(options: Partial<TftpServerOptions> = {}): Promise<TestServer> {
  const root = options.root ?? (await tempDir());
  const { log, lines: logs } = captureLogger<LogLine>();
  const events = options.events ?? createEventLog();
  const server = createTftpServer({
    fallbackDirs: [],
    // The *-threads.test.ts files run their suite again with transfers on transfer threads.
    ...(process.env.TFTP_TEST_THREADS !== undefined ? { threads: Number(process.env.TFTP_TEST_THREADS) } : {}),
    ...options,
    root,
    host: '127.0.0.1',
    port: 0,
    log,
    events,
  });
  const { port } = await server.start();
  return {
    server,
    port,
    root,
    logs,
    events,
    async put(name, content) {
      const data = typeof content === 'number' ? randomBytes(content) : content;
      await writeFile(path.join(root, name), data);
      return data;
    },
    async close() {
      await server.stop();
      if (!options.root) await rm(root, { recursive: true, force: true });
    },
  };
}

/** A raw UDP peer on 127.0.0.1 that queues what it receives. */
export interface RawPeer {
  socket: dgram.Socket;
  port: number;
  send(packet: TftpPacket | Buffer, port: number): void;
  /** The next datagram (decoded) or undefined after `timeoutMs`. */
  next(timeoutMs?: number): Promise<{ packet: TftpPacket; from: number; raw: Buffer } | undefined>;
  /** Everything received within `ms`. */
  collect(ms: number): Promise<Array<{ packet: TftpPacket | undefined; from: number; raw: Buffer }>>;
  close(): void;
}

/** Open a raw peer. */
export async function rawPeer(): Promise<RawPeer> {
  const socket = dgram.createSocket('udp4');
  const queue: Array<{ raw: Buffer; from: number }> = [];
  let waiter: (() => void) | undefined;
  socket.on('message', (raw, rinfo) => {
    queue.push({ raw, from: rinfo.port });
    waiter?.();
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const decode = (raw: Buffer): TftpPacket | undefined => {
    try {
      return decodePacket(raw);
    } catch {
      return undefined;
    }
  };
  return {
    socket,
    port: socket.address().port,
    send(packet, port) {
      socket.send(Buffer.isBuffer(packet) ? packet : encodePacket(packet), port, '127.0.0.1');
    },
    async next(timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const item = queue.shift();
        if (item) {
          const packet = decode(item.raw);
          if (packet) return { packet, from: item.from, raw: item.raw };
          continue;
        }
        const left = deadline - Date.now();
        if (left <= 0) return undefined;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiter = () => {
            clearTimeout(timer);
            waiter = undefined;
            resolve();
          };
        });
      }
    },
    async collect(ms) {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return queue.splice(0).map((item) => ({ ...item, packet: decode(item.raw) }));
    },
    close() {
      socket.close();
    },
  };
}

/** Options of our own test client. */
export interface GetOptions {
  options?: TftpOptions;
  mode?: string;
  /** Receive timeout before re-ACKing / re-requesting; default 500 ms. */
  timeoutMs?: number;
  /** Overall bound; default 60 s. */
  deadlineMs?: number;
  /** After the last block, stay this long to re-ACK a repeated final block (RFC 1350 dally). */
  dallyMs?: number;
  /** Drop incoming datagrams (simulated loss on the client side). */
  dropIncoming?: (packet: TftpPacket, index: number) => boolean;
}

/** Result of a download with our own client. */
export interface GetResult {
  data: Buffer;
  oack: TftpOptions | undefined;
  blocks: number;
  serverPort: number;
}

/**
 * Our own RFC 1350/2347/7440 client: sends one RRQ, accepts an OACK (ACK 0), receives blocks
 * with 16-bit rollover, ACKs each window end (or the last in-order block on a gap/timeout).
 * Rejects with the server's error packet text.
 */
export async function tftpGet(port: number, file: string, opts: GetOptions = {}): Promise<GetResult> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const requestOptions = opts.options ?? [];
  const timeoutMs = opts.timeoutMs ?? 500;
  const deadline = Date.now() + (opts.deadlineMs ?? 60_000);
  let blksize = 512;
  let windowsize = 1;
  const rrq = encodePacket({ op: 'rrq', filename: file, mode: opts.mode ?? 'octet', options: requestOptions });
  const chunks: Buffer[] = [];
  let received = 0; // absolute number of the last in-order block
  let inWindow = 0;
  let serverPort: number | undefined;
  let oack: TftpOptions | undefined;
  let index = 0;
  try {
    return await new Promise<GetResult>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const ack = (block: number): void => {
        socket.send(encodePacket({ op: 'ack', block: block & 0xffff }), serverPort!, '127.0.0.1');
      };
      const arm = (): void => {
        if (timer) clearTimeout(timer);
        if (Date.now() > deadline) {
          reject(new Error(`tftp get ${file}: deadline passed after ${received} blocks`));
          return;
        }
        timer = setTimeout(() => {
          if (serverPort === undefined) socket.send(rrq, port, '127.0.0.1');
          else ack(received); // RFC 7440: on timeout, ACK the last in-order block
          inWindow = 0;
          arm();
        }, timeoutMs);
      };
      let finished = false;
      const finish = (): void => {
        if (timer) clearTimeout(timer);
        finished = true;
        const result = { data: Buffer.concat(chunks), oack, blocks: received, serverPort: serverPort! };
        if (opts.dallyMs) setTimeout(() => resolve(result), opts.dallyMs);
        else resolve(result);
      };
      socket.on('message', (raw, rinfo) => {
        let packet: TftpPacket;
        try {
          packet = decodePacket(raw);
        } catch {
          return;
        }
        if (opts.dropIncoming?.(packet, index++)) return;
        if (serverPort === undefined) serverPort = rinfo.port;
        else if (rinfo.port !== serverPort) return;
        if (packet.op === 'error') {
          if (timer) clearTimeout(timer);
          reject(Object.assign(new Error(`tftp error ${packet.code}: ${packet.message}`), { tftpCode: packet.code }));
          return;
        }
        if (packet.op === 'oack') {
          if (received !== 0) return;
          oack = packet.options;
          for (const [name, value] of packet.options) {
            if (name === 'blksize') blksize = Number(value);
            if (name === 'windowsize') windowsize = Number(value);
          }
          ack(0);
          arm();
          return;
        }
        if (packet.op !== 'data') return;
        if (finished) {
          // Dallying: the server did not get our final ACK and repeated the last block.
          if (packet.block === (received & 0xffff)) ack(received);
          return;
        }
        if (packet.block === ((received + 1) & 0xffff)) {
          received += 1;
          chunks.push(packet.data);
          inWindow += 1;
          if (packet.data.length < blksize) {
            ack(received);
            finish();
            return;
          }
          if (inWindow >= windowsize) {
            inWindow = 0;
            ack(received);
          }
          arm();
        } else if (((packet.block - received) & 0xffff) > 1 && ((packet.block - received) & 0xffff) < 0x8000) {
          // A gap: ACK the last in-order block so the server restarts the window (RFC 7440).
          inWindow = 0;
          ack(received);
          arm();
        }
      });
      socket.send(rrq, port, '127.0.0.1');
      arm();
    });
  } finally {
    socket.close();
  }
}

/** What the lossy socket factory does to datagrams. */
export interface LossPlan {
  /** Drop an outgoing datagram (server → client); `n` counts outgoing datagrams per socket. */
  dropOut?: (buf: Buffer, n: number) => boolean;
  /** Send an outgoing datagram twice. */
  duplicateOut?: (buf: Buffer, n: number) => boolean;
  /** Hold an outgoing datagram back this many ms (later ones overtake it: reordering). */
  delayOut?: (buf: Buffer, n: number) => number;
  /** Drop an incoming datagram (client → server). */
  dropIn?: (buf: Buffer, n: number) => boolean;
}

/** Counters of what the lossy factory did. */
export interface LossStats {
  droppedOut: number;
  duplicatedOut: number;
  droppedIn: number;
  delayedOut: number;
  sentOut: number;
}

/**
 * A socket factory whose sockets drop/duplicate datagrams per `plan`: the fault seam of
 * createTftpServer. Only transfer sockets are made lossy unless `listenToo` is set.
 */
export function lossySocketFactory(plan: LossPlan, listenToo = false): { factory: (role: 'listen' | 'transfer') => dgram.Socket; stats: LossStats } {
  const stats: LossStats = { droppedOut: 0, duplicatedOut: 0, droppedIn: 0, delayedOut: 0, sentOut: 0 };
  const factory = (role: 'listen' | 'transfer'): dgram.Socket => {
    const socket = dgram.createSocket('udp4');
    if (role === 'listen' && !listenToo) return socket;
    let outCount = 0;
    let inCount = 0;
    const originalSend = socket.send.bind(socket) as (...args: unknown[]) => void;
    (socket as unknown as { send: (...args: unknown[]) => void }).send = (...args: unknown[]) => {
      // Transfer sockets are connected and send DATA as [header, block]: look at the whole datagram.
      const buf = Array.isArray(args[0]) ? Buffer.concat(args[0] as Buffer[]) : (args[0] as Buffer);
      // Where to (port, address) for the listening socket; nothing for a connected one.
      const to = args.slice(1).filter((a) => typeof a !== 'function');
      const cb = args.find((a) => typeof a === 'function') as ((err: Error | null) => void) | undefined;
      const n = outCount++;
      stats.sentOut += 1;
      if (plan.dropOut?.(buf, n)) {
        stats.droppedOut += 1;
        cb?.(null);
        return;
      }
      if (plan.duplicateOut?.(buf, n)) {
        stats.duplicatedOut += 1;
        originalSend(Buffer.from(buf), ...to);
      }
      const hold = plan.delayOut?.(buf, n) ?? 0;
      if (hold > 0) {
        stats.delayedOut += 1;
        const copy = Buffer.from(buf);
        setTimeout(() => {
          try {
            originalSend(copy, ...to);
          } catch {
            // the transfer closed its socket meanwhile: the datagram is lost, as on a network
          }
        }, hold);
        cb?.(null);
        return;
      }
      originalSend(...args);
    };
    const originalEmit = socket.emit.bind(socket) as (event: string | symbol, ...args: unknown[]) => boolean;
    (socket as unknown as { emit: (event: string | symbol, ...args: unknown[]) => boolean }).emit = (event, ...args) => {
      if (event === 'message') {
        const n = inCount++;
        if (plan.dropIn?.(args[0] as Buffer, n)) {
          stats.droppedIn += 1;
          return true;
        }
      }
      return originalEmit(event, ...args);
    };
    return socket;
  };
  return { factory, stats };
}

/** Resolve after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait until `predicate` holds, polling, at most `ms`. */
export async function waitFor(predicate: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate()) return true;
    await delay(20);
  }
  return predicate();
}

/** A server (torn down with the test) holding `name` of `size` random bytes, and a raw peer. */
export async function serverWithFile(
  t: { teardown(fn: () => unknown): void },
  name: string,
  size: number,
  options: Partial<TftpServerOptions> = {},
): Promise<{ s: TestServer; content: Buffer; peer: RawPeer }> {
  const s = await startServer(options);
  t.teardown(() => s.close());
  const content = await s.put(name, size);
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  return { s, content, peer };
}
