/**
 * One TFTP read transfer, from request to last ACK: the state machine that sends the OACK and
 * the window with 16-bit block rollover, retransmits and bounds what a hostile or vanished
 * client can hold. What it reads comes from read-source.ts, the options it agrees from
 * negotiate.ts (RFC 2347/2348/2349, RFC 7440); the listening socket, admission and slot limits
 * live in server.ts.
 *
 * The hot path is written for a boot storm on two cores (the socket side, connected and
 * vectored, is transfer-socket.ts):
 * - blocks come synchronously from memory (the boot-file cache, or the read-ahead chunk of a
 *   large file), so a window is sent from one call with no promise per block;
 * - an ACK is read in place (no decoded object) and moves the window's head (no splice);
 * - progress moves a deadline; the one timer of a transfer is touched only when it fires or
 *   must fire earlier (a timer call per block showed in the lock-step profile).
 *
 * Bounds (the lab segment is untrusted):
 * - before the client's first ACK nothing is retransmitted on a timer: an RRQ from a spoofed or
 *   vanished address costs exactly one reply; a client that lost our reply repeats its request
 *   (every PXE client does) and gets the reply again, one per request;
 * - such an unacknowledged transfer holds its slot for `pendingMs` only (server.ts also reaps
 *   the oldest of them when a limit is reached);
 * - the client's `timeout` option is honoured up to `timeoutMaxMs` and ignored above it (RFC 2349
 *   wants the OACK value to match the request, so it cannot be lowered).
 */
import type dgram from 'node:dgram';
import type { EventLog } from '../events.js';
import type { Logger } from '../log.js';
import type { FileCache } from './file-cache.js';
import { clip, type BlockReader } from './files.js';
import { negotiateOptions, type Negotiated, type NegotiationLimits } from './negotiate.js';
import { openReadSource, type VirtualFiles } from './read-source.js';
import { TransferSocket, type TftpSocketFactory } from './transfer-socket.js';
import { decodePacket, OPCODE, TFTP_ERROR, TftpDecodeError, type RequestPacket, type TftpPacket } from './packet.js';

export type { TftpSocketFactory } from './transfer-socket.js';

/** What a transfer needs from its server. */
export interface TransferContext {
  log: Logger;
  events: EventLog | undefined;
  host: string;
  dirs: readonly string[];
  limits: NegotiationLimits;
  retries: number;
  /** How long a transfer the client has not acknowledged holds its slot. */
  pendingMs: number;
  virtualFiles: VirtualFiles | undefined;
  cache: FileCache;
  createSocket: TftpSocketFactory;
  /** Send from the listening socket (errors for requests). */
  sendFromMain(packet: TftpPacket, to: { address: string; port: number }): void;
  record(type: 'tftp-file' | 'tftp-error', address: string, detail: Record<string, unknown>): void;
  /** The client acknowledged for the first time: the transfer is no longer reapable. */
  acknowledged(transfer: Transfer): void;
  finished(transfer: Transfer, client: { address: string; port: number }, retry: RequestPacket | undefined): void;
  /** True when `address` asked for `name` again after `since` (ms epoch). */
  requestedAgain(address: string, name: string, since: number): boolean;
  /** A warning that a flood could repeat: logged at most once a second, the rest at debug. */
  warnLimited(fields: Record<string, unknown>, msg: string): void;
  /**
   * Hand a resolved transfer of an in-memory file to a transfer thread (transfer-threads.ts):
   * the handle this transfer then forwards to, or undefined to send it from this thread.
   */
  offload?(transfer: Transfer, handed: HandedTransfer): RemotePeer | undefined;
}

/** What a transfer starts sending with, once its request is resolved and its options agreed. */
export interface PreparedTransfer {
  name: string;
  /** Where it came from (read-source.ts). */
  label: string;
  mac: string | undefined;
  reader: BlockReader;
  negotiated: Negotiated;
}

/** A transfer handed to a transfer thread: what its sending needs, all of it cloneable (the content shared, not copied). */
export interface HandedTransfer {
  request: RequestPacket;
  client: { address: string; port: number };
  name: string;
  label: string;
  mac: string | undefined;
  negotiated: Negotiated;
  /** The whole file, a view of a SharedArrayBuffer. */
  content: Uint8Array;
}

