import test from 'ava';
import { randomBytes } from 'node:crypto';
import { encodePacket, type TftpPacket } from '../../src/tftp/packet.js';
import { lossySocketFactory, rawPeer, sha256, startServer, tftpGet, waitFor } from './helpers.js';

/** Deterministic pseudo-random numbers, so a failure can be replayed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 0x1_0000_0000;
  };
}

test('packet loss, duplication and reordering: retransmission still delivers sha256-identical files', async (t) => {
  const random = prng(42);
  const { factory, stats } = lossySocketFactory({
    dropOut: () => random() < 0.1,
    duplicateOut: () => random() < 0.05,
    delayOut: () => (random() < 0.05 ? 5 : 0),
    dropIn: () => random() < 0.1,
  });
  const s = await startServer({ socketFactory: factory, timeoutMs: 50, retries: 20 });
  t.teardown(() => s.close());
  const content = await s.put('f', 200_000);
  for (const options of [
    [],
    [['blksize', '1468']],
    [
      ['blksize', '1024'],
      ['windowsize', '8'],
    ],
    [
      ['blksize', '512'],
      ['windowsize', '16'],
    ],
  ] as Array<Array<[string, string]>>) {
    const got = await tftpGet(s.port, 'f', { options, timeoutMs: 120, dallyMs: 600 });
    t.is(sha256(got.data), sha256(content), JSON.stringify(options));
  }
  t.true(stats.droppedOut > 10, `dropped out ${stats.droppedOut}`);
  t.true(stats.droppedIn > 10, `dropped in ${stats.droppedIn}`);
  t.true(stats.duplicatedOut > 5, `duplicated ${stats.duplicatedOut}`);
  t.true(stats.delayedOut > 5, `delayed ${stats.delayedOut}`);
  t.true(await waitFor(() => s.logs.filter((l) => l.msg === 'tftp transfer complete').length === 4));
  const completes = s.logs.filter((l) => l.msg === 'tftp transfer complete');
  t.true(completes.some((l) => Number(l.retransmits) > 0));
});

test('lost OACK and lost first DATA: the client repeats its request and gets the reply again', async (t) => {
  // Drop the first datagram of every transfer socket (the OACK or DATA 1). Before the client's
  // first ACK the server never retransmits on a timer (an unanswered request costs one reply):
  // the client's repeated RRQ (every PXE client repeats it) brings the reply again.
  const { factory, stats } = lossySocketFactory({ dropOut: (_buf, n) => n === 0 });
  const s = await startServer({ socketFactory: factory, timeoutMs: 100, pendingMs: 5000 });
  t.teardown(() => s.close());
  const content = await s.put('f', 3000);
  const a = await tftpGet(s.port, 'f', { timeoutMs: 300 });
  const b = await tftpGet(s.port, 'f', { options: [['blksize', '1024']], timeoutMs: 300 });
  t.is(sha256(a.data), sha256(content));
  t.is(sha256(b.data), sha256(content));
  t.is(stats.droppedOut, 2);
  t.true(s.logs.some((l) => l.msg === 'tftp repeated request: first reply sent again'));
});

test('window partially lost: the client ACKs the last in-order block and the server restarts from there', async (t) => {
  // Drop DATA 3 once, in the first window of 8.
  let dropped = false;
  const { factory } = lossySocketFactory({
    dropOut: (buf) => {
      if (!dropped && buf.readUInt16BE(0) === 3 && buf.readUInt16BE(2) === 3) {
        dropped = true;
        return true;
      }
      return false;
    },
  });
  const s = await startServer({ socketFactory: factory, timeoutMs: 5000 });
  t.teardown(() => s.close());
  const content = await s.put('f', 20 * 512 + 7);
  const started = Date.now();
  const got = await tftpGet(s.port, 'f', { options: [['windowsize', '8']], timeoutMs: 3000 });
  t.is(sha256(got.data), sha256(content));
  t.true(dropped);
  // Recovered through the client's gap ACK, not through a 5 s server timeout.
  t.true(Date.now() - started < 4000, `took ${Date.now() - started} ms`);
});

test('20 clients at once, mixed options, all sha256-correct', async (t) => {
  const s = await startServer();
  t.teardown(() => s.close());
  const files = await Promise.all(Array.from({ length: 4 }, (_, i) => s.put(`f${i}`, 150_000 + i * 33_333)));
  const option = (i: number): Array<[string, string]> =>
    [
      [],
      [['blksize', '1468']],
      [
        ['blksize', '1024'],
        ['windowsize', '4'],
      ],
      [
        ['blksize', '512'],
        ['windowsize', '16'],
        ['tsize', '0'],
      ],
    ][i % 4] as Array<[string, string]>;
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => tftpGet(s.port, `f${i % 4}`, { options: option(i) })));
  results.forEach((r, i) => t.is(sha256(r.data), sha256(files[i % 4]!), `client ${i}`));
  t.true(await waitFor(() => s.logs.filter((l) => l.msg === 'tftp transfer complete').length === 20));
});

function mutate(random: () => number, base: Buffer): Buffer {
  const buf = Buffer.from(base);
  const kind = Math.floor(random() * 4);
  if (kind === 0) return buf.subarray(0, Math.floor(random() * buf.length));
  if (kind === 1) {
    for (let i = 0; i < 3; i++) buf[Math.floor(random() * buf.length)] = Math.floor(random() * 256);
    return buf;
  }
  if (kind === 2) return Buffer.concat([buf, randomBytes(Math.floor(random() * 64))]);
  return randomBytes(Math.floor(random() * 600));
}

test('fuzz: thousands of random and mutated datagrams to the request port and a transfer port; the server keeps serving', async (t) => {
  const s = await startServer({ timeoutMs: 2000, retries: 2 });
  t.teardown(() => s.close());
  const content = await s.put('f', 400_000);
  const random = prng(7);
  const fuzzer = await rawPeer();
  t.teardown(() => fuzzer.close());
  const seeds: TftpPacket[] = [
    {
      op: 'rrq',
      filename: 'f',
      mode: 'octet',
      options: [
        ['blksize', '1468'],
        ['tsize', '0'],
        ['windowsize', '4'],
      ],
    },
    { op: 'rrq', filename: '../../etc/passwd', mode: 'netascii', options: [] },
    { op: 'wrq', filename: 'x', mode: 'octet', options: [] },
    { op: 'ack', block: 1 },
    { op: 'error', code: 8, message: 'abort' },
    { op: 'oack', options: [['blksize', '512']] },
    { op: 'data', block: 1, data: Buffer.alloc(100) },
  ];
  const send = (port: number, count: number): void => {
    for (let i = 0; i < count; i++) {
      const base = encodePacket(seeds[Math.floor(random() * seeds.length)]!);
      fuzzer.send(mutate(random, base), port);
    }
  };
  // Extremes first: empty, 1 byte, the largest UDP payload.
  fuzzer.send(Buffer.alloc(0), s.port);
  fuzzer.send(Buffer.from([1]), s.port);
  fuzzer.send(Buffer.alloc(65_507, 1), s.port);
  fuzzer.send(Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(65_505, 0x41)]), s.port);
  for (let round = 0; round < 10; round++) {
    send(s.port, 300);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }

  // Now real transfers, with the fuzzer (a stranger) hammering a transfer port meanwhile.
  const download = tftpGet(s.port, 'f', { options: [['blksize', '512']], timeoutMs: 300 });
  // A transfer driven by hand gives the fuzzer a transfer port to hammer as a stranger.
  const victim = await rawPeer();
  t.teardown(() => victim.close());
  // Retry like a real client: under the flood the kernel may drop the request datagram.
  let first: Awaited<ReturnType<typeof victim.next>>;
  for (let attempt = 0; attempt < 10 && !first; attempt++) {
    victim.send({ op: 'rrq', filename: 'f', mode: 'octet', options: [] }, s.port);
    first = await victim.next(1000);
  }
  t.is(first?.packet.op, 'data');
  const transferPort = first!.from;
  for (let round = 0; round < 10; round++) {
    send(transferPort, 200);
    fuzzer.send(Buffer.alloc(0), transferPort);
    fuzzer.send(Buffer.alloc(65_507, 3), transferPort);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  // The victim transfer is undisturbed: ACK 1 still moves it to DATA 2.
  await victim.collect(50);
  victim.send({ op: 'ack', block: 1 }, transferPort);
  let next = await victim.next();
  // A retransmitted DATA 1 may still be on its way; skip it.
  while (next?.packet.op === 'data' && next.packet.block === 1) next = await victim.next();
  t.like(next?.packet, { op: 'data', block: 2 });
  // The transfer socket is connected to the victim: the stranger's datagrams never reach it and
  // nothing is sent back to the stranger from it (the kernel answers with ICMP port unreachable).
  const replies = await fuzzer.collect(300);
  t.false(replies.some((r) => r.from === transferPort));

  const got = await download;
  t.is(sha256(got.data), sha256(content));
  const after = await tftpGet(s.port, 'f', {
    options: [
      ['blksize', '1468'],
      ['windowsize', '8'],
    ],
  });
  t.is(sha256(after.data), sha256(content));
  t.false(
    s.logs.some((l) => l.level >= 50),
    'nothing logged at error level',
  );
});

test('fuzz from the client itself on its transfer port: garbage dropped, illegal opcodes end only that transfer', async (t) => {
  const s = await startServer({ timeoutMs: 2000 });
  t.teardown(() => s.close());
  const content = await s.put('f', 5000);
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  peer.send({ op: 'rrq', filename: 'f', mode: 'octet', options: [] }, s.port);
  const first = await peer.next();
  const tid = first!.from;
  // Undecodable datagrams from the right peer are dropped: the transfer stays alive.
  for (const junk of [Buffer.alloc(0), Buffer.from([4]), Buffer.from([0, 4, 0]), Buffer.from([0, 5, 1])]) peer.send(junk, tid);
  t.deepEqual(await peer.collect(200), []);
  peer.send({ op: 'ack', block: 1 }, tid);
  t.like((await peer.next())?.packet, { op: 'data', block: 2 });
  // An illegal operation from the peer gets error 4 and ends the transfer (RFC 1350).
  peer.send(Buffer.from([0, 42]), tid);
  t.like((await peer.next())?.packet, { op: 'error', code: 4 });
  peer.send({ op: 'ack', block: 2 }, tid);
  t.is(await peer.next(300), undefined);
  t.is(sha256((await tftpGet(s.port, 'f')).data), sha256(content));
});
