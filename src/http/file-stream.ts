/**
 * Streams a byte range of a file into an HTTP response in 1 MiB reads from a small pool of
 * reused buffers. fs.ReadStream reads 64 KiB at a time into a fresh external ArrayBuffer per
 * chunk: on 10 x 64 MiB initrds that is ~10,000 reads and 20-26 full mark-compact GCs
 * ("external memory pressure"); with 1 MiB reads Node's throughput is close to nginx's sendfile
 * (docs/NETBOOT-FACTS.md section 8). A buffer goes back to the pool only once the socket has written it
 * (the write callback), and a response holds at most two: one being written, one being read.
 *
 * Where the sendfile addon is built (src/http/sendfile.ts) the bytes do not pass through the
 * process at all: after a first copied chunk (which carries Node's header), the rest goes out by
 * non-blocking sendfile(2) on the socket's own descriptor, as nginx sends. When the socket's send
 * buffer is full (EAGAIN), one small chunk is written the ordinary way, so libuv waits for the
 * socket and its write callback says when there is room again; the socket's idle timeout is
 * refreshed as it is by any write. Copying costs twice the CPU of sendfile (nginx: 0.82 s of CPU
 * for 50 x 64 MiB, Node copying: 1.50 s).
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { open, type FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { EAGAIN, sendfileNative, socketFd, type SendfileFn } from './sendfile.js';

/** Bytes per read. */
export const CHUNK_BYTES = 1024 * 1024;
/** Buffers kept for reuse when idle (32 MiB); more are allocated under load and then collected. */
const POOL_MAX = 32;
const pool: Buffer[] = [];

function takeBuffer(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES);
}

function giveBuffer(buf: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buf);
}

/** Buffers currently idle in the pool (tests). */
export function pooledBuffers(): number {
  return pool.length;
}

/** Bytes written by the first chunk and after a full send buffer, through Node's own write. */
const COPY_BYTES = 64 * 1024;
/**
 * Bytes per sendfile call. One call for all that fits the send buffer (several MiB on loopback)
 * cost twice the system time and more wall time than 256 KiB calls, 50 clients x 64 MiB (quiet
 * machine, interleaved with the copying build: 1.76 against 1.30 s, 4.2 against 2.2 s of system
 * CPU); 64 KiB calls cost more again (3.2 s).
 */
const CALL_BYTES = 256 * 1024;
/** Bytes one response sends by sendfile before it lets other work run. */
const TURN_BYTES = 4 * 1024 * 1024;

let sentByKernel = 0;
let sentByCopy = 0;

/** Bytes sent by sendfile and by copying since start (tests, /metrics). */
export function fileStreamStats(): { sendfileBytes: number; copiedBytes: number } {
  return { sendfileBytes: sentByKernel, copiedBytes: sentByCopy };
}

/** Read up to `bytes` at `at` into a pooled buffer (returned to the pool if the read fails). */
async function readChunk(handle: FileHandle, at: number, bytes: number): Promise<{ buf: Buffer; n: number }> {
  const buf = takeBuffer();
  try {
    const { bytesRead } = await handle.read(buf, 0, bytes, at);
    return { buf, n: bytesRead };
  } catch (err) {
    giveBuffer(buf);
    throw err;
  }
}

/** The file shrank since its size was sent: end the connection rather than send less silently. */
function destroyShrunk(res: ServerResponse, path: string): void {
  res.destroy(new Error(`${path} shrank while being sent`));
}

export interface StreamOptions {
  /** Use sendfile(2) where the addon is built (default true). */
  sendfile?: boolean;
}

/**
 * Write bytes `start..end` (inclusive) of `path` to `res` and end it. Rejects when the file
 * cannot be opened (nothing has been written then); a read error later destroys the response
 * (the client sees a short body, never wrong bytes). Resolves early when the client goes away.
 */