/** What the main thread's side of a handed-over transfer tells the thread that sends it. */
export interface RemotePeer {
  /** The client repeated its request (see repeatFirstReply). */
  repeat(request: RequestPacket): void;
  /** The client asked for `name` from another port (see clientMovedOn). */
  movedOn(name: string): void;
  /** Stop silently (superseded, reaped, server stopping). */
  abort(reason: string): void;
}

/** The levels a transfer logs at. */
export type TransferLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** `remote`: resolved here, sent by a transfer thread (this object forwards to it). */
type TransferState = 'resolving' | 'negotiating' | 'sending' | 'remote' | 'done';

/** True when two requests are the same (a client repeating its RRQ). */
export function sameRequest(a: RequestPacket, b: RequestPacket): boolean {
  return a.filename === b.filename && a.mode.toLowerCase() === b.mode.toLowerCase() && JSON.stringify(a.options) === JSON.stringify(b.options);
}

/** One read transfer from request to last ACK (or failure). */
export class Transfer {
  readonly key: string;
  readonly client: { address: string; port: number };
  /** The request this transfer serves (for duplicate detection). */
  readonly request: RequestPacket;
  readonly startedAt = Date.now();
  private state: TransferState = 'resolving';
  private readonly ctx: TransferContext;
  private readonly log: Logger;
  private readonly io: TransferSocket;
  private reader: BlockReader | undefined;
  private negotiated: Negotiated = { blksize: 512, windowsize: 1, timeoutMs: 1000, tsize: undefined, oack: undefined };
  private name = '';
  private sourceLabel = '';
  private mac: string | undefined;
  private retryRequest: RequestPacket | undefined;
  /** The thread sending this transfer, in state `remote`. */
  private remote: RemotePeer | undefined;
  private gotAck = false;
  // Window state, in absolute block numbers (wire number = abs & 0xffff, RFC 1350 rollover).
  // Blocks acked+1 .. readCount, kept until acknowledged, are window[windowHead ...]: an ACK
  // moves the head instead of splicing the array (compacted once the head has run far).
  private window: Buffer[] = [];
  private windowHead = 0;
  private acked = 0;
  private readCount = 0;
  private nextSend = 1;
  private highestSent = 0;
  private lastBlock: number | undefined;
  private bytesRead = 0;
  private retriesLeft: number;
  private timer: NodeJS.Timeout | undefined;
  /** When the transfer times out (ms epoch); progress moves it, the timer checks it when it fires. */
  private due = 0;
  /** When the running timer fires (ms epoch). */
  private timerDue = 0;
  private filling = false;
  private duplicateAcks = 0;
  /** Sent in full (complete or completeUnconfirmed; for a handed-over transfer, as its thread said). */
  private sentInFull = false;
  private retransmits = 0;
  private repeatedRequests = 0;
  /** After the last block went out, the client acknowledged the block before it again: it lacks the last one. */
  private lastBlockMissed = false;

  constructor(ctx: TransferContext, request: RequestPacket, client: { address: string; port: number }) {
    this.ctx = ctx;
    this.request = request;
    this.client = client;
    this.key = `${client.address}:${client.port}`;
    this.log = ctx.log.child({ client: this.key });
    this.io = new TransferSocket(this.log);
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
   * The client repeated its request: our first reply was lost (or is still on its way). Sent
   * again, once per repeat, from the transfer socket. Remembered so that if the client aborts
   * this transfer anyway, the repeated request is served (UEFI tsize probe raced with its
   * re-request).
   */
  repeatFirstReply(request: RequestPacket): void {
    this.retryRequest = request;
    this.repeatedRequests += 1;
    if (this.state === 'remote') {
      this.remote?.repeat(request);
    } else if (this.state === 'negotiating') {
      this.sendOack();
    } else if (this.state === 'sending' && this.window[this.windowHead] !== undefined && this.acked === 0) {
      this.sendBlock(1);
      this.arm(this.ctx.pendingMs);
    }
  }

  /** Resolve, open, negotiate and send the first reply; never rejects. */
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
    const mac = ctx.events?.macForIp(this.client.address);
    this.mac = mac;
    const source = await openReadSource(ctx, request, this.client, mac, () => this.isDone());
    if (source.kind === 'aborted') return;
    if (source.kind === 'refused') {
      this.refuse(source.code, source.message, source.reason, source.level);
      return;
    }
    const negotiated = negotiateOptions(request.options, ctx.limits, source.size);
    this.log.debug(
      {
        file: source.name,
        mac,
        mode: request.mode.toLowerCase(),
        blksize: negotiated.blksize,
        windowsize: negotiated.windowsize,
        tsize: negotiated.tsize,
        source: source.label,
      },
      'tftp read request',
    );
    if (source.content !== undefined && ctx.offload) {
      const handed = { request, client: this.client, name: source.name, label: source.label, mac, negotiated, content: source.content };
      const peer = ctx.offload(this, handed);
      if (peer) {
        this.remote = peer;
        this.name = source.name;
        this.negotiated = negotiated;
        this.state = 'remote';
        await source.reader.close().catch(() => undefined);
        return;
      }
    }
    await this.start({ name: source.name, label: source.label, mac, reader: source.reader, negotiated });
  }

