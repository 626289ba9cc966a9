/**
 * The final ACK that never comes: RFC 1350 section 6 lets the receiver of the last DATA leave
 * after its ACK, and Debian's arm64 grub boots the kernel right after the initrd's last block;
 * in some lab runs its final ACK never reached the wire. A transfer whose every block was sent
 * and every block but the last acknowledged is complete (logged as unacknowledged), unless the
 * client showed it lacks the last block by acknowledging the one before it again.
 */
import test, { type ExecutionContext } from 'ava';
import type { BootEvent } from '../../src/events.js';
import { rawPeer, startServer, waitFor, type RawPeer, type TestServer } from './helpers.js';

/** RRQ `f` with blksize 512, acknowledge every block but the last; returns the transfer port and the last block. */
async function readAllButFinalAck(peer: RawPeer, port: number): Promise<{ tid: number; last: number }> {
  peer.send({ op: 'rrq', filename: 'f', mode: 'octet', options: [['blksize', '512']] }, port);
  const oack = await peer.next();
  if (oack?.packet.op !== 'oack') throw new Error(`expected an oack, got ${JSON.stringify(oack?.packet)}`);
  peer.send({ op: 'ack', block: 0 }, oack.from);
  for (;;) {
    const got = await peer.next();
    if (got?.packet.op !== 'data') throw new Error(`expected data, got ${JSON.stringify(got?.packet)}`);
    if (got.packet.data.length < 512) return { tid: got.from, last: got.packet.block };
    peer.send({ op: 'ack', block: got.packet.block }, got.from);
  }
}

function fileEvents(events: BootEvent[]): BootEvent[] {
  return events.filter((e) => e.detail?.['file'] === 'f');
}

/** A server with files f (3 blocks of 512) and g, and two client sockets of the same host. */
async function setup(t: ExecutionContext, timing: { timeoutMs: number; retries: number }): Promise<{ s: TestServer; peer: RawPeer; next: RawPeer }> {
  const s = await startServer(timing);
  t.teardown(() => s.close());
  await s.put('f', 1300);
  await s.put('g', 10);
  const peer = await rawPeer();
  const next = await rawPeer();
  t.teardown(() => (peer.close(), next.close()));
  return { s, peer, next };
}

test('last block sent, client silent after it: complete with finalAck false, logged at info, not a failure', async (t) => {
  const { s, peer } = await setup(t, { timeoutMs: 40, retries: 2 });
  const { last } = await readAllButFinalAck(peer, s.port);
  t.is(last, 3);
  t.true(await waitFor(() => fileEvents(s.events.list()).length > 0));
  const [e] = fileEvents(s.events.list());
  t.like(e, { type: 'tftp-file', detail: { bytes: 1300, finalAck: false, why: 'client-silent' } });
  t.false(
    s.logs.some((l) => l.msg === 'tftp transfer failed'),
    'logged as a failure',
  );
  t.true(s.logs.some((l) => l.level === 30 && String(l.msg).startsWith('tftp transfer complete: every block sent')));
});

test('last block sent, then the client asks for its next file: complete at once (no retransmission wait)', async (t) => {
  const { s, peer, next } = await setup(t, { timeoutMs: 5000, retries: 5 });
  await readAllButFinalAck(peer, s.port);
  const asked = Date.now();
  next.send({ op: 'rrq', filename: 'g', mode: 'octet', options: [] }, s.port);
  t.true(await waitFor(() => fileEvents(s.events.list()).length > 0, 2000));
  t.true(Date.now() - asked < 2000, 'waited for the retransmission timer');
  t.like(fileEvents(s.events.list())[0], { type: 'tftp-file', detail: { finalAck: false, why: 'new-request' } });
  t.is((await next.next())?.packet.op, 'data', 'the next file was served');
});

test('a client that acknowledges the block before the last again lacks the last one: still a failure', async (t) => {
  const { s, peer } = await setup(t, { timeoutMs: 40, retries: 2 });
  const { tid, last } = await readAllButFinalAck(peer, s.port);
  peer.send({ op: 'ack', block: last - 1 }, tid);
  t.true(await waitFor(() => fileEvents(s.events.list()).length > 0));
  t.like(fileEvents(s.events.list())[0], { type: 'tftp-error', detail: { reason: 'timeout-final-ack' } });
});

test('a transfer stopped short of the last block is no completion, even when the client moves on', async (t) => {
  const { s, peer, next } = await setup(t, { timeoutMs: 40, retries: 2 });
  peer.send({ op: 'rrq', filename: 'f', mode: 'octet', options: [['blksize', '512']] }, s.port);
  const oack = await peer.next();
  peer.send({ op: 'ack', block: 0 }, oack!.from);
  t.is((await peer.next())?.packet.op, 'data');
  next.send({ op: 'rrq', filename: 'g', mode: 'octet', options: [] }, s.port);
  t.true(await waitFor(() => fileEvents(s.events.list()).length > 0));
  t.like(fileEvents(s.events.list())[0], { type: 'tftp-error', detail: { reason: 'timeout' } });
});
