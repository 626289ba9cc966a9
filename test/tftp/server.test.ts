import test from 'ava';
import { Readable } from 'node:stream';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { hasCode } from '../../src/errors.js';
import { encodePacket, type TftpPacket } from '../../src/tftp/packet.js';
import { createTftpServer, type VirtualFileRequest } from '../../src/tftp/server.js';
import { createSilentLogger } from '../../src/log.js';
import { DEFAULT_FALLBACK_DIRS } from '../../src/tftp/files.js';
import { delay, EDK2_RRQ_OPTIONS, rawPeer, rrq, serverWithFile, sha256, startServer, tempDir, tftpGet, waitFor } from './helpers.js';

const MAC = '52:54:00:aa:bb:cc';

test('serves a file, logs file/client/bytes/duration at info and records a tftp-file event with the mac', async (t) => {
  const s = await startServer();
  t.teardown(() => s.close());
  s.events.record({ mac: MAC, type: 'dhcp-ack', ip: '127.0.0.1' });
  const content = await s.put('undionly.kpxe', 100_000);
  const got = await tftpGet(s.port, 'undionly.kpxe', {
    options: [
      ['blksize', '1468'],
      ['tsize', '0'],
    ],
  });
  t.is(sha256(got.data), sha256(content));
  t.deepEqual(got.oack, [
    ['blksize', '1468'],
    ['tsize', '100000'],
  ]);
  t.true(await waitFor(() => s.events.list({ mac: MAC }).some((e) => e.type === 'tftp-file')));
  const event = s.events.list({ mac: MAC }).find((e) => e.type === 'tftp-file');
  t.is(event?.ip, '127.0.0.1');
  t.like(event?.detail, { file: 'undionly.kpxe', bytes: 100_000, blksize: 1468 });
  t.is(typeof event?.detail?.ms, 'number');
  const info = s.logs.find((l) => l.msg === 'tftp transfer complete');
  t.like(info, { level: 30, file: 'undionly.kpxe', bytes: 100_000, mac: MAC });
  t.regex(String(info?.client), /^127\.0\.0\.1:\d+$/);
});

test('empty file, exact multiple of blksize (final empty block), and tiny blksize', async (t) => {
  const s = await startServer();
  t.teardown(() => s.close());
  await s.put('empty', Buffer.alloc(0));
  const exact = await s.put('exact', 1024);
  const small = await s.put('small', 100);
  t.is((await tftpGet(s.port, 'empty')).data.length, 0);
  const e = await tftpGet(s.port, 'exact');
  t.is(sha256(e.data), sha256(exact));
  t.is(e.blocks, 3); // 512 + 512 + 0
  const b8 = await tftpGet(s.port, 'small', { options: [['blksize', '8']] });
  t.is(sha256(b8.data), sha256(small));
  t.is(b8.blocks, 13);
});

test('windowsize (RFC 7440) with several blksizes', async (t) => {
  const s = await startServer({ windowsizeMax: 16 });
  t.teardown(() => s.close());
  const content = await s.put('f', 300_000);
  for (const [blksize, windowsize] of [
    ['512', '4'],
    ['1468', '16'],
    ['1024', '64'],
  ] as const) {
    const got = await tftpGet(s.port, 'f', {
      options: [
        ['blksize', blksize],
        ['windowsize', windowsize],
      ],
    });
    t.is(sha256(got.data), sha256(content), `${blksize}/${windowsize}`);
    t.is(got.oack?.find(([n]) => n === 'windowsize')?.[1], windowsize === '64' ? '16' : windowsize);
  }
});

