/**
 * TFTP option negotiation for one read request (RFC 2347 option extension, RFC 2348 blksize,
 * RFC 2349 timeout and tsize, RFC 7440 windowsize): a pure decision from the client's options,
 * the server's limits and the file size to the agreed parameters and the OACK. transfer.ts runs
 * what it decides.
 */
import type { TftpOptions } from './packet.js';

/** Limits the negotiation works within. */
export interface NegotiationLimits {
  blksizeMax: number;
  windowsizeMax: number;
  /** The server's retransmission interval when the client sends no (acceptable) `timeout`. */
  timeoutMs: number;
  /** Largest client `timeout` option honoured; larger ones are ignored. Default 255 s (RFC 2349). */
  timeoutMaxMs?: number;
}

/** Transfer parameters agreed for one request, and the OACK to send (undefined: no OACK). */
export interface Negotiated {
  blksize: number;
  windowsize: number;
  timeoutMs: number;
  tsize: number | undefined;
  oack: TftpOptions | undefined;
}

/** RFC 2348: "Valid values range between 8 and 65464 octets, inclusive." */
export const BLKSIZE_MIN = 8;
/** RFC 2348 upper bound for blksize. */
export const BLKSIZE_MAX = 65464;

function parseUint(value: string): number | undefined {
  // Digits only (no sign, no exponent, no whitespace) and a sane length.
  if (!/^\d{1,10}$/.test(value)) return undefined;
  return Number(value);
}

/**
 * Decide the options of one read request (pure). Options the server does not know or whose
 * values are invalid are left out of the OACK, which RFC 2347 allows ("the server ... ignores
 * options it does not support"): blksize below 8 is ignored (512 is used), above the cap it is
 * lowered to the cap (RFC 2348 lets the server answer a smaller value); timeout must be 1..255
 * seconds (RFC 2349) and at most the server's cap, else it is ignored; windowsize 1..65535 is
 * lowered to the cap (RFC 7440); tsize is answered only when the size is known (not for
 * netascii, whose converted size is not known up front).
 */
export function negotiateOptions(options: TftpOptions, limits: NegotiationLimits, size: number | undefined): Negotiated {
  const result: Negotiated = { blksize: 512, windowsize: 1, timeoutMs: limits.timeoutMs, tsize: undefined, oack: undefined };
  const timeoutMaxMs = Math.min(limits.timeoutMaxMs ?? 255_000, 255_000);
  const oack: TftpOptions = [];
  const seen = new Set<string>();
  for (const [rawName, rawValue] of options) {
    const name = rawName.toLowerCase();
    if (seen.has(name)) continue; // first occurrence wins
    seen.add(name);
    const value = parseUint(rawValue);
    switch (name) {
      case 'blksize':
        if (value === undefined || value < BLKSIZE_MIN) break;
        result.blksize = Math.min(value, limits.blksizeMax, BLKSIZE_MAX);
        oack.push(['blksize', String(result.blksize)]);
        break;
      case 'tsize':
        if (value === undefined || size === undefined) break;
        result.tsize = size;
        oack.push(['tsize', String(size)]);
        break;
      case 'timeout':
        if (value === undefined || value < 1 || value * 1000 > timeoutMaxMs) break;
        result.timeoutMs = value * 1000;
        oack.push(['timeout', String(value)]);
        break;
      case 'windowsize':
        if (value === undefined || value < 1 || value > 65535) break;
        result.windowsize = Math.min(value, limits.windowsizeMax);
        oack.push(['windowsize', String(result.windowsize)]);
        break;
      default:
        break;
    }
  }
  if (oack.length > 0) result.oack = oack;
  return result;
}
