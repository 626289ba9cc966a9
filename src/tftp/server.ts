/**
 * Read-only TFTP server: RFC 1350 with option negotiation (RFC 2347), blksize (RFC 2348),
 * timeout and tsize (RFC 2349), windowsize (RFC 7440) and block-number rollover past 65535
 * (wraps to 0, as tftp-hpa, curl and iPXE expect).
 *
 * One listening socket takes requests; every transfer gets its own socket on an ephemeral port
 * (its TID, RFC 1350 section 4). Data is read from disk block by block with positional reads;
 * a transfer holds at most one window of blocks in memory.
 *
 * Decisions a lab engineer may look for (tftpd-hpa is the reference):
 * - Names: `\` is translated to `/`, leading `/` stripped (like `-s`), any `..` segment refused
 *   (error 2), symlinks leaving the root refused (error 2); see files.ts normalizeRequestName.
 * - netascii is converted (LF -> CR LF, CR -> CR NUL) like tftp-hpa; tsize is then not answered.
 * - WRQ: error 2. Unknown opcode / malformed request on port 69: error 4. Too-short datagrams,
 *   stray ACK/ERROR on port 69: dropped (debug log). Errors answering a request come from the
 *   listening socket; everything of a transfer from its own socket.
 * - A duplicate ACK never causes a resend (Sorcerer's Apprentice); loss is repaired by the
 *   retransmission timer (`timeoutMs` or the client's `timeout` option, `retries` times).
 * - IPv4 only (udp4), as PXE.
 */
import dgram from 'node:dgram';
import { ApplianceError, ConfigError } from '../errors.js';
import type { EventLog } from '../events.js';
import type { Logger } from '../log.js';
import {
  createFileReader,
  createNetasciiReader,
  DEFAULT_FALLBACK_DIRS,
  normalizeRequestName,
  openSource,
  resolveFile,
  type BlockReader,
  type TftpSource,
} from './files.js';
import {
  decodePacket,
  encodePacket,
  TFTP_ERROR,
  TftpDecodeError,
  type RequestPacket,
  type TftpOptions,
  type TftpPacket,
} from './packet.js';

export type { TftpSource } from './files.js';

/** Who asked for a virtual file. `name` is normalised (no leading slash, `/` separators). */
export interface VirtualFileRequest {
  name: string;
  /** The name exactly as the client sent it. */
  rawName: string;
  client: { address: string; port: number };
  /** The client's MAC when DHCP has seen it at this address (EventLog.macForIp). */
  mac?: string;
}

/**
 * Consulted before the disk for every read request: return content to serve it, undefined to
 * fall through to the root and fallback directories. A thrown error refuses the request
 * (TFTP error 0) and is logged.
 */
export type VirtualFiles = (request: VirtualFileRequest) => Promise<TftpSource | undefined>;

/**
 * Creates the UDP sockets the server uses: the listening socket and one per transfer. Tests pass
 * a factory returning sockets that drop, duplicate or delay datagrams.
 */
export type TftpSocketFactory = (role: 'listen' | 'transfer') => dgram.Socket;

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
  /** Retransmissions without progress before a transfer is given up; default 5. */
  retries?: number;
  /** Concurrent transfers; further requests get error 0 "server busy". Default 1000. */
  maxTransfers?: number;
  log: Logger;
  events?: EventLog;
  virtualFiles?: VirtualFiles;
  /** Fault-injection seam; default `dgram.createSocket('udp4')`. */
  socketFactory?: TftpSocketFactory;
}

/** A running (or startable) TFTP server. */
export interface TftpServer {
  /** Bind the listening socket; resolves with the bound port, rejects (ERR_TFTP_BIND) on error. */
  start(): Promise<{ port: number }>;
  /** Close the listening socket and abort every transfer. */
  stop(): Promise<void>;
  /** The bound port after start(), the configured port before. */
  readonly port: number;
}