test('traversal, absolute paths, backslashes and escaping symlinks: served inside, refused outside, logged', async (t) => {
  const base = await tempDir();
  t.teardown(() => rm(base, { recursive: true, force: true }));
  const root = path.join(base, 'root');
  await mkdir(path.join(root, 'boot', 'x64'), { recursive: true });
  await writeFile(path.join(base, 'secret'), 'secret');
  await writeFile(path.join(root, 'boot', 'x64', 'nbp.efi'), 'nbp');
  await writeFile(path.join(root, 'top.bin'), 'top');
  await symlink(path.join(base, 'secret'), path.join(root, 'escape'));
  await symlink('..', path.join(root, 'up'));
  await symlink('boot/x64/nbp.efi', path.join(root, 'inside-link'));
  const s = await startServer({ root });
  t.teardown(() => s.close());

  const ok: Array<[string, string]> = [
    ['top.bin', 'top'],
    ['/top.bin', 'top'],
    ['//top.bin', 'top'],
    ['boot/x64/nbp.efi', 'nbp'],
    ['boot\\x64\\nbp.efi', 'nbp'],
    ['\\boot\\x64\\nbp.efi', 'nbp'],
    ['./boot/./x64/nbp.efi', 'nbp'],
    ['inside-link', 'nbp'],
  ];
  for (const [name, expected] of ok) {
    t.is((await tftpGet(s.port, name)).data.toString(), expected, name);
  }
  const refused: Array<[string, number]> = [
    ['../secret', 2],
    ['/../secret', 2],
    ['..\\secret', 2],
    ['boot/../../secret', 2],
    ['boot\\..\\..\\secret', 2],
    ['boot/../top.bin', 2],
    ['escape', 2],
    ['up/secret', 2],
    [path.join(base, 'secret'), 1], // leading slash stripped: looked up under the root
    ['/etc/passwd', 1],
    ['missing.bin', 1],
    ['', 1],
    ['boot', 2],
  ];
  for (const [name, code] of refused) {
    const err = await t.throwsAsync(tftpGet(s.port, name));
    t.is((err as Error & { tftpCode?: number }).tftpCode, code, name);
  }
  const warnings = s.logs.filter((l) => l.msg === 'tftp request refused' && l.level === 40);
  t.true(warnings.some((l) => l.reason === 'symlink-escapes-root'));
  t.true(warnings.some((l) => l.reason === 'parent-segment'));
  t.true(s.logs.some((l) => l.msg === 'tftp request refused' && l.reason === 'not-found' && l.level === 30));
  t.is(s.events.list().filter((e) => e.type === 'tftp-error').length, refused.length);
});

test('WRQ is refused with error 2; unknown opcodes and malformed requests get error 4; garbage and stray ACKs dropped', async (t) => {
  const s = await startServer();
  t.teardown(() => s.close());
  const peer = await rawPeer();
  t.teardown(() => peer.close());

  peer.send({ op: 'wrq', filename: 'upload', mode: 'octet', options: [] }, s.port);
  t.like((await peer.next())?.packet, { op: 'error', code: 2 });

  peer.send(Buffer.from([0, 9, 1, 2, 3]), s.port);
  t.like((await peer.next())?.packet, { op: 'error', code: 4 });
  peer.send(Buffer.from([0, 0]), s.port);
  t.like((await peer.next())?.packet, { op: 'error', code: 4 });
  peer.send(Buffer.from('\x00\x01noterminator', 'latin1'), s.port);
  t.like((await peer.next())?.packet, { op: 'error', code: 4 });
  peer.send({ op: 'data', block: 1, data: Buffer.from('x') }, s.port);
  t.like((await peer.next())?.packet, { op: 'error', code: 4 });
  peer.send(rrq('x', [], 'mail'), s.port);
  t.like((await peer.next())?.packet, { op: 'error', code: 4 });

  peer.send(Buffer.from([1]), s.port);
  peer.send({ op: 'ack', block: 1 }, s.port);
  peer.send({ op: 'error', code: 0, message: 'x' }, s.port);
  t.deepEqual(await peer.collect(300), []);
  t.true(s.logs.some((l) => l.msg === 'tftp write request refused'));
});

