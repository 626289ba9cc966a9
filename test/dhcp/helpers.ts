/** Shared helpers for the dhcp tests: fixtures and raw packet construction. */
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'dhcp');

/** Bytes of test/fixtures/dhcp/NAME.bin. */
export function fixture(name: string): Buffer {
  return readFileSync(path.join(FIXTURES, `${name}.bin`));
}

/** Names (without .bin) of every captured fixture. */
export function fixtureNames(): string[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.bin'))
    .map((f) => f.slice(0, -4))
    .sort();
}

/**
 * A raw BOOTREQUEST: 240-byte header with cookie, then `options` verbatim (caller adds END).
 * `edit` may change header bytes.
 */
export function rawPacket(options: number[], edit?: (header: Buffer) => void): Buffer {
  const header = Buffer.alloc(240);
  header[0] = 1;
  header[1] = 1;
  header[2] = 6;
  header.writeUInt32BE(0x01020304, 4);
  Buffer.from([0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc]).copy(header, 28);
  header.writeUInt32BE(0x63825363, 236);
  edit?.(header);
  return Buffer.concat([header, Buffer.from(options)]);
}

/** Option bytes `code len data...` for text. */
export function textOpt(code: number, text: string): number[] {
  const b = Buffer.from(text, 'latin1');
  return [code, b.length, ...b];
}

/**
 * The `dhcp` npm package's codec (an independent reader written by someone else), taught the
 * options it does not know (77, 93, 94, 97, 175) through its `addOption` API.
 */
export function independentDhcpCodec(): { parse(buf: Buffer): Record<string, unknown> & { options: Record<number, unknown> } } {
  const require = createRequire(import.meta.url);
  const lib = require('dhcp') as { addOption(code: number, opt: { name: string; type: string; attr?: string }): void };
  lib.addOption(77, { name: 'User Class', type: 'ASCII', attr: 'userClass' });
  lib.addOption(93, { name: 'Client System Architecture', type: 'UInt16s', attr: 'clientArch' });
  lib.addOption(94, { name: 'Client Network Device Interface', type: 'UInt8s', attr: 'clientNdi' });
  lib.addOption(97, { name: 'UUID/GUID-based Client Identifier', type: 'UInt8s', attr: 'clientUuid' });
  lib.addOption(175, { name: 'iPXE encapsulated options', type: 'UInt8s', attr: 'ipxeEncap' });
  return require('dhcp/lib/protocol.js') as { parse(buf: Buffer): Record<string, unknown> & { options: Record<number, unknown> } };
}

/** One UDP datagram from a capture. */
export interface CapturedDatagram {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

/**
 * UDP datagrams of a little-endian classic pcap with Ethernet link type (what tcpdump wrote in
 * the lab). Only IPv4/UDP without fragmentation is returned; anything else is skipped.
 */
export function pcapUdpDatagrams(file: string): CapturedDatagram[] {
  const buf = readFileSync(path.join(FIXTURES, file));
  if (buf.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error(`${file}: not a little-endian pcap`);
  if (buf.readUInt32LE(20) !== 1) throw new Error(`${file}: link type is not ethernet`);
  const out: CapturedDatagram[] = [];
  let off = 24;
  while (off + 16 <= buf.length) {
    const caplen = buf.readUInt32LE(off + 8);
    const frame = buf.subarray(off + 16, off + 16 + caplen);
    off += 16 + caplen;
    if (frame.length < 14 || frame.readUInt16BE(12) !== 0x0800) continue;
    const ipStart = 14;
    const ihl = (frame[ipStart]! & 0x0f) * 4;
    if (frame[ipStart + 9] !== 17) continue;
    const ipv4 = (o: number): string => [...frame.subarray(o, o + 4)].join('.');
    const udp = ipStart + ihl;
    const udpLen = frame.readUInt16BE(udp + 4);
    out.push({
      src: ipv4(ipStart + 12),
      dst: ipv4(ipStart + 16),
      srcPort: frame.readUInt16BE(udp),
      dstPort: frame.readUInt16BE(udp + 2),
      payload: Buffer.from(frame.subarray(udp + 8, udp + udpLen)),
    });
  }
  return out;
}

/** xorshift32: deterministic, so a failing fuzz case reproduces. Returns `rand(n)` in 0..n-1. */
export function seededRandom(seed: number): (n: number) => number {
  let state = seed >>> 0 || 1;
  return (n) => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % n;
  };
}

/** How `fuzzDatagrams` mixes random bytes, mutated fixtures and truncations. */
export interface FuzzOptions {
  seed: number;
  count: number;
  /** Real datagrams to mutate (captured fixtures). */
  seeds: readonly Buffer[];
  /** Every `randomEvery`-th datagram is pure noise of up to `maxRandomBytes`. */
  randomEvery: number;
  maxRandomBytes: number;
  /** Mutations flip bytes after this offset (236: the options; 240: after the cookie). */
  flipFrom: number;
  maxFlips: number;
  /** Every `truncateEvery`-th mutated datagram is also cut short. */
  truncateEvery: number;
}

/** Deterministic random and mutated DHCP datagrams for codec and server fuzzing. */
export function* fuzzDatagrams(o: FuzzOptions): Generator<Buffer> {
  const rand = seededRandom(o.seed);
  for (let i = 0; i < o.count; i++) {
    if (i % o.randomEvery === 0) {
      const buf = Buffer.alloc(rand(o.maxRandomBytes));
      for (let k = 0; k < buf.length; k++) buf[k] = rand(256);
      yield buf;
      continue;
    }
    let buf = Buffer.from(o.seeds[rand(o.seeds.length)]!);
    const flips = 1 + rand(o.maxFlips);
    for (let k = 0; k < flips; k++) buf[o.flipFrom + rand(buf.length - o.flipFrom)] = rand(256);
    if (i % o.truncateEvery === 0) buf = buf.subarray(0, rand(buf.length));
    yield buf;
  }
}