export async function streamFileRange(path: string, start: number, end: number, res: ServerResponse, options: StreamOptions = {}): Promise<void> {
  const handle = await open(path, 'r');
  const kernel = options.sendfile === false ? undefined : sendfileNative();
  // sendfile writes beside Node's HTTP framing, so only where Node adds none (a Content-Length
  // response: send sets one, and never chunks) and the socket is a plain TCP descriptor.
  const fd = kernel && res.hasHeader('content-length') ? socketFd(res.socket) : undefined;
  if (kernel && fd !== undefined && end - start + 1 > COPY_BYTES) return sendRange(kernel, fd, handle, path, start, end, res);
  let gone = res.destroyed;
  let wake: (() => void) | undefined;
  const onClose = (): void => {
    gone = true;
    wake?.();
  };
  const onDrain = (): void => wake?.();
  res.on('close', onClose);
  res.on('drain', onDrain);
  const read = (at: number): Promise<{ buf: Buffer; n: number }> => readChunk(handle, at, Math.min(CHUNK_BYTES, end - at + 1));
  try {
    let position = start;
    let next = position <= end ? read(position) : undefined;
    while (next && !gone) {
      const { buf, n } = await next;
      if (n === 0) {
        giveBuffer(buf);
        destroyShrunk(res, path);
        return;
      }
      position += n;
      sentByCopy += n;
      // Read the next chunk while this one is written.
      next = position <= end && !gone ? read(position) : undefined;
      const ok = res.write(n === buf.length ? buf : buf.subarray(0, n), () => giveBuffer(buf));
      if (!ok && !gone) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
    const leftover = next ? await next.catch(() => undefined) : undefined;
    if (leftover) giveBuffer(leftover.buf);
    if (!gone) res.end();
  } catch (err) {
    res.destroy(err as Error);
  } finally {
    res.off('close', onClose);
    res.off('drain', onDrain);
    await handle.close().catch(() => undefined);
  }
}

/** Write `buf` through the response (Node's header goes out with the first one); resolves once written. */
function writeCopy(res: ServerResponse, buf: Buffer, n: number): Promise<void> {
  sentByCopy += n;
  return new Promise<void>((resolve, reject) => {
    res.write(n === buf.length ? buf : buf.subarray(0, n), (err) => {
      giveBuffer(buf);
      if (err) reject(err);
      else resolve();
    });
  });
}

/** streamFileRange by sendfile(2): see the module comment. Same contract. */
async function sendRange(kernel: SendfileFn, fd: number, handle: FileHandle, path: string, start: number, end: number, res: ServerResponse): Promise<void> {
  const socket = res.socket;
  let gone = res.destroyed;
  const onClose = (): void => {
    gone = true;
  };
  res.on('close', onClose);
  /** Copy up to COPY_BYTES at `at` through Node's write; 0 when the file ended early. */
  const copyChunk = async (at: number): Promise<number> => {
    const { buf, n } = await readChunk(handle, at, Math.min(COPY_BYTES, end - at + 1));
    if (n === 0) {
      giveBuffer(buf);
      return 0;
    }
    await writeCopy(res, buf, n);
    return n;
  };
  const shrank = (): void => destroyShrunk(res, path);
  try {
    let position = start;
    // The first chunk carries the header; once its write callback runs, nothing of Node's is
    // queued on the socket and the kernel's send buffer is in order.
    const first = await copyChunk(position);
    if (first === 0) return shrank();
    position += first;
    let turn = 0;
    while (position <= end && !gone) {
      // Checked in the same synchronous step as the call: a destroyed socket's descriptor is
      // closed at once and its number may already belong to another connection or file.
      if (socket === null || socket.destroyed || socket.writableLength > 0) {
        // Destroyed: the copy's write fails and ends this. Someone else wrote to the socket
        // (nothing should): finish by copying, in order.
        const n = await copyChunk(position);
        if (n === 0) return shrank();
        position += n;
        continue;
      }
      const sent = kernel(fd, handle.fd, position, Math.min(CALL_BYTES, end - position + 1));
      if (sent > 0) {
        sentByKernel += sent;
        position += sent;
        turn += sent;
        if (turn >= TURN_BYTES && position <= end) {
          turn = 0;
          // A fast client must not hold the event loop; the idle timer counts this as activity.
          if (socket.timeout) socket.setTimeout(socket.timeout);
          await nextTurn();
        }
      } else if (sent === 0) {
        return shrank();
      } else if (sent === -EAGAIN) {
        // The send buffer is full: one copied write lets libuv wait until the socket drains.
        turn = 0;
        const n = await copyChunk(position);
        if (n === 0) return shrank();
        position += n;
      } else {
        // EPIPE, ECONNRESET...: the client went away.
        res.destroy();
        return;
      }
    }
    if (!gone) res.end();
  } catch (err) {
    res.destroy(err as Error);
  } finally {
    res.off('close', onClose);
    await handle.close().catch(() => undefined);
  }
}