test('transfer ID check: datagrams from a stranger never reach the transfer (connected socket) and it carries on', async (t) => {
  const s = await startServer({ timeoutMs: 3000 });
  t.teardown(() => s.close());
  const content = await s.put('f', 2000);
  const client = await rawPeer();
  const stranger = await rawPeer();
  t.teardown(() => {
    client.close();
    stranger.close();
  });
  client.send(rrq('f'), s.port);
  const first = await client.next();
  t.like(first?.packet, { op: 'data', block: 1 });
  const tid = first!.from;
  t.not(tid, s.port);

  // The kernel drops (ICMP port unreachable) what a stranger sends to the connected transfer
  // socket, as with tftpd-hpa: no error 5 to reflect, and the transfer is not disturbed.
  stranger.send({ op: 'ack', block: 1 }, tid);
  stranger.send(Buffer.from([0xde, 0xad]), tid);
  stranger.send({ op: 'error', code: 0, message: 'go away' }, tid);
  t.is(await stranger.next(300), undefined);
  t.is(await client.next(200), undefined, 'the transfer did not move on the stranger ACK');

  const chunks = [(first!.packet as { data: Buffer }).data];
  for (let block = 1; block <= 4; block++) {
    client.send({ op: 'ack', block }, tid);
    const next = await client.next();
    if (next?.packet.op !== 'data') break;
    t.is(next.from, tid);
    chunks.push(next.packet.data);
    if (next.packet.data.length < 512) {
      client.send({ op: 'ack', block: block + 1 }, tid);
      break;
    }
  }
  t.is(sha256(Buffer.concat(chunks)), sha256(content));
  t.true(await waitFor(() => s.logs.some((l) => l.msg === 'tftp transfer complete')));
});

test("duplicate ACKs never trigger a resend (no Sorcerer's Apprentice)", async (t) => {
  const s = await startServer({ timeoutMs: 4000 });
  t.teardown(() => s.close());
  await s.put('f', 1500);
  const client = await rawPeer();
  t.teardown(() => client.close());
  client.send(rrq('f'), s.port);
  const d1 = await client.next();
  t.like(d1?.packet, { op: 'data', block: 1 });
  const tid = d1!.from;
  for (let i = 0; i < 5; i++) client.send({ op: 'ack', block: 1 }, tid);
  const after = await client.collect(500);
  t.is(after.length, 1, 'exactly one DATA 2 for five ACK 1');
  t.like(after[0]?.packet, { op: 'data', block: 2 });
  // An older ACK (0, 1) after that is ignored as well.
  client.send({ op: 'ack', block: 0 }, tid);
  client.send({ op: 'ack', block: 1 }, tid);
  t.deepEqual(await client.collect(300), []);
  client.send({ op: 'ack', block: 2 }, tid);
  const last = await client.next();
  t.like(last?.packet, { op: 'data', block: 3 });
  t.is(last?.packet.op === 'data' ? last.packet.data.length : -1, 1500 - 1024);
  client.send({ op: 'ack', block: 3 }, tid);
  client.send({ op: 'ack', block: 3 }, tid);
  t.deepEqual(await client.collect(300), []);
  t.true(await waitFor(() => s.logs.some((l) => l.msg === 'tftp transfer complete' && l.duplicateAcks === 6)));
});

test('UEFI tsize probe: OACK, client ERROR 8, new request from a new port works; not logged as an error', async (t) => {
  const s = await startServer({ timeoutMs: 5000 });
  t.teardown(() => s.close());
  const content = await s.put('snponly.efi', 173_792);
  const probe = await rawPeer();
  t.teardown(() => probe.close());
  // The exact request EDK2 sent in the OVMF capture.
  probe.send(rrq('snponly.efi', EDK2_RRQ_OPTIONS), s.port);
  const oack = await probe.next();
  t.deepEqual(oack?.packet, {
    op: 'oack',
    options: [
      ['tsize', '173792'],
      ['blksize', '1468'],
      ['windowsize', '4'],
    ],
  });
  probe.send({ op: 'error', code: 8, message: 'User aborted the transfer' }, oack!.from);
  await delay(100);
  const got = await tftpGet(s.port, 'snponly.efi', {
    options: [
      ['blksize', '1468'],
      ['windowsize', '4'],
    ],
  });
  t.is(sha256(got.data), sha256(content));
  t.true(await waitFor(() => s.logs.some((l) => l.msg === 'tftp transfer complete')));
  t.true(s.logs.some((l) => l.level === 20 && l.msg === 'tftp client ended option negotiation (size probe)'));
  t.deepEqual(
    s.logs.filter((l) => l.level >= 40),
    [],
  );
  t.deepEqual(
    s.events.list().map((e) => e.type),
    ['tftp-file'],
  );
});

