/**
 * Streams a byte range of a file into an HTTP response in 1 MiB reads from a small pool of
 * reused buffers. fs.ReadStream reads 64 KiB at a time into a fresh external ArrayBuffer per
 * chunk: on 10 x 64 MiB initrds that is ~10,000 reads and 20-26 full mark-compact GCs
 * ("external memory pressure"); with 1 MiB reads Node's throughput is close to nginx's sendfile
 * (docs/NETBOOT-FACTS.md section 8). A buffer goes back to the pool only once the socket has written it
 * (the write callback), and a response holds at most two: one being written, one being read.
 */
import { open } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';

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

/**
 * Write bytes `start..end` (inclusive) of `path` to `res` and end it. Rejects when the file
 * cannot be opened (nothing has been written then); a read error later destroys the response
 * (the client sees a short body, never wrong bytes). Resolves early when the client goes away.
 */
export async function streamFileRange(path: string, start: number, end: number, res: ServerResponse): Promise<void> {
  const handle = await open(path, 'r');
  let gone = res.destroyed;
  let wake: (() => void) | undefined;
  const onClose = (): void => {
    gone = true;
    wake?.();
  };
  const onDrain = (): void => wake?.();
  res.on('close', onClose);
  res.on('drain', onDrain);
  const read = async (at: number): Promise<{ buf: Buffer; n: number }> => {
    const buf = takeBuffer();
    try {
      const { bytesRead } = await handle.read(buf, 0, Math.min(CHUNK_BYTES, end - at + 1), at);
      return { buf, n: bytesRead };
    } catch (err) {
      giveBuffer(buf);
      throw err;
    }
  };
  try {
    let position = start;
    let next = position <= end ? read(position) : undefined;
    while (next && !gone) {
      const { buf, n } = await next;
      if (n === 0) {
        // The file shrank since its size was sent: end the connection rather than send less silently.
        giveBuffer(buf);
        res.destroy(new Error(`${path} shrank while being sent`));
        return;
      }
      position += n;
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
