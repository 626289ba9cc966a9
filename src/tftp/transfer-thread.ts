/**
 * The entry of a transfer thread (transfer-threads.ts): runs handed-over transfers with
 * transfer.ts's own state machine, on sockets of this thread, and sends back to the main thread
 * everything the main thread keeps (log lines, events, the first ACK, the end).
 */
import dgram from 'node:dgram';
import { parentPort } from 'node:worker_threads';
import type { Logger } from '../log.js';
import { createFileCache } from './file-cache.js';
import { createBufferReader } from './files.js';
import { createRecentRequests } from './recent-requests.js';
import { Transfer, type TransferContext, type TransferLogLevel } from './transfer.js';
import type { FromThread, ToThread } from './transfer-threads.js';

const port = parentPort;
if (!port) throw new Error('transfer-thread.ts runs as a worker thread (transfer-threads.ts)');

const transfers = new Map<number, Transfer>();
/** Fed by the main thread's `moved-on` notes: whether a client asked for a name again (size probes). */
const recent = createRecentRequests();
/** A transfer here resolves nothing: an empty cache stands in for the main thread's. */
const noCache = createFileCache({ maxFileBytes: 0, maxTotalBytes: 0 });

function send(msg: FromThread): void {
  port!.postMessage(msg);
}

/** A logger whose lines go to the main thread, to be written by transfer `id`'s own logger there. */
function forwardingLogger(id: number, levels: readonly TransferLogLevel[]): Logger {
  const write =
    (level: TransferLogLevel) =>
    (fields: Record<string, unknown>, msg: string): void => {
      if (levels.includes(level)) send({ t: 'log', id, level, fields, msg });
    };
  const logger = { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error'), child: () => logger };
  // The subset of pino's Logger that transfer.ts and transfer-socket.ts call.
  return logger as unknown as Logger;
}

function start(msg: Extract<ToThread, { t: 'start' }>): void {
  const { id, handed, settings, levels } = msg;
  const ctx: TransferContext = {
    log: forwardingLogger(id, levels),
    events: undefined,
    host: settings.host,
    dirs: [],
    limits: settings.limits,
    retries: settings.retries,
    pendingMs: settings.pendingMs,
    virtualFiles: undefined,
    cache: noCache,
    createSocket: () => dgram.createSocket('udp4'),
    sendFromMain: (packet, to) => send({ t: 'send-main', packet, to }),
    record: (type, address, detail) => send({ t: 'record', type, address, detail }),
    acknowledged: () => send({ t: 'acked', id }),
    finished(transfer, _client, retry) {
      transfers.delete(id);
      send({ t: 'finished', id, retry, completed: transfer.completed });
    },
    requestedAgain: (address, name, since) => recent.askedSince(address, name, since),
    warnLimited: (fields, msg) => send({ t: 'warn', fields, msg }),
  };
  const transfer = new Transfer(ctx, handed.request, handed.client);
  transfers.set(id, transfer);
  // Shared memory arrives as a plain Uint8Array: a Buffer view of the same bytes.
  const content = Buffer.from(handed.content.buffer, handed.content.byteOffset, handed.content.byteLength);
  transfer
    .start({ name: handed.name, label: handed.label, mac: handed.mac, reader: createBufferReader(content), negotiated: handed.negotiated })
    .catch((err: unknown) => {
      send({ t: 'log', id, level: 'error', fields: { err: (err as Error).message, file: handed.name }, msg: 'tftp transfer setup failed' });
      transfer.abort('setup failed');
    });
}

port.on('message', (msg: ToThread) => {
  switch (msg.t) {
    case 'start':
      start(msg);
      return;
    case 'repeat':
      transfers.get(msg.id)?.repeatFirstReply(msg.request);
      return;
    case 'moved-on': {
      const transfer = transfers.get(msg.id);
      if (!transfer) return;
      recent.note(transfer.client.address, msg.name);
      transfer.clientMovedOn(msg.name);
      return;
    }
    case 'abort':
      transfers.get(msg.id)?.abort(msg.reason);
      return;
  }
});

send({ t: 'ready' });