test('tsize probe racing its re-request from the same port: the repeated request is served after the abort', async (t) => {
  const s = await startServer({ timeoutMs: 5000 });
  t.teardown(() => s.close());
  await s.put('snponly.efi', 5000);
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  const request: TftpPacket = rrq('snponly.efi', EDK2_RRQ_OPTIONS.slice(0, 2));
  peer.send(request, s.port);
  const oack = await peer.next();
  t.is(oack?.packet.op, 'oack');
  peer.send(request, s.port); // arrives before the ERROR 8 is handled
  // The repeat gets the OACK again from the same transfer: no second transfer.
  const again = await peer.next(1000);
  t.is(again?.packet.op, 'oack');
  t.is(again?.from, oack?.from, 'repeated request does not start a second transfer');
  peer.send({ op: 'error', code: 8, message: 'User aborted the transfer' }, oack!.from);
  const second = await peer.next(1000); // well before the 5 s retransmission timer
  t.is(second?.packet.op, 'oack');
  t.not(second?.from, oack?.from);
});

test('abandoned size probe (OACK never answered, new request from a new port) is not a failure', async (t) => {
  // The re-request must arrive while the probe transfer still waits (1.5 s here, even under load).
  const s = await startServer({ timeoutMs: 500, retries: 2 });
  t.teardown(() => s.close());
  const content = await s.put('snponly.efi', 3000);
  const probe = await rawPeer();
  t.teardown(() => probe.close());
  probe.send(rrq('snponly.efi', EDK2_RRQ_OPTIONS.slice(0, 2)), s.port);
  t.is((await probe.next())?.packet.op, 'oack');
  const got = await tftpGet(s.port, 'snponly.efi', { options: [['blksize', '1468']] });
  t.is(sha256(got.data), sha256(content));
  t.true(await waitFor(() => s.logs.some((l) => l.msg === 'tftp option negotiation abandoned by client (size probe)'), 6000));
  t.deepEqual(
    s.logs.filter((l) => l.level >= 40),
    [],
  );
  t.deepEqual(
    s.events.list().map((e) => e.type),
    ['tftp-file'],
  );
});

test('an OACK nobody answers, with no new request, is a failed transfer (warn + tftp-error)', async (t) => {
  const s = await startServer({ timeoutMs: 100, retries: 1 });
  t.teardown(() => s.close());
  await s.put('f', 3000);
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  peer.send(rrq('f', [['tsize', '0']]), s.port);
  // Repeating the identical request from the same port does not count as a new request.
  peer.send(rrq('f', [['tsize', '0']]), s.port);
  t.true(await waitFor(() => s.logs.some((l) => l.msg === 'tftp transfer failed' && l.level === 40), 3000));
  t.like(s.events.list().at(-1), { type: 'tftp-error' });
});

test('a different request from the same client port supersedes the old transfer without leaving it running', async (t) => {
  const s = await startServer({ timeoutMs: 500, retries: 1 });
  t.teardown(() => s.close());
  await s.put('a', 3000);
  const b = await s.put('b', 700);
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  peer.send(rrq('a', [['tsize', '0']]), s.port);
  const oack = await peer.next();
  t.is(oack?.packet.op, 'oack');
  peer.send(rrq('b'), s.port);
  const d1 = await peer.next();
  t.like(d1?.packet, { op: 'data', block: 1 });
  t.not(d1?.from, oack?.from);
  peer.send({ op: 'ack', block: 1 }, d1!.from);
  const d2 = await peer.next();
  t.like(d2?.packet, { op: 'data', block: 2 });
  peer.send({ op: 'ack', block: 2 }, d1!.from);
  t.is(sha256(Buffer.concat([d1!.packet, d2!.packet].map((p) => (p.op === 'data' ? p.data : Buffer.alloc(0))))), sha256(b));
  // Nothing more from either socket: the superseded transfer is gone, not retransmitting.
  t.deepEqual(await peer.collect(1200), []);
  t.true(s.logs.some((l) => l.msg === 'tftp transfer aborted' && l.reason === 'superseded by a new request'));
  t.deepEqual(
    s.logs.filter((l) => l.level >= 40),
    [],
  );
});

