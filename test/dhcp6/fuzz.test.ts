/**
 * Malformed datagrams never crash: captured DHCPv6 messages mutated (bytes flipped, lengths
 * rewritten, truncated, spliced) go through the decoder, the typed view and both decision
 * functions. The only error allowed is ERR_DHCP6_DECODE; a decision always returns a value.
 */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decideProxy6, decideServer6 } from '../../src/dhcp6/boot.js';
import { Lease6Pool } from '../../src/dhcp6/leases.js';
import { decodeMessage, encodeMessage, ERR_DHCP6_DECODE, readClientMessage } from '../../src/dhcp6/packet.js';
import { hasCode } from '../../src/errors.js';
import { SERVER_DUID } from './helpers.js';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'dhcp6');
const seeds = readdirSync(DIR)
  .filter((f) => f.endsWith('.bin'))
  .map((f) => readFileSync(join(DIR, f)));

/** xorshift32: the same cases on every run, so a failure reproduces. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function mutate(next: () => number): Buffer {
  const base = Buffer.from(seeds[next() % seeds.length]!);
  const kind = next() % 5;
  if (kind === 0) {
    for (let i = 0, n = 1 + (next() % 8); i < n; i++) base[next() % base.length] = next() & 0xff;
    return base;
  }
  if (kind === 1) return base.subarray(0, next() % (base.length + 1));
  if (kind === 2) {
    // Rewrite a 16-bit field (an option code or length, most likely) with an extreme value.
    const at = 4 + (next() % Math.max(1, base.length - 5));
    base.writeUInt16BE([0, 1, 0xffff, base.length, next() & 0xffff][next() % 5]!, Math.min(at, base.length - 2));
    return base;
  }
  if (kind === 3) return Buffer.concat([base, Buffer.from(Array.from({ length: next() % 64 }, () => next() & 0xff))]);
  return Buffer.from(Array.from({ length: next() % 200 }, () => next() & 0xff));
}

test('20,000 mutated datagrams: decode, read and both decisions throw nothing but ERR_DHCP6_DECODE', (t) => {
  t.true(seeds.length > 0);
  const next = rng(0x16_0006);
  const config = { serverDuid: SERVER_DUID, address: 'fd00:126::1', httpPort: 8080, dns: ['fd00:126::53'], domains: ['lab'] };
  const pool = new Lease6Pool({ range: { start: 'fd00:126::100', end: 'fd00:126::1ff' }, leaseSeconds: 600 });
  let decoded = 0;
  let replies = 0;
  for (let i = 0; i < 20_000; i++) {
    const buf = mutate(next);
    try {
      const msg = decodeMessage(buf);
      t.deepEqual(encodeMessage(msg), buf.subarray(0, buf.length), 'decoded messages re-encode as received');
      const req = readClientMessage(msg);
      decoded += 1;
      for (const port of ['dhcp', 'proxy'] as const) {
        const source = next() % 2 ? 'fe80::5054:ff:fe12:6004' : 'fd00:126::9';
        const a = decideProxy6(req, source, port, config);
        const b = decideServer6(req, source, port, config, pool, 1_000_000 + i);
        for (const d of [a, b]) {
          if (d.kind !== 'reply') continue;
          encodeMessage(d.reply);
          replies += 1;
        }
      }
    } catch (err) {
      if (!hasCode(err, ERR_DHCP6_DECODE)) {
        t.fail(`case ${i} (${buf.toString('hex')}) threw ${(err as Error).stack}`);
        return;
      }
    }
  }
  t.log(`${decoded} decodable, ${replies} replies built`);
  t.true(decoded > 1000, 'the mutations still reach the decisions');
});