/** Limits the negotiation works within. */
export interface NegotiationLimits {
  blksizeMax: number;
  windowsizeMax: number;
  timeoutMs: number;
}

/** Transfer parameters agreed for one request, and the OACK to send (undefined: no OACK). */
export interface Negotiated {
  blksize: number;
  windowsize: number;
  timeoutMs: number;
  tsize: number | undefined;
  oack: TftpOptions | undefined;
}

/** RFC 2348: "Valid values range between 8 and 65464 octets, inclusive." */
export const BLKSIZE_MIN = 8;
/** RFC 2348 upper bound for blksize. */
export const BLKSIZE_MAX = 65464;

/** A client-supplied string cut to a loggable length (a request may carry a 64 KiB name). */
function clip(value: string, max = 256): string {
  return value.length > max ? `${value.slice(0, max)}...` : value;
}

function parseUint(value: string): number | undefined {
  // Digits only (no sign, no exponent, no whitespace) and a sane length.
  if (!/^\d{1,10}$/.test(value)) return undefined;
  return Number(value);
}

/**
 * Decide the options of one read request (pure). Options the server does not know or whose
 * values are invalid are left out of the OACK, which RFC 2347 allows ("the server ... ignores
 * options it does not support"): blksize below 8 is ignored (512 is used), above the cap it is
 * lowered to the cap (RFC 2348 lets the server answer a smaller value); timeout must be 1..255
 * seconds (RFC 2349); windowsize 1..65535 is lowered to the cap (RFC 7440); tsize is answered
 * only when the size is known (not for netascii, whose converted size is not known up front).
 */
export function negotiateOptions(options: TftpOptions, limits: NegotiationLimits, size: number | undefined): Negotiated {
  const result: Negotiated = { blksize: 512, windowsize: 1, timeoutMs: limits.timeoutMs, tsize: undefined, oack: undefined };
  const oack: TftpOptions = [];
  const seen = new Set<string>();
  for (const [rawName, rawValue] of options) {
    const name = rawName.toLowerCase();
    if (seen.has(name)) continue; // first occurrence wins
    seen.add(name);
    const value = parseUint(rawValue);
    switch (name) {
      case 'blksize':
        if (value === undefined || value < BLKSIZE_MIN) break;
        result.blksize = Math.min(value, limits.blksizeMax, BLKSIZE_MAX);
        oack.push(['blksize', String(result.blksize)]);
        break;
      case 'tsize':
        if (value === undefined || size === undefined) break;
        result.tsize = size;
        oack.push(['tsize', String(size)]);
        break;
      case 'timeout':
        if (value === undefined || value < 1 || value > 255) break;
        result.timeoutMs = value * 1000;
        oack.push(['timeout', String(value)]);
        break;
      case 'windowsize':
        if (value === undefined || value < 1 || value > 65535) break;
        result.windowsize = Math.min(value, limits.windowsizeMax);
        oack.push(['windowsize', String(result.windowsize)]);
        break;
      default:
        break;
    }
  }
  if (oack.length > 0) result.oack = oack;
  return result;
}

function checkRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`tftp ${name} ${value} is out of range; use an integer from ${min} to ${max}`, { name, value });
  }
  return value;
}

interface ServerContext {
  log: Logger;
  events: EventLog | undefined;
  host: string;
  dirs: readonly string[];
  limits: NegotiationLimits;
  retries: number;
  virtualFiles: VirtualFiles | undefined;
  createSocket: TftpSocketFactory;
  /** Send from the listening socket (errors for requests). */
  sendFromMain(packet: TftpPacket, to: { address: string; port: number }): void;
  record(type: 'tftp-file' | 'tftp-error', address: string, detail: Record<string, unknown>): void;
  finished(transfer: Transfer, client: { address: string; port: number }, retry: RequestPacket | undefined): void;
  /** True when `address` asked for `name` again after `since` (ms epoch). */
  requestedAgain(address: string, name: string, since: number): boolean;
}