test('client timeout option (RFC 2349) sets the retransmission interval once the client has acknowledged', async (t) => {
  const s = await startServer({ timeoutMs: 10_000, retries: 1 });
  t.teardown(() => s.close());
  await s.put('f', 10);
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  peer.send(rrq('f', [['timeout', '1']]), s.port);
  const oack = await peer.next();
  t.deepEqual(oack?.packet, { op: 'oack', options: [['timeout', '1']] });
  const started = Date.now();
  peer.send({ op: 'ack', block: 0 }, oack!.from);
  t.like((await peer.next())?.packet, { op: 'data', block: 1 });
  t.like((await peer.next(2500))?.packet, { op: 'data', block: 1 });
  const gap = Date.now() - started;
  t.true(gap >= 900 && gap < 2500, `retransmitted after ${gap} ms`);
});

test('a client timeout above the server cap (timeout=255) is not acknowledged; the server keeps its own', async (t) => {
  const s = await startServer({ timeoutMs: 200, timeoutMaxMs: 5000, retries: 1 });
  t.teardown(() => s.close());
  await s.put('f', 10);
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  peer.send(
    rrq('f', [
      ['timeout', '255'],
      ['blksize', '512'],
    ]),
    s.port,
  );
  const oack = await peer.next();
  t.deepEqual(oack?.packet, { op: 'oack', options: [['blksize', '512']] });
  peer.send({ op: 'ack', block: 0 }, oack!.from);
  const got = await peer.collect(1500);
  // DATA 1, one retransmission after 200 ms, then error 0: gone well within the 1.5 s, not 255 s.
  t.deepEqual(
    got.map((g) => g.packet?.op),
    ['data', 'data', 'error'],
  );
  t.true(await waitFor(() => s.server.stats().transfers === 0));
});

test('an unanswered request costs exactly one reply and frees its slot after pendingMs', async (t) => {
  const s = await startServer({ timeoutMs: 100, retries: 5, pendingMs: 400 });
  t.teardown(() => s.close());
  await s.put('f', 5000);
  const plain = await rawPeer();
  const withOptions = await rawPeer();
  t.teardown(() => {
    plain.close();
    withOptions.close();
  });
  plain.send(rrq('f'), s.port);
  withOptions.send(
    rrq('f', [
      ['blksize', '1468'],
      ['tsize', '0'],
      ['windowsize', '8'],
      ['timeout', '1'],
    ]),
    s.port,
  );
  const [a, b] = await Promise.all([plain.collect(1200), withOptions.collect(1200)]);
  t.deepEqual(
    a.map((g) => g.packet?.op),
    ['data'],
  );
  t.deepEqual(
    b.map((g) => g.packet?.op),
    ['oack'],
  );
  t.is(s.server.stats().transfers, 0);
  t.true(s.logs.some((l) => l.msg === 'tftp transfer failed' && l.reason === 'no-ack'));
  // The slot is gone: a late ACK reaches a closed port and gets nothing.
  plain.send({ op: 'ack', block: 1 }, a[0]!.from);
  t.is(await plain.next(300), undefined);
});