  /** Open the transfer socket and send the first reply (here, or on a transfer thread for a handed-over transfer). */
  async start(prepared: PreparedTransfer): Promise<void> {
    const { ctx } = this;
    this.name = prepared.name;
    this.sourceLabel = prepared.label;
    this.mac = prepared.mac;
    this.reader = prepared.reader;
    this.negotiated = prepared.negotiated;
    await this.io.open(ctx.createSocket, ctx.host, this.client, {
      message: (msg, rinfo) => this.onMessage(msg, rinfo),
      error: (err) => this.onSocketError(err),
      setupError: (err) => {
        this.log.error({ err: err.message }, 'tftp transfer socket setup failed');
        this.refuse(TFTP_ERROR.NOT_DEFINED, 'server error', 'bind-error', 'error');
      },
      ended: () => this.isDone(),
    });
    if (this.isDone()) return;
    if (this.negotiated.oack) {
      this.state = 'negotiating';
      this.sendOack();
    } else {
      this.state = 'sending';
      this.pump();
    }
  }

  /** A handed-over transfer's thread logged a line: written here, with this transfer's fields. */
  remoteLog(level: TransferLogLevel, fields: Record<string, unknown>, msg: string): void {
    this.log[level](fields, msg);
  }

  /** A handed-over transfer's client acknowledged for the first time. */
  remoteAcknowledged(): void {
    if (this.state === 'remote') this.firstAck();
  }

  /** A handed-over transfer ended on its thread; `retry` as in end(). */
  remoteEnded(retry: RequestPacket | undefined, completed: boolean): void {
    if (this.state !== 'remote') return;
    this.sentInFull = completed;
    this.end(retry);
  }

  /** Whether the file went out in full (server.ts ignores a late copy of its request for a moment). */
  get completed(): boolean {
    return this.sentInFull;
  }

  private onSocketError(err: NodeJS.ErrnoException): void {
    if (err.code === 'ECONNREFUSED') {
      // The client's port answered ICMP port unreachable: it has gone (rebooted, aborted, or the
      // request was spoofed). Free the slot now rather than after the retransmission timeout.
      if (!this.gotAck) {
        this.log.debug({ file: this.name }, 'tftp client port unreachable before any ack');
        this.end();
        return;
      }
      this.log.info({ file: this.name, mac: this.mac, bytes: this.bytesSentAcked() }, 'tftp client went away (port unreachable)');
      this.ctx.record('tftp-error', this.client.address, { file: this.name, reason: 'client-gone', bytes: this.bytesSentAcked() });
      this.end();
      return;
    }
    this.log.warn({ err: err.message }, 'tftp transfer socket error');
    this.fail('socket-error', TFTP_ERROR.NOT_DEFINED, 'server error');
  }

  /** Refuse before the transfer socket exists: error from the listening socket. */
  private refuse(code: number, message: string, reason: string, level: 'debug' | 'info' | 'warn' | 'error'): void {
    if (this.state === 'done') return;
    this.ctx.sendFromMain({ op: 'error', code, message }, this.client);
    this.log[level]({ file: clip(this.request.filename), mac: this.mac, reason, errorCode: code }, 'tftp request refused');
    this.ctx.record('tftp-error', this.client.address, { file: clip(this.request.filename), error: code, reason });
    this.end();
  }

