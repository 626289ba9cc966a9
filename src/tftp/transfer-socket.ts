/**
 * The socket of one TFTP transfer (its TID, RFC 1350 section 4): bound to an ephemeral port on
 * the server's address and connected to the client, so a send passes no address (no
 * `dns.lookup` + nextTick per datagram) and the kernel drops datagrams from any other address
 * or port (ICMP port unreachable, as with tftpd-hpa's connected sockets). transfer.ts decides
 * what to send; this module only sends, receives and closes.
 *
 * - DATA goes out as a vectored send of a 4-byte header and a view of the block (no copy); the
 *   header is reused while the kernel takes every datagram at once (libuv tries the send
 *   synchronously), and a datagram left queued keeps its header.
 * - Control packets (OACK, ERROR) are counted until flushed: closing waits for them, so the final
 *   ERROR of a failed transfer still leaves.
 */
import type dgram from 'node:dgram';
import type { Logger } from '../log.js';
import { encodePacket, OPCODE, type TftpPacket } from './packet.js';

/**
 * Creates the UDP sockets the server uses: the listening socket and one per transfer. Tests pass
 * a factory returning sockets that drop, duplicate or delay datagrams.
 */
export type TftpSocketFactory = (role: 'listen' | 'transfer') => dgram.Socket;

/** What the transfer is told about its socket. */
export interface TransferSocketEvents {
  message(msg: Buffer, rinfo: dgram.RemoteInfo): void;
  /** An error after the socket was connected (e.g. ECONNREFUSED from the client's ICMP). */
  error(err: NodeJS.ErrnoException): void;
  /** Bind or connect failed. */
  setupError(err: Error): void;
  /** True when the transfer ended while the socket was being set up. */
  ended(): boolean;
}

/** A DATA header with its opcode written; the block number goes in bytes 2-3. */
function dataHeader(): Buffer {
  const header = Buffer.alloc(4);
  header[1] = OPCODE.DATA;
  return header;
}

/** The socket of one transfer; `open()` binds and connects it. */
export class TransferSocket {
  private socket: dgram.Socket | undefined;
  private pendingSends = 0;
  private closeWhenFlushed = false;
  private header = dataHeader();
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  /**
   * Bind an ephemeral port on `host` and connect it to `client`. Resolves once connected, or once
   * setup failed (`events.setupError` was called) or the socket was closed first; never rejects.
   */
  open(create: TftpSocketFactory, host: string, client: { address: string; port: number }, events: TransferSocketEvents): Promise<void> {
    return new Promise((resolve) => {
      const socket = create('transfer');
      this.socket = socket;
      const onSetupError = (err: Error): void => {
        events.setupError(err);
        resolve();
      };
      socket.once('error', onSetupError);
      // Closed before the setup completed (transfer aborted): nothing more will happen.
      socket.once('close', () => resolve());
      socket.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => {
        try {
          events.message(msg, rinfo);
        } catch (err) {
          this.log.error({ err: (err as Error).message }, 'tftp transfer message handler failed');
        }
      });
      try {
        socket.bind(0, host, () => {
          if (events.ended()) return;
          socket.connect(client.port, client.address, () => {
            socket.off('error', onSetupError);
            socket.on('error', (err: NodeJS.ErrnoException) => events.error(err));
            resolve();
          });
        });
      } catch (err) {
        onSetupError(err as Error);
      }
    });
  }

  /** Send a control packet (OACK, ERROR); the socket closes only once such a send is flushed. */
  send(packet: TftpPacket): void {
    const socket = this.socket;
    if (!socket) return;
    this.pendingSends += 1;
    const done = (): void => {
      this.pendingSends -= 1;
      if (this.pendingSends === 0 && this.closeWhenFlushed) this.close();
    };
    try {
      socket.send(encodePacket(packet), (err) => {
        if (err) this.log.debug({ err: err.message }, 'tftp send failed');
        done();
      });
    } catch (err) {
      // The socket was closed under us (transfer ended or server stopping).
      this.log.debug({ err: (err as Error).message }, 'tftp send on closed socket');
      done();
    }
  }

  /** Send DATA for absolute block `abs` (wire number abs & 0xffff): header + block view, no copy, no callback. */
  sendData(abs: number, data: Buffer): void {
    const socket = this.socket;
    if (!socket) return;
    const header = this.header;
    header[2] = (abs >> 8) & 0xff;
    header[3] = abs & 0xff;
    try {
      socket.send([header, data]);
      if (socket.getSendQueueCount?.() !== 0) this.header = dataHeader();
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'tftp send on closed socket');
    }
  }

  /** Close the socket; a datagram still queued (the final ERROR) is sent first. */
  close(): void {
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
}