test('gives up after the configured retries: N+1 sends, error 0, warn log, tftp-error event', async (t) => {
  const s = await startServer({ timeoutMs: 100, retries: 3 });
  t.teardown(() => s.close());
  await s.put('f', 2000);
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  peer.send(rrq('f'), s.port);
  const first = await peer.next();
  t.like(first?.packet, { op: 'data', block: 1 });
  peer.send({ op: 'ack', block: 1 }, first!.from);
  const got = await peer.collect(1200);
  const data = got.filter((g) => g.packet?.op === 'data');
  t.is(data.length, 4);
  t.true(data.every((d) => d.packet?.op === 'data' && d.packet.block === 2));
  t.like(got.at(-1)?.packet, { op: 'error', code: 0 });
  t.true(s.logs.some((l) => l.level === 40 && l.msg === 'tftp transfer failed' && l.reason === 'timeout'));
  t.like(s.events.list().at(-1), { type: 'tftp-error', ip: '127.0.0.1', mac: '' });
  // The transfer socket is closed: an ACK now gets nothing back.
  peer.send({ op: 'ack', block: 1 }, data[0]!.from);
  t.is(await peer.next(300), undefined);
});

test('netascii: converted on the fly (LF -> CRLF, CR -> CR NUL), tsize not answered', async (t) => {
  const s = await startServer();
  t.teardown(() => s.close());
  const text = Buffer.from('a\nb\r\nc\r'.repeat(300), 'latin1');
  await s.put('menu.txt', text);
  const got = await tftpGet(s.port, 'menu.txt', {
    mode: 'NetASCII',
    options: [
      ['tsize', '0'],
      ['blksize', '1024'],
    ],
  });
  t.deepEqual(got.oack, [['blksize', '1024']]);
  t.deepEqual(got.data, Buffer.from('a\r\nb\r\0\r\nc\r\0'.repeat(300), 'latin1'));
});

test('virtual files are consulted before disk, get the normalised name, client and mac', async (t) => {
  const seen: VirtualFileRequest[] = [];
  const s = await startServer({
    virtualFiles: async (request) => {
      seen.push(request);
      if (request.name === 'boot.ipxe') return Buffer.from(`#!ipxe\necho ${request.mac ?? 'unknown'}\n`);
      if (request.name === 'stream.bin') return { size: 3000, open: () => Readable.from([Buffer.alloc(1000, 1), Buffer.alloc(2000, 2)]) };
      if (request.name === 'broken') throw new Error('template exploded');
      return undefined;
    },
  });
  t.teardown(() => s.close());
  s.events.record({ mac: MAC, type: 'dhcp-ack', ip: '127.0.0.1' });
  await s.put('disk.bin', Buffer.from('from disk'));
  t.is((await tftpGet(s.port, '/boot.ipxe')).data.toString(), `#!ipxe\necho ${MAC}\n`);
  t.like(seen[0], { name: 'boot.ipxe', rawName: '/boot.ipxe', mac: MAC, client: { address: '127.0.0.1' } });
  const stream = await tftpGet(s.port, 'stream.bin', { options: [['tsize', '0']] });
  t.is(stream.data.length, 3000);
  t.deepEqual(stream.oack, [['tsize', '3000']]);
  t.is((await tftpGet(s.port, 'disk.bin')).data.toString(), 'from disk');
  const err = await t.throwsAsync(tftpGet(s.port, 'broken'));
  t.is((err as Error & { tftpCode?: number }).tftpCode, 0);
  t.true(s.logs.some((l) => l.level === 50 && l.msg === 'tftp virtual file failed'));
  // Traversal is refused before the virtual seam sees it.
  await t.throwsAsync(tftpGet(s.port, '../x'));
  t.false(seen.some((r) => r.rawName === '../x'));
});

test('fallback dirs serve what the root lacks; the root wins when both have it', async (t) => {
  const fallback = await tempDir();
  t.teardown(() => rm(fallback, { recursive: true, force: true }));
  await writeFile(path.join(fallback, 'snponly.efi'), 'system');
  await writeFile(path.join(fallback, 'undionly.kpxe'), 'system');
  const s = await startServer({ fallbackDirs: [path.join(fallback, 'missing'), fallback] });
  t.teardown(() => s.close());
  await s.put('undionly.kpxe', Buffer.from('root'));
  t.is((await tftpGet(s.port, 'snponly.efi')).data.toString(), 'system');
  t.is((await tftpGet(s.port, 'undionly.kpxe')).data.toString(), 'root');
});