type TransferState = 'resolving' | 'negotiating' | 'sending' | 'done';

function sameRequest(a: RequestPacket, b: RequestPacket): boolean {
  return (
    a.filename === b.filename &&
    a.mode.toLowerCase() === b.mode.toLowerCase() &&
    JSON.stringify(a.options) === JSON.stringify(b.options)
  );
}

function safeSend(socket: dgram.Socket, buf: Buffer, to: { address: string; port: number }, log: Logger, done?: () => void): void {
  try {
    socket.send(buf, to.port, to.address, (err) => {
      if (err) log.debug({ err: err.message, client: `${to.address}:${to.port}` }, 'tftp send failed');
      done?.();
    });
  } catch (err) {
    // The socket was closed under us (transfer ended or server stopping).
    log.debug({ err: (err as Error).message }, 'tftp send on closed socket');
    done?.();
  }
}

/** One read transfer from request to last ACK (or failure). */
class Transfer {
  readonly key: string;
  private state: TransferState = 'resolving';
  private readonly ctx: ServerContext;
  /** The request this transfer serves (for duplicate detection). */
  readonly request: RequestPacket;
  private readonly client: { address: string; port: number };
  private readonly log: Logger;
  private socket: dgram.Socket | undefined;
  private reader: BlockReader | undefined;
  private negotiated: Negotiated = { blksize: 512, windowsize: 1, timeoutMs: 1000, tsize: undefined, oack: undefined };
  private name = '';
  private sourceLabel = '';
  private mac: string | undefined;
  private readonly startedAt = Date.now();
  private retryRequest: RequestPacket | undefined;
  private gotAck = false;
  // Window state, in absolute block numbers (wire number = abs & 0xffff, RFC 1350 rollover).
  private window: Buffer[] = []; // blocks acked+1 .. readCount, kept until acknowledged
  private acked = 0;
  private readCount = 0;
  private nextSend = 1;
  private highestSent = 0;
  private lastBlock: number | undefined;
  private bytesRead = 0;
  private retriesLeft: number;
  private timer: NodeJS.Timeout | undefined;
  private pumping = false;
  private pumpAgain = false;
  private duplicateAcks = 0;
  private retransmits = 0;
  private pendingSends = 0;
  private closeWhenFlushed = false;

  constructor(ctx: ServerContext, request: RequestPacket, client: { address: string; port: number }) {
    this.ctx = ctx;
    this.request = request;
    this.client = client;
    this.key = `${client.address}:${client.port}`;
    this.log = ctx.log.child({ client: this.key });
    this.retriesLeft = ctx.retries;
  }

  /** A method, not a field read, so TypeScript does not narrow it across awaits. */
  isDone(): boolean {
    return this.state === 'done';
  }

  /** True while the client has not yet acknowledged anything of this transfer. */
  get awaitingFirstReply(): boolean {
    return this.state !== 'done' && !this.gotAck;
  }

  /**
   * The client repeated its request (our first reply was lost or is still on its way): the
   * transfer retransmits on its own timer. Remembered so that if the client aborts this
   * transfer anyway, the repeated request is served (UEFI tsize probe raced with its re-request).
   */
  noteRepeatedRequest(request: RequestPacket): void {
    this.retryRequest = request;
  }

  async run(): Promise<void> {
    try {
      await this.prepare();
    } catch (err) {
      this.log.error({ err: (err as Error).message, file: clip(this.request.filename) }, 'tftp transfer setup failed');
      this.refuse(TFTP_ERROR.NOT_DEFINED, 'internal error', 'setup-error', 'error');
    }
  }

