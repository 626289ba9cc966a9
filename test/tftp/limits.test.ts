/**
 * The TFTP server under the red team's attack: 1,000 abandoned requests asking for `timeout=255`
 * must not lock real clients out (they did for 25 minutes), must hold bounded resources, and must
 * each cost the server at most one reply.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { encodePacket } from '../../src/tftp/packet.js';
import { sha256, startServer, tempDir, type TestServer } from './helpers.js';

const run = promisify(execFile);

/** Open `count` client sockets that each send one RRQ with timeout=255 and never answer. */
async function abandon(port: number, count: number): Promise<{ sockets: dgram.Socket[]; received: () => number }> {
  const rrq = encodePacket({
    op: 'rrq',
    filename: 'snponly.efi',
    mode: 'octet',
    options: [
      ['timeout', '255'],
      ['blksize', '1468'],
      ['tsize', '0'],
    ],
  });
  const sockets: dgram.Socket[] = [];
  let received = 0;
  for (let i = 0; i < count; i++) {
    const socket = dgram.createSocket('udp4');
    socket.on('message', () => {
      received += 1;
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    sockets.push(socket);
  }
  for (const [i, socket] of sockets.entries()) {
    socket.send(rrq, port, '127.0.0.1');
    // Paced a little, so the kernel's receive queue of port 69 does not simply drop the flood.
    if (i % 25 === 24) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return { sockets, received: () => received };
}

async function curlGet(s: TestServer, dir: string, name: string): Promise<Buffer> {
  const out = path.join(dir, `${name}.${Math.random().toString(16).slice(2)}.out`);
  // --max-time: "within seconds" is the whole point (the same attack used to lock clients out for 25 minutes).
  await run('curl', ['--silent', '--show-error', '--max-time', '10', '--tftp-blksize', '1468', '-o', out, `tftp://127.0.0.1:${s.port}/${name}`]);
  return readFile(out);
}

for (const [name, limits, bound] of [
  // One attacking address: the per-client cap (default 32) reaps its oldest unanswered transfers.
  ['per-client cap', {}, 32],
  // Many addresses look the same to the total cap once per-client is out of the way.
  ['total cap', { maxPerClient: 100_000, maxTransfers: 200 }, 200],
] as const) {
  test(`${name}: 1,000 abandoned RRQs with timeout=255, then curl downloads within seconds; one reply each`, async (t) => {
    const dir = await tempDir();
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const s = await startServer({ ...limits, timeoutMs: 1000, retries: 5 });
    t.teardown(() => s.close());
    const content = await s.put('snponly.efi', 180_000);
    const attack = await abandon(s.port, 1000);
    t.teardown(() => {
      for (const socket of attack.sockets) socket.close();
    });
    // Let the server take the whole flood in.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const stats = s.server.stats();
    t.true(stats.transfers <= bound, `${stats.transfers} transfers held (bound ${bound})`);
    t.true(stats.reaped >= 300, `reaped ${stats.reaped}`);
    t.is(stats.refusedBusy, 0);

    const got = await curlGet(s, dir, 'snponly.efi');
    t.is(sha256(got), sha256(content));
    // Amplification bound: no RRQ got more than one datagram back (the OACK), none retransmitted.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    t.true(attack.received() <= 1000, `${attack.received()} replies to 1,000 requests`);
    t.true(s.logs.some((l) => l.msg === 'tftp transfer complete' && l.file === 'snponly.efi'));
    // The limit warning is logged, but rate-limited, not once per reaped request.
    const warnings = s.logs.filter((l) => l.level === 40);
    t.true(warnings.length >= 1 && warnings.length < 20, `${warnings.length} warnings`);
  });
}