test("default fallback serves Debian's /usr/lib/ipxe binaries (installed here and in CI)", async (t) => {
  const root = await tempDir();
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const s = await startServer({ root, fallbackDirs: DEFAULT_FALLBACK_DIRS });
  t.teardown(() => s.close());
  const { readFile } = await import('node:fs/promises');
  for (const name of ['undionly.kpxe', 'snponly.efi', 'ipxe.efi']) {
    const got = await tftpGet(s.port, name, {
      options: [
        ['blksize', '1468'],
        ['windowsize', '8'],
      ],
    });
    t.is(sha256(got.data), sha256(await readFile(path.join('/usr/lib/ipxe', name))), name);
  }
});

test('maxTransfers: with every slot a live (acknowledged) transfer, a request gets error 0 server busy', async (t) => {
  const s = await startServer({ maxTransfers: 1, timeoutMs: 2000 });
  t.teardown(() => s.close());
  await s.put('f', 5000);
  const holder = await rawPeer();
  t.teardown(() => holder.close());
  holder.send(rrq('f'), s.port);
  const d1 = await holder.next();
  t.like(d1?.packet, { op: 'data', block: 1 });
  holder.send({ op: 'ack', block: 1 }, d1!.from);
  t.like((await holder.next())?.packet, { op: 'data', block: 2 });
  const err = await t.throwsAsync(tftpGet(s.port, 'f'));
  t.regex(err!.message, /server busy/);
  // A flood of refused requests is one warning a second; the rest go to debug.
  const flood = await rawPeer();
  t.teardown(() => flood.close());
  for (let i = 0; i < 5; i++) {
    flood.send(rrq('f'), s.port);
    t.like((await flood.next())?.packet, { op: 'error' });
  }
  const refused = s.logs.filter((l) => l.msg === 'tftp request refused: too many transfers');
  t.is(refused.filter((l) => l.level === 40).length, 1, JSON.stringify(refused.map((l) => l.level)));
  t.true(refused.filter((l) => l.level === 20).length >= 5);
});

for (const [name, limits] of [
  ['per client', { maxPerClient: 1 }],
  ['in total', { maxTransfers: 1 }],
] as const) {
  test(`slot limit ${name}: the oldest never-acknowledged transfer is reaped for a new request`, async (t) => {
    const s = await startServer({ ...limits, timeoutMs: 2000 });
    t.teardown(() => s.close());
    const content = await s.put('f', 5000);
    const abandoned = await rawPeer();
    t.teardown(() => abandoned.close());
    abandoned.send(rrq('f'), s.port);
    const d1 = await abandoned.next();
    t.like(d1?.packet, { op: 'data', block: 1 });
    const got = await tftpGet(s.port, 'f');
    t.is(sha256(got.data), sha256(content));
    t.is(s.server.stats().reaped, 1);
    t.true(s.logs.some((l) => l.msg === 'tftp transfer aborted' && String(l.reason).startsWith('reaped')));
    // The reaped transfer's socket is closed: its late ACK goes nowhere.
    abandoned.send({ op: 'ack', block: 1 }, d1!.from);
    t.is(await abandoned.next(300), undefined);
  });
}

test('options are validated; start rejects ERR_TFTP_BIND on a taken port; port 0 reports the real port', async (t) => {
  const log = createSilentLogger();
  for (const bad of [{ blksizeMax: 7 }, { blksizeMax: 65465 }, { windowsizeMax: 0 }, { retries: -1 }, { timeoutMs: 1.5 }]) {
    const err = t.throws(() => createTftpServer({ root: '/tmp', port: 0, log, ...bad }));
    t.true(hasCode(err, 'ERR_CONFIG'), JSON.stringify(bad));
  }
  const a = createTftpServer({ root: '/tmp', host: '127.0.0.1', port: 0, log });
  t.is(a.port, 0);
  const { port } = await a.start();
  t.teardown(() => a.stop());
  t.true(port > 0);
  t.is(a.port, port);
  const b = createTftpServer({ root: '/tmp', host: '127.0.0.1', port, log });
  const err = await t.throwsAsync(b.start());
  t.true(hasCode(err, 'ERR_TFTP_BIND'));
});