  private async prepare(): Promise<void> {
    const { request, ctx } = this;
    this.mac = ctx.events?.macForIp(this.client.address);
    const mode = request.mode.toLowerCase();
    if (mode !== 'octet' && mode !== 'netascii') {
      // RFC 1350 "mail" mode and anything else: not supported by a read-only boot server.
      this.refuse(TFTP_ERROR.ILLEGAL_OPERATION, `unsupported mode ${clip(request.mode, 32)}`, 'unsupported-mode', 'info');
      return;
    }
    const check = normalizeRequestName(request.filename);
    if (check.kind === 'refused') {
      const level = check.code === TFTP_ERROR.ACCESS_VIOLATION ? 'warn' : 'info';
      this.refuse(check.code, check.code === TFTP_ERROR.ACCESS_VIOLATION ? 'access violation' : 'file not found', check.reason, level);
      return;
    }
    this.name = check.name;

    let reader: BlockReader | undefined;
    let size: number | undefined;
    if (ctx.virtualFiles) {
      let source: TftpSource | undefined;
      try {
        source = await ctx.virtualFiles({ name: check.name, rawName: request.filename, client: { ...this.client }, ...(this.mac ? { mac: this.mac } : {}) });
      } catch (err) {
        this.log.error({ err: (err as Error).message, file: check.name, mac: this.mac }, 'tftp virtual file failed');
        this.refuse(TFTP_ERROR.NOT_DEFINED, 'internal error', 'virtual-file-error', 'error');
        return;
      }
      if (source !== undefined) {
        ({ reader, size } = openSource(source));
        this.sourceLabel = 'virtual';
      }
    }
    if (!reader) {
      const found = await resolveFile(check.name, ctx.dirs);
      if (found.kind === 'refused') {
        const level = found.code === TFTP_ERROR.ACCESS_VIOLATION ? 'warn' : 'info';
        this.refuse(found.code, found.code === TFTP_ERROR.ACCESS_VIOLATION ? 'access violation' : 'file not found', found.reason, level);
        return;
      }
      // Read ahead one window's worth (16..64 KiB): few syscalls, bounded memory per transfer.
      const windowBytes = this.requestedWindowBytes();
      reader = createFileReader(found.handle, Math.min(64 * 1024, Math.max(16 * 1024, windowBytes)));
      size = found.size;
      this.sourceLabel = found.dir;
    }
    if (this.state === 'done') {
      // Aborted while resolving (server stopping, superseded by a new request).
      await reader.close().catch(() => undefined);
      return;
    }
    if (mode === 'netascii') {
      reader = createNetasciiReader(reader);
      size = undefined;
    }
    this.reader = reader;
    this.negotiated = negotiateOptions(request.options, ctx.limits, size);
    this.log.debug(
      { file: this.name, mac: this.mac, mode, blksize: this.negotiated.blksize, windowsize: this.negotiated.windowsize, tsize: this.negotiated.tsize, source: this.sourceLabel },
      'tftp read request',
    );
    await this.openSocket();
    if (this.isDone()) return;
    if (this.negotiated.oack) {
      this.state = 'negotiating';
      this.sendOack();
    } else {
      this.state = 'sending';
      void this.pump();
    }
  }

  /** blksize x windowsize this request will get (options are negotiated again once size is known). */
  private requestedWindowBytes(): number {
    const n = negotiateOptions(this.request.options, this.ctx.limits, undefined);
    return n.blksize * n.windowsize;
  }