  /** Send DATA for absolute block `abs` from the window. */
  private sendBlock(abs: number): void {
    const data = this.window[this.windowHead + abs - this.acked - 1];
    if (data !== undefined) this.io.sendData(abs, data);
  }

  private sendOack(): void {
    this.io.send({ op: 'oack', options: this.negotiated.oack ?? [] });
    this.arm(this.ctx.pendingMs);
  }

  /**
   * Time out `ms` from now. Progress only moves the deadline (no timer call per block): the one
   * timer of the transfer is replaced only when the new deadline is earlier than the timer, and
   * a timer that fires before the deadline sleeps again for the rest.
   */
  private arm(ms: number): void {
    const due = Date.now() + ms;
    this.due = due;
    if (this.timer !== undefined && this.timerDue <= due) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(this.onTimer, ms);
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    const left = this.due - Date.now();
    if (left > 0) {
      this.timerDue = this.due;
      this.timer = setTimeout(this.onTimer, left);
      return;
    }
    this.onTimeout();
  };

  private onTimeout(): void {
    if (this.state === 'done') return;
    if (!this.gotAck) {
      this.endUnanswered();
      return;
    }
    if (this.retriesLeft <= 0) {
      if (this.onlyFinalAckMissing()) {
        this.completeUnconfirmed('client-silent');
        return;
      }
      const lastAckLost = this.lastBlock !== undefined && this.highestSent === this.lastBlock;
      this.fail(lastAckLost ? 'timeout-final-ack' : 'timeout', TFTP_ERROR.NOT_DEFINED, 'transfer timed out');
      return;
    }
    this.retriesLeft -= 1;
    this.retransmits += 1;
    // Resend the whole unacknowledged window (RFC 7440 section 4: the sender times out and
    // retransmits from the last acknowledged block).
    this.log.debug({ file: this.name, from: this.acked + 1 }, 'tftp data retransmit');
    this.nextSend = this.acked + 1;
    this.pump();
  }