test('stop() aborts running transfers and closes their sockets', async (t) => {
  const s = await startServer({ timeoutMs: 5000 });
  await s.put('f', 5000);
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  peer.send(rrq('f'), s.port);
  const d1 = await peer.next();
  t.is(d1?.packet.op, 'data');
  await s.close();
  peer.send({ op: 'ack', block: 1 }, d1!.from);
  peer.send(encodePacket(rrq('f')), s.port);
  t.deepEqual(await peer.collect(300), []);
});

test('a 60 000-byte file name is refused and logged clipped, not whole', async (t) => {
  const s = await startServer();
  t.teardown(() => s.close());
  const peer = await rawPeer();
  t.teardown(() => peer.close());
  peer.send(rrq('a/'.repeat(30_000)), s.port);
  const reply = await peer.next();
  t.is(reply?.packet.op, 'error');
  t.true(await waitFor(() => s.logs.some((l) => l.msg === 'tftp request refused')));
  const line = s.logs.find((l) => l.msg === 'tftp request refused');
  t.true(String(line?.file).length <= 260);
  t.true(JSON.stringify(s.logs).length < 20_000);
});

test('a copy of the request read just after its transfer completed is ignored; the same request a second later is served', async (t) => {
  const { s, content, peer } = await serverWithFile(t, 'g', 700, { timeoutMs: 2000 });
  const request: TftpPacket = rrq('g');
  // Lock-step from the peer's one port until the short block (700 bytes: two blocks).
  const fetch = async (): Promise<Buffer> => {
    peer.send(request, s.port);
    const parts: Buffer[] = [];
    for (let block = 1; block <= 2; block++) {
      const got = await peer.next();
      if (got?.packet?.op !== 'data' || got.packet.block !== block) throw new Error(`expected block ${block}, got ${JSON.stringify(got?.packet)}`);
      parts.push(got.packet.data);
      peer.send({ op: 'ack', block }, got.from);
    }
    return Buffer.concat(parts);
  };
  t.is(sha256(await fetch()), sha256(content));
  t.true(await waitFor(() => s.logs.some((l) => l.msg === 'tftp transfer complete')));
  // What a busy main thread does when it reads the client's repeated request only after a
  // transfer thread finished the transfer.
  peer.send(request, s.port);
  t.deepEqual(await peer.collect(300), [], 'no second transfer started');
  t.true(s.logs.some((l) => l.msg === 'tftp repeated request for a transfer that just completed ignored'));
  await delay(800);
  t.is(sha256(await fetch()), sha256(content), 'asked again later, from the same port: served');
});

test('a late copy of the request from the same port does not restart a running transfer', async (t) => {
  const { s, content, peer } = await serverWithFile(t, 'f', 1500, { timeoutMs: 2000 });
  const request: TftpPacket = rrq('f');
  peer.send(request, s.port);
  const d1 = await peer.next();
  t.like(d1?.packet, { op: 'data', block: 1 });
  peer.send({ op: 'ack', block: 1 }, d1!.from);
  const d2 = await peer.next();
  t.like(d2?.packet, { op: 'data', block: 2 });
  peer.send(request, s.port); // the client's retransmitted RRQ, arriving late
  peer.send({ op: 'ack', block: 2 }, d1!.from);
  const d3 = await peer.next();
  t.like(d3?.packet, { op: 'data', block: 3 });
  t.is(d3?.from, d1?.from, 'still the first transfer');
  peer.send({ op: 'ack', block: 3 }, d1!.from);
  const parts = [d1, d2, d3].map((d) => (d!.packet as { data: Buffer }).data);
  t.is(sha256(Buffer.concat(parts)), sha256(content));
  t.true(await waitFor(() => s.logs.some((l) => l.msg === 'tftp transfer complete')));
  t.deepEqual(await peer.collect(200), [], 'no second transfer started');
});
