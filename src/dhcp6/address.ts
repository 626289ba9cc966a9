/**
 * IPv6 address text <-> 16 octets, and the few address facts DHCPv6 decisions need (RFC 4291,
 * RFC 5952 canonical text). Pure: no sockets.
 */
import { isIPv6 } from 'node:net';

/** 16 octets of `text` (any RFC 4291 form, no zone), or undefined when it is not an IPv6 address. */
export function parseIpv6(text: string): Buffer | undefined {
  if (!isIPv6(text) || text.includes('%')) return undefined;
  let head = text;
  let tailV4: number[] = [];
  // An embedded IPv4 suffix (::ffff:10.0.0.1) becomes the last two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    tailV4 = v4.slice(1).map(Number);
    head = text.slice(0, v4.index) + '0:0';
  }
  const [left, right] = head.includes('::') ? (head.split('::') as [string, string]) : [head, undefined];
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const l = groups(left);
  const r = right === undefined ? [] : groups(right);
  const all = right === undefined ? l : [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
  if (all.length !== 8) return undefined;
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  if (tailV4.length === 4) Buffer.from(tailV4).copy(out, 12);
  return out;
}

/** RFC 5952 text of 16 octets: lowercase, no leading zeros, the longest run (>= 2) of zero groups as `::`. */
export function formatIpv6(bytes: Buffer): string {
  if (bytes.length !== 16) throw new RangeError('an ipv6 address is 16 octets');
  const g = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i += 1;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j += 1;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best.len < 2) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}

/** Canonical text of an address given as text, or undefined when it is not IPv6. */
export function normalizeIpv6(text: string): string | undefined {
  const b = parseIpv6(text);
  return b ? formatIpv6(b) : undefined;
}

/** An address as a URL host: `[fd00::1]`. */
export function ipv6UrlHost(address: string): string {
  return `[${address}]`;
}

/** True when both addresses share their first `prefix` bits. */
export function sameIpv6Prefix(a: Buffer, b: Buffer, prefix: number): boolean {
  for (let bit = 0; bit < prefix; bit += 8) {
    const i = bit / 8;
    const bits = Math.min(8, prefix - bit);
    const mask = (0xff << (8 - bits)) & 0xff;
    if (((a[i] ?? 0) & mask) !== ((b[i] ?? 0) & mask)) return false;
  }
  return true;
}

/** An address as a 128-bit number (for ranges). */
export function ipv6ToBigInt(bytes: Buffer): bigint {
  return BigInt(`0x${bytes.toString('hex')}`);
}

/** 16 octets of a 128-bit number. */
export function bigIntToIpv6(n: bigint): Buffer {
  return Buffer.from(n.toString(16).padStart(32, '0'), 'hex');
}

/**
 * The MAC inside a modified EUI-64 interface identifier (RFC 4291 appendix A: MAC with ff:fe in
 * the middle and the universal/local bit flipped), as link-local addresses of EDK2, iPXE and
 * Linux carry it; undefined for other identifiers (privacy addresses, DHCPv6-assigned).
 */
export function macFromEui64(address: Buffer): string | undefined {
  if (address.length !== 16 || address[11] !== 0xff || address[12] !== 0xfe) return undefined;
  const mac = [address[8]! ^ 0x02, address[9]!, address[10]!, address[13]!, address[14]!, address[15]!];
  return mac.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** True for fe80::/10. */
export function isLinkLocal(address: Buffer): boolean {
  return address[0] === 0xfe && ((address[1] ?? 0) & 0xc0) === 0x80;
}