  /** No ACK ever came within `pendingMs`: the slot is freed without another datagram. */
  private endUnanswered(): void {
    if (this.state === 'negotiating' && this.ctx.requestedAgain(this.client.address, this.request.filename, this.startedAt)) {
      // Some PXE firmware never answers the OACK of its size probe and simply asks again
      // from a new port: the probe was abandoned, nothing failed.
      this.log.debug({ file: this.name, mac: this.mac }, 'tftp option negotiation abandoned by client (size probe)');
      this.end();
      return;
    }
    const ms = Date.now() - this.startedAt;
    this.ctx.warnLimited(
      { client: this.key, file: this.name, mac: this.mac, reason: 'no-ack', repeatedRequests: this.repeatedRequests, ms },
      'tftp transfer failed',
    );
    this.ctx.record('tftp-error', this.client.address, { file: this.name, reason: 'no-ack', bytes: 0, blksize: this.negotiated.blksize, ms });
    this.end();
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.state === 'done') return;
    if (rinfo.port !== this.client.port || rinfo.address !== this.client.address) {
      // Cannot happen on a connected socket; a test factory's socket might not be connected.
      this.log.debug({ from: `${rinfo.address}:${rinfo.port}`, bytes: msg.length }, 'tftp datagram from unknown transfer id dropped');
      return;
    }
    // The datagram of every block: an ACK (opcode 4, RFC 1350 section 5), read in place.
    if (msg.length >= 4 && msg[0] === 0 && msg[1] === OPCODE.ACK) {
      this.onAck((msg[2]! << 8) | msg[3]!);
      return;
    }
    let packet: TftpPacket;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      if (err instanceof TftpDecodeError && err.reason === 'unknown-opcode') {
        this.io.send({ op: 'error', code: TFTP_ERROR.ILLEGAL_OPERATION, message: 'illegal tftp operation' });
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
        this.io.send({ op: 'error', code: TFTP_ERROR.ILLEGAL_OPERATION, message: 'illegal tftp operation' });
        this.fail('illegal-operation', undefined, undefined);
    }
  }

  private firstAck(): void {
    if (this.gotAck) return;
    this.gotAck = true;
    this.ctx.acknowledged(this);
  }

  private onAck(wire: number): void {
    if (this.state === 'negotiating') {
      if (wire !== 0) {
        this.log.debug({ block: wire }, 'tftp unexpected ack before oack was acknowledged');
        return;
      }
      this.firstAck();
      this.state = 'sending';
      this.retriesLeft = this.ctx.retries;
      this.pump();
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
      if (this.onlyFinalAckMissing() && wire === ((this.lastBlock! - 1) & 0xffff)) this.lastBlockMissed = true;
      return;
    }
    this.firstAck();
    this.windowHead += k - this.acked;
    if (this.windowHead >= this.window.length) {
      this.window.length = 0;
      this.windowHead = 0;
    } else if (this.windowHead > 1024) {
      this.window.splice(0, this.windowHead);
      this.windowHead = 0;
    }
    this.acked = k;
    this.retriesLeft = this.ctx.retries;
    if (this.lastBlock !== undefined && k === this.lastBlock) {
      this.complete();
      return;
    }
    // RFC 7440 section 4: an ACK inside the window means the client lost the block after it;
    // the next window starts right after the acknowledged block.
    if (this.nextSend <= k || k < this.highestSent) this.nextSend = k + 1;
    this.pump();
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
    this.ctx.record('tftp-error', this.client.address, {
      file: this.name,
      error: code,
      reason: 'client-error',
      message: detail.clientMessage,
      bytes: this.bytesSentAcked(),
    });
    this.end();
  }

  /**
   * Every block was sent and every block but the last acknowledged (at least one data block,
   * so a client that acknowledged nothing but the OACK is never counted), and the client never
   * asked for the last one again (no repeated ACK of the block before it). RFC 1350 section 6 lets the
   * receiver of the final DATA leave after sending its ACK, so that ACK may be lost for good:
   * Debian's arm64 grub always ACKs the last block (grub-core/net/tftp.c tftp_receive) and boots
   * the kernel at once; in some lab runs that ACK never reached the wire (pcap), in others it did.
   */
  private onlyFinalAckMissing(): boolean {
    return (
      this.lastBlock !== undefined && this.lastBlock >= 2 && this.highestSent === this.lastBlock && this.acked === this.lastBlock - 1 && !this.lastBlockMissed
    );
  }

  /**
   * The client asked for another file from another port: a client reads one file at a time, so
   * if only the final ACK of this transfer is missing, it had the file and moved on.
   */
  clientMovedOn(name: string): void {
    if (this.state === 'remote') this.remote?.movedOn(name);
    else if (this.state === 'sending' && this.onlyFinalAckMissing()) this.completeUnconfirmed('new-request');
  }

  /** Sent in full, last block unacknowledged (see onlyFinalAckMissing): complete, logged as such. */
  private completeUnconfirmed(why: 'client-silent' | 'new-request'): void {
    this.sentInFull = true;
    const ms = Date.now() - this.startedAt;
    const detail = {
      file: this.name,
      bytes: this.bytesRead,
      blksize: this.negotiated.blksize,
      windowsize: this.negotiated.windowsize,
      ms,
      finalAck: false,
      why,
    };
    this.log.info(
      { ...detail, mac: this.mac, source: this.sourceLabel, retransmits: this.retransmits },
      why === 'new-request'
        ? 'tftp transfer complete: the client did not acknowledge the last block but asked for its next file'
        : 'tftp transfer complete: every block sent, the client did not acknowledge the last one (a client that boots at once may not; it never asked for it again)',
    );
    this.ctx.record('tftp-file', this.client.address, detail);
    this.end();
  }

  private bytesSentAcked(): number {
    // Full blocks before the last one, plus the last block if acknowledged.
    if (this.lastBlock !== undefined && this.acked >= this.lastBlock) return this.bytesRead;
    return this.acked * this.negotiated.blksize;
  }

  /** Take a block read from the source into the window. */
  private accept(data: Buffer): void {
    this.window.push(data);
    this.readCount += 1;
    this.bytesRead += data.length;
    // RFC 1350 section 6: a block shorter than blksize (possibly empty) ends the file.
    if (data.length < this.negotiated.blksize) this.lastBlock = this.readCount;
  }

  /**
   * Send what the window allows. Blocks in memory are taken synchronously; when the source must
   * be awaited (a chunk of a large file, a virtual stream) one read runs and the pump resumes.
   * Before the first ACK only block 1 is sent (windowsize is 1 without an OACK anyway).
   */
  private pump(): void {
    if (this.filling) return;
    const { blksize, windowsize } = this.negotiated;
    for (;;) {
      if (this.state !== 'sending') return;
      if (this.nextSend > this.acked + windowsize) break;
      if (this.lastBlock !== undefined && this.nextSend > this.lastBlock) break;
      if (!this.gotAck && this.nextSend > 1) break;
      if (this.nextSend > this.readCount) {
        const data = this.reader!.readSync?.(blksize);
        if (data === undefined) {
          this.fill();
          return;
        }
        this.accept(data);
        continue;
      }
      this.sendBlock(this.nextSend);
      if (this.nextSend > this.highestSent) this.highestSent = this.nextSend;
      this.nextSend += 1;
    }
    this.arm(this.gotAck ? this.negotiated.timeoutMs : this.ctx.pendingMs);
  }

  private fill(): void {
    this.filling = true;
    this.reader!.read(this.negotiated.blksize).then(
      (data) => {
        this.filling = false;
        if (this.state !== 'sending') return;
        this.accept(data);
        this.pump();
      },
      (err: unknown) => {
        this.filling = false;
        this.log.error({ err: (err as Error).message, file: this.name }, 'tftp read failed');
        this.fail('read-error', TFTP_ERROR.NOT_DEFINED, 'read error');
      },
    );
  }

  private complete(): void {
    this.sentInFull = true;
    const ms = Date.now() - this.startedAt;
    const detail = { file: this.name, bytes: this.bytesRead, blksize: this.negotiated.blksize, windowsize: this.negotiated.windowsize, ms };
    this.log.info(
      { ...detail, mac: this.mac, source: this.sourceLabel, retransmits: this.retransmits, duplicateAcks: this.duplicateAcks },
      'tftp transfer complete',
    );
    if (this.negotiated.tsize !== undefined && this.negotiated.tsize !== this.bytesRead) {
      this.log.warn({ file: this.name, tsize: this.negotiated.tsize, bytes: this.bytesRead }, 'tftp content size differs from the announced tsize');
    }
    this.ctx.record('tftp-file', this.client.address, detail);
    this.end();
  }

  /** Give up: optionally tell the client, log, record, close. */
  private fail(reason: string, code: number | undefined, message: string | undefined): void {
    if (this.state === 'done') return;
    if (code !== undefined && message !== undefined) this.io.send({ op: 'error', code, message });
    const ms = Date.now() - this.startedAt;
    this.log.warn({ file: this.name, mac: this.mac, reason, bytes: this.bytesSentAcked(), ms, blksize: this.negotiated.blksize }, 'tftp transfer failed');
    this.ctx.record('tftp-error', this.client.address, { file: this.name, reason, bytes: this.bytesSentAcked(), blksize: this.negotiated.blksize, ms });
    this.end();
  }

  /** Stop silently (server stopping, request superseded, slot reaped). */
  abort(reason: string): void {
    if (this.state === 'done') return;
    // A handed-over transfer is aborted (and logged) on its thread.
    if (this.state === 'remote') this.remote?.abort(reason);
    else this.log.debug({ file: this.name || clip(this.request.filename), reason }, 'tftp transfer aborted');
    this.end();
  }

  /** Close everything; `retry` is a repeated request to serve now (see repeatFirstReply). */
  private end(retry?: RequestPacket): void {
    if (this.state === 'done') return;
    this.state = 'done';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.window = [];
    this.windowHead = 0;
    this.io.close();
    if (this.reader) {
      const reader = this.reader;
      this.reader = undefined;
      reader.close().catch((err: Error) => this.log.debug({ err: err.message }, 'tftp reader close failed'));
    }
    this.ctx.finished(this, this.client, retry);
  }
}