  private openSocket(): Promise<void> {
    return new Promise((resolve) => {
      const socket = this.ctx.createSocket('transfer');
      this.socket = socket;
      const onBindError = (err: Error): void => {
        this.log.error({ err: err.message }, 'tftp transfer socket bind failed');
        this.refuse(TFTP_ERROR.NOT_DEFINED, 'server error', 'bind-error', 'error');
        resolve();
      };
      socket.once('error', onBindError);
      // Closed before the bind completed (transfer aborted): nothing more will happen.
      socket.once('close', () => resolve());
      socket.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => {
        try {
          this.onMessage(msg, rinfo);
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'tftp transfer message handler failed');
        }
      });
      try {
        socket.bind(0, this.ctx.host, () => {
          socket.off('error', onBindError);
          socket.on('error', (err: Error) => {
            this.log.warn({ err: err.message }, 'tftp transfer socket error');
            this.fail('socket-error', TFTP_ERROR.NOT_DEFINED, 'server error');
          });
          resolve();
        });
      } catch (err) {
        onBindError(err as Error);
      }
    });
  }

  /** Refuse before the transfer socket exists: error from the listening socket. */
  private refuse(code: number, message: string, reason: string, level: 'debug' | 'info' | 'warn' | 'error'): void {
    if (this.state === 'done') return;
    this.ctx.sendFromMain({ op: 'error', code, message }, this.client);
    this.log[level]({ file: clip(this.request.filename), mac: this.mac, reason, errorCode: code }, 'tftp request refused');
    this.ctx.record('tftp-error', this.client.address, { file: clip(this.request.filename), error: code, reason });
    this.end();
  }

  private send(packet: TftpPacket): void {
    const socket = this.socket;
    if (!socket) return;
    this.pendingSends += 1;
    safeSend(socket, encodePacket(packet), this.client, this.log, () => {
      this.pendingSends -= 1;
      if (this.pendingSends === 0 && this.closeWhenFlushed) this.closeSocket();
    });
  }

  /** Close the transfer socket; a datagram still queued (the final ERROR) is sent first. */
  private closeSocket(): void {
    const socket = this.socket;
    if (!socket) return;
    if (this.pendingSends > 0) {
      this.closeWhenFlushed = true;
      return;
    }
    this.socket = undefined;
    try {
      socket.close();
    } catch {
      // already closed
    }
  }

  private sendOack(): void {
    this.send({ op: 'oack', options: this.negotiated.oack ?? [] });
    this.armTimer();
  }

  private armTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onTimeout(), this.negotiated.timeoutMs);
  }

  private onTimeout(): void {
    this.timer = undefined;
    if (this.state === 'done') return;
    if (this.retriesLeft <= 0) {
      if (this.state === 'negotiating' && !this.gotAck && this.ctx.requestedAgain(this.client.address, this.request.filename, this.startedAt)) {
        // Some PXE firmware never answers the OACK of its size probe and simply asks again
        // from a new port: the probe was abandoned, nothing failed.
        this.log.debug({ file: this.name, mac: this.mac }, 'tftp option negotiation abandoned by client (size probe)');
        this.end();
        return;
      }
      const lastAckLost = this.lastBlock !== undefined && this.highestSent === this.lastBlock;
      this.fail(lastAckLost ? 'timeout-final-ack' : 'timeout', TFTP_ERROR.NOT_DEFINED, 'transfer timed out');
      return;
    }
    this.retriesLeft -= 1;
    this.retransmits += 1;
    if (this.state === 'negotiating') {
      this.log.debug({ file: this.name }, 'tftp oack retransmit');
      this.sendOack();
      return;
    }
    // Resend the whole unacknowledged window (RFC 7440 section 4: the sender times out and
    // retransmits from the last acknowledged block).
    this.log.debug({ file: this.name, from: this.acked + 1 }, 'tftp data retransmit');
    this.nextSend = this.acked + 1;
    void this.pump();
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.state === 'done') return;
    if (rinfo.address !== this.client.address || rinfo.port !== this.client.port) {
      this.onStranger(msg, rinfo);
      return;
    }
    let packet: TftpPacket;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      if (err instanceof TftpDecodeError && err.reason === 'unknown-opcode') {
        this.send({ op: 'error', code: TFTP_ERROR.ILLEGAL_OPERATION, message: 'illegal tftp operation' });
        this.fail('illegal-operation', undefined, undefined);
        return;
      }
      this.log.debug({ bytes: msg.length, reason: err instanceof TftpDecodeError ? err.reason : 'error' }, 'tftp undecodable datagram from client dropped');
      return;
    }
    switch (packet.op) {
      case 'ack':
        this.onAck(packet.block);
        return;
      case 'error':
        this.onClientError(packet.code, packet.message);
        return;
      default:
        // RFC 1350: only ACK and ERROR make sense from a reading client.
        this.send({ op: 'error', code: TFTP_ERROR.ILLEGAL_OPERATION, message: 'illegal tftp operation' });
        this.fail('illegal-operation', undefined, undefined);
    }
  }

  /**
   * RFC 1350 section 4: a packet from a wrong TID gets error 5 and does not disturb the
   * transfer. An ERROR from a stranger is not answered (no error ping-pong).
   */
  private onStranger(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.log.debug({ from: `${rinfo.address}:${rinfo.port}`, bytes: msg.length }, 'tftp datagram from unknown transfer id');
    if (msg.length >= 2 && msg.readUInt16BE(0) === 5) return;
    if (this.socket) {
      safeSend(this.socket, encodePacket({ op: 'error', code: TFTP_ERROR.UNKNOWN_TID, message: 'unknown transfer id' }), rinfo, this.log);
    }
  }

  private onAck(wire: number): void {
    if (this.state === 'negotiating') {
      if (wire !== 0) {
        this.log.debug({ block: wire }, 'tftp unexpected ack before oack was acknowledged');
        return;
      }
      this.gotAck = true;
      this.state = 'sending';
      this.retriesLeft = this.ctx.retries;
      void this.pump();
      return;
    }
    if (this.state !== 'sending') return;
    // Map the 16-bit number onto the blocks in flight; the window is at most 1024 blocks, so
    // the match is unique across a rollover.
    let k: number | undefined;
    for (let abs = this.highestSent; abs > this.acked; abs -= 1) {
      if ((abs & 0xffff) === wire) {
        k = abs;
        break;
      }
    }
    if (k === undefined) {
      // A duplicate (or older) ACK. Never retransmit on it: answering duplicates with data is
      // the Sorcerer's Apprentice bug (RFC 1123 section 4.2.3.1). The timer handles real loss.
      this.duplicateAcks += 1;
      return;
    }
    this.gotAck = true;
    this.window.splice(0, k - this.acked);
    this.acked = k;
    this.retriesLeft = this.ctx.retries;
    if (this.lastBlock !== undefined && k === this.lastBlock) {
      this.complete();
      return;
    }
    // RFC 7440 section 4: an ACK inside the window means the client lost the block after it;
    // the next window starts right after the acknowledged block.
    if (this.nextSend <= k || k < this.highestSent) this.nextSend = k + 1;
    void this.pump();
  }

  private onClientError(code: number, message: string): void {
    const detail = { file: this.name, errorCode: code, clientMessage: message.slice(0, 100), mac: this.mac };
    if (this.state === 'negotiating' && !this.gotAck) {
      // UEFI (EDK2) asks with tsize+blksize to learn the size, aborts after the OACK with
      // error 8 and then sends a new request: normal, not a failure (RFC 2347 section 2).
      if (code === TFTP_ERROR.OPTION_NEGOTIATION) {
        this.log.debug(detail, 'tftp client ended option negotiation (size probe)');
      } else {
        this.log.info(detail, 'tftp client refused the option acknowledgement');
        this.ctx.record('tftp-error', this.client.address, { file: this.name, error: code, reason: 'client-error', message: detail.clientMessage });
      }
      this.end(this.retryRequest);
      return;
    }
    this.log.info({ ...detail, bytes: this.bytesSentAcked() }, 'tftp client aborted the transfer');
    this.ctx.record('tftp-error', this.client.address, { file: this.name, error: code, reason: 'client-error', message: detail.clientMessage, bytes: this.bytesSentAcked() });
    this.end();
  }

  private bytesSentAcked(): number {
    // Full blocks before the last one, plus the last block if acknowledged.
    if (this.lastBlock !== undefined && this.acked >= this.lastBlock) return this.bytesRead;
    return this.acked * this.negotiated.blksize;
  }

  /** Send what the window allows, reading new blocks as needed; one pump runs at a time. */
  private async pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        for (;;) {
          if (this.state !== 'sending') return;
          if (this.nextSend > this.acked + this.negotiated.windowsize) break;
          if (this.lastBlock !== undefined && this.nextSend > this.lastBlock) break;
          if (this.nextSend > this.readCount) {
            const data = await this.reader!.read(this.negotiated.blksize);
            if (this.state !== 'sending') return;
            this.window.push(data);
            this.readCount += 1;
            this.bytesRead += data.length;
            // RFC 1350 section 6: a block shorter than blksize (possibly empty) ends the file.
            if (data.length < this.negotiated.blksize) this.lastBlock = this.readCount;
            continue;
          }
          const data = this.window[this.nextSend - this.acked - 1];
          if (data === undefined) break; // cannot happen: window holds acked+1..readCount
          this.send({ op: 'data', block: this.nextSend & 0xffff, data });
          if (this.nextSend > this.highestSent) this.highestSent = this.nextSend;
          this.nextSend += 1;
        }
        if (this.state === 'sending') this.armTimer();
      } while (this.pumpAgain);
    } catch (err) {
      this.log.error({ err: (err as Error).message, file: this.name }, 'tftp read failed');
      this.fail('read-error', TFTP_ERROR.NOT_DEFINED, 'read error');
    } finally {
      this.pumping = false;
    }
  }

  private complete(): void {
    const ms = Date.now() - this.startedAt;
    const detail = { file: this.name, bytes: this.bytesRead, blksize: this.negotiated.blksize, windowsize: this.negotiated.windowsize, ms };
    this.log.info({ ...detail, mac: this.mac, source: this.sourceLabel, retransmits: this.retransmits, duplicateAcks: this.duplicateAcks }, 'tftp transfer complete');
    if (this.negotiated.tsize !== undefined && this.negotiated.tsize !== this.bytesRead) {
      this.log.warn({ file: this.name, tsize: this.negotiated.tsize, bytes: this.bytesRead }, 'tftp content size differs from the announced tsize');
    }
    this.ctx.record('tftp-file', this.client.address, detail);
    this.end();
  }

  /** Give up: optionally tell the client, log, record, close. */
  private fail(reason: string, code: number | undefined, message: string | undefined): void {
    if (this.state === 'done') return;
    if (code !== undefined && message !== undefined) this.send({ op: 'error', code, message });
    const ms = Date.now() - this.startedAt;
    this.log.warn({ file: this.name, mac: this.mac, reason, bytes: this.bytesSentAcked(), ms, blksize: this.negotiated.blksize }, 'tftp transfer failed');
    this.ctx.record('tftp-error', this.client.address, { file: this.name, reason, bytes: this.bytesSentAcked(), blksize: this.negotiated.blksize, ms });
    this.end();
  }

  /** Stop silently (server stopping, request superseded). */
  abort(reason: string): void {
    if (this.state === 'done') return;
    this.log.debug({ file: this.name || clip(this.request.filename), reason }, 'tftp transfer aborted');
    this.end();
  }

  /** Close everything; `retry` is a repeated request to serve now (see noteRepeatedRequest). */
  private end(retry?: RequestPacket): void {
    if (this.state === 'done') return;
    this.state = 'done';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.window = [];
    this.closeSocket();
    if (this.reader) {
      const reader = this.reader;
      this.reader = undefined;
      reader.close().catch((err: Error) => this.log.debug({ err: err.message }, 'tftp reader close failed'));
    }
    this.ctx.finished(this, this.client, retry);
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
  };
  const retries = checkRange('retries', options.retries ?? 5, 0, 100);
  const maxTransfers = checkRange('maxTransfers', options.maxTransfers ?? 1000, 1, 100_000);
  const log = options.log.child({ subsystem: 'tftp' });
  const createSocket: TftpSocketFactory = options.socketFactory ?? (() => dgram.createSocket('udp4'));
  const transfers = new Map<string, Transfer>();
  let main: dgram.Socket | undefined;
  let startPromise: Promise<{ port: number }> | undefined;
  let boundPort: number | undefined;

  const ctx: ServerContext = {
    log,
    events: options.events,
    host,
    dirs: [options.root, ...(options.fallbackDirs ?? DEFAULT_FALLBACK_DIRS)],
    limits,
    retries,
    virtualFiles: options.virtualFiles,
    createSocket,
    sendFromMain(packet, to) {
      if (main) safeSend(main, encodePacket(packet), to, log);
    },
    record(type, address, detail) {
      const events = options.events;
      if (!events) return;
      try {
        events.record({ mac: events.macForIp(address) ?? '', type, ip: address, detail });
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'tftp event record failed');
      }
    },
    finished(transfer, client, retry) {
      if (transfers.get(transfer.key) === transfer) transfers.delete(transfer.key);
      if (retry && main) startTransfer(retry, client);
    },
    requestedAgain(address, name, since) {
      return (recentRequests.get(`${address}\0${clip(name, 512)}`) ?? 0) > since;
    },
  };

  // When each client address last asked for each name: tells an abandoned size probe from a
  // failed transfer. Bounded; the oldest entries go first.
  const recentRequests = new Map<string, number>();
  function noteRequest(address: string, name: string): void {
    const key = `${address}\0${clip(name, 512)}`;
    recentRequests.delete(key);
    recentRequests.set(key, Date.now());
    if (recentRequests.size > 4096) recentRequests.delete(recentRequests.keys().next().value as string);
  }

  function startTransfer(request: RequestPacket, client: { address: string; port: number }): void {
    const key = `${client.address}:${client.port}`;
    const existing = transfers.get(key);
    if (existing) {
      if (existing.awaitingFirstReply && sameRequest(existing.request, request)) {
        log.debug({ client: key, file: clip(request.filename) }, 'tftp repeated request ignored (transfer retransmits)');
        existing.noteRepeatedRequest(request);
        return;
      }
      // Same client port, different (or later) request: the client has moved on.
      existing.abort('superseded by a new request');
    }
    noteRequest(client.address, request.filename);
    if (transfers.size >= maxTransfers) {
      log.warn({ client: key, file: clip(request.filename), transfers: transfers.size }, 'tftp request refused: too many transfers');
      ctx.sendFromMain({ op: 'error', code: TFTP_ERROR.NOT_DEFINED, message: 'server busy' }, client);
      return;
    }
    const transfer = new Transfer(ctx, request, client);
    transfers.set(key, transfer);
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

  return {
    get port() {
      return boundPort ?? options.port;
    },
    start() {
      if (startPromise) return startPromise;
      startPromise = new Promise<{ port: number }>((resolve, reject) => {
        const socket = createSocket('listen');
        const onBindError = (err: Error): void => {
          startPromise = undefined;
          try {
            socket.close();
          } catch {
            // never bound
          }
          reject(
            new ApplianceError('ERR_TFTP_BIND', `cannot listen for tftp on ${host}:${options.port}: ${err.message}; pick another port or run with CAP_NET_BIND_SERVICE for port 69`, { host, port: options.port }, { cause: err }),
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
            log.info({ host, port: boundPort, root: options.root, blksizeMax: limits.blksizeMax, windowsizeMax: limits.windowsizeMax }, 'tftp listening');
            resolve({ port: boundPort });
          });
        } catch (err) {
          onBindError(err as Error);
        }
      });
      return startPromise;
    },
    async stop() {
      const socket = main;
      main = undefined;
      startPromise = undefined;
      for (const transfer of [...transfers.values()]) transfer.abort('server stopping');
      transfers.clear();
      if (socket) {
        await new Promise<void>((resolve) => socket.close(() => resolve()));
        log.info({ port: boundPort }, 'tftp stopped');
      }
    },
  };
}
