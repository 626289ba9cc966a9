/**
 * The lease file of the DHCP server mode: an append-only journal of JSON lines, one record per
 * binding change, as Kea's memfile appends a CSV line per lease change. This module is the
 * format (lines, the table they describe, reading a file); lease-journal.ts writes it.
 *
 *   {"version":2,"journal":"netboot-appliance leases"}
 *   {"op":"put","key":"mac:52:54:00:00:00:0a","mac":"52:54:00:00:00:0a","ip":"10.99.0.128","state":"bound","expires":"2026-12-01T13:00:00.000Z","bound":true}
 *   {"op":"drop","key":"mac:52:54:00:00:00:0b"}
 *   {"op":"decline","ip":"10.99.0.130","until":"2026-12-01T12:10:00.000Z","mac":"52:54:00:00:00:0c"}
 *
 * A torn last line (a crash during an append, never acknowledged) is ignored; version 1 files
 * (one JSON object, written by earlier releases) are read too.
 */
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { readFile } from 'node:fs/promises';
import { ApplianceError } from '../errors.js';
import { normalizeMac } from '../identity.js';
import type { DeclinedAddress, Lease, LeaseChange, LeaseSnapshot } from './leases.js';
import { ipToNumber } from './subnet.js';

/** Error code of an unreadable or invalid lease file. */
export const ERR_LEASE_FILE = 'ERR_LEASE_FILE';

/** The journal format version written by this code. */
export const LEASE_FILE_VERSION = 2;

/** The single-object format of earlier releases, still read (and rewritten as a journal). */
export const LEASE_FILE_VERSION_LEGACY = 1;

/** The first line of a journal. */
export const JOURNAL_HEADER = `${JSON.stringify({ version: LEASE_FILE_VERSION, journal: 'netboot-appliance leases' })}\n`;

function invalid(file: string, what: string): ApplianceError {
  return new ApplianceError(ERR_LEASE_FILE, `lease file ${file} is invalid: ${what}; fix it or move it away (all leases are then forgotten)`, { file });
}

function leaseFields(l: Lease): Record<string, unknown> {
  return { key: l.key, mac: l.mac, ip: l.ip, state: l.state, expires: new Date(l.expiresAt).toISOString(), bound: l.bound };
}

function declinedFields(d: DeclinedAddress): Record<string, unknown> {
  return { ip: d.ip, until: new Date(d.until).toISOString(), ...(d.mac !== undefined ? { mac: d.mac } : {}) };
}

/** One journal line (with its newline) for a change. */
export function encodeChange(change: LeaseChange): string {
  switch (change.op) {
    case 'put': {
      // Written out field by field (the bytes JSON.stringify({ op, ...leaseFields }) gives):
      // the spread object cost ~7 us a line, and a compaction encodes every lease at once.
      const l = change.lease;
      return `{"op":"put","key":${JSON.stringify(l.key)},"mac":${JSON.stringify(l.mac)},"ip":${JSON.stringify(l.ip)},"state":${JSON.stringify(l.state)},"expires":"${new Date(l.expiresAt).toISOString()}","bound":${l.bound ? 'true' : 'false'}}\n`;
    }
    case 'drop':
      return `${JSON.stringify({ op: 'drop', key: change.key })}\n`;
    case 'decline':
      return `${JSON.stringify({ op: 'decline', ...declinedFields(change.declined) })}\n`;
  }
}

/** Field checks shared by both formats; `where` names the entry in errors. */
function entryParsers(file: string) {
  const time = (v: unknown, where: string): number => {
    const t = typeof v === 'string' ? Date.parse(v) : Number.NaN;
    if (Number.isNaN(t)) throw invalid(file, `${where} is not an iso 8601 time`);
    return t;
  };
  const ip = (v: unknown, where: string): string => {
    // IPv6 addresses are the DHCPv6 server's journal (src/dhcp6/leases.ts), same format.
    if (typeof v !== 'string' || (ipToNumber(v) === undefined && !isIPv6(v))) throw invalid(file, `${where} is not an ip address`);
    return v;
  };
  const key = (v: unknown, where: string): string => {
    if (typeof v !== 'string' || !/^(mac|id):/.test(v)) throw invalid(file, `${where}.key is not mac:... or id:...`);
    return v;
  };
  const object = (entry: unknown, where: string): Record<string, unknown> => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw invalid(file, `${where} is not an object`);
    return entry as Record<string, unknown>;
  };
  return {
    object,
    key,
    lease(e: Record<string, unknown>, where: string): Lease {
      const k = key(e['key'], where);
      const mac = typeof e['mac'] === 'string' ? normalizeMac(e['mac']) : undefined;
      if (!mac) throw invalid(file, `${where}.mac is not a mac address`);
      const state = e['state'];
      if (state !== 'offered' && state !== 'bound' && state !== 'released') throw invalid(file, `${where}.state is not offered, bound or released`);
      return { key: k, mac, ip: ip(e['ip'], `${where}.ip`), state, expiresAt: time(e['expires'], `${where}.expires`), bound: e['bound'] === true };
    },
    declined(e: Record<string, unknown>, where: string): DeclinedAddress {
      const mac = typeof e['mac'] === 'string' ? normalizeMac(e['mac']) : undefined;
      return { ip: ip(e['ip'], `${where}.ip`), until: time(e['until'], `${where}.until`), ...(mac ? { mac } : {}) };
    },
  };
}

/** Render a snapshot in the version 1 format (one JSON object, 2-space indented). */
export function serializeLeases(snapshot: LeaseSnapshot): string {
  const body = { version: LEASE_FILE_VERSION_LEGACY, leases: snapshot.leases.map(leaseFields), declined: snapshot.declined.map(declinedFields) };
  return `${JSON.stringify(body, null, 2)}\n`;
}

/** Parse the version 1 format; throws `ERR_LEASE_FILE` naming the first bad field. */
export function parseLeases(text: string, file = 'leases'): LeaseSnapshot {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw invalid(file, `not json (${(err as Error).message})`);
  }
  const p = entryParsers(file);
  const obj = p.object(raw, 'the file');
  if (obj['version'] !== LEASE_FILE_VERSION_LEGACY) throw invalid(file, `version ${JSON.stringify(obj['version'])}, expected ${LEASE_FILE_VERSION_LEGACY}`);
  const list = (name: string): unknown[] => {
    const v = obj[name] ?? [];
    if (!Array.isArray(v)) throw invalid(file, `${name} is not a list`);
    return v;
  };
  return {
    leases: list('leases').map((entry, i) => p.lease(p.object(entry, `leases.${i}`), `leases.${i}`)),
    declined: list('declined').map((entry, i) => p.declined(p.object(entry, `declined.${i}`), `declined.${i}`)),
  };
}

/**
 * The lease table a journal describes, applying changes with LeasePool's rules (a put replaces
 * the client's previous record and any other record on the same address).
 */
export class LeaseTable {
  readonly byKey = new Map<string, Lease>();
  readonly byIp = new Map<string, Lease>();
  readonly declined = new Map<string, DeclinedAddress>();

  apply(change: LeaseChange): void {
    if (change.op === 'put') {
      const lease = change.lease;
      const previousOfKey = this.byKey.get(lease.key);
      if (previousOfKey && this.byIp.get(previousOfKey.ip) === previousOfKey) this.byIp.delete(previousOfKey.ip);
      const previousAtIp = this.byIp.get(lease.ip);
      if (previousAtIp) this.byKey.delete(previousAtIp.key);
      this.byKey.set(lease.key, lease);
      this.byIp.set(lease.ip, lease);
    } else if (change.op === 'drop') {
      const lease = this.byKey.get(change.key);
      if (!lease) return;
      this.byKey.delete(change.key);
      if (this.byIp.get(lease.ip) === lease) this.byIp.delete(lease.ip);
    } else {
      this.declined.set(change.declined.ip, change.declined);
    }
  }

  /** Records and live declines (declines that ran out before `now` are left out). */
  snapshot(now = Date.now()): LeaseSnapshot {
    return { leases: [...this.byKey.values()], declined: [...this.declined.values()].filter((d) => d.until > now) };
  }

  get size(): number {
    return this.byKey.size + this.declined.size;
  }
}

/** What a lease file holds. `torn` is true when the last line was cut short (a crash mid-append). */
export interface ParsedLeaseFile {
  table: LeaseTable;
  records: number;
  torn: boolean;
  legacy: boolean;
}

/** Parse a lease file of either format; throws `ERR_LEASE_FILE` for anything but a torn last line. */
export function parseLeaseFile(text: string, file = 'leases'): ParsedLeaseFile {
  const table = new LeaseTable();
  if (text.trim() === '') throw invalid(file, 'the file is empty');
  if (text.trimStart().startsWith('{\n') || /^\s*\{\s*"version"\s*:\s*1\b/.test(text)) {
    const snapshot = parseLeases(text, file);
    for (const lease of [...snapshot.leases].sort((a, b) => a.expiresAt - b.expiresAt)) table.apply({ op: 'put', lease });
    for (const declined of snapshot.declined) table.apply({ op: 'decline', declined });
    return { table, records: snapshot.leases.length + snapshot.declined.length, torn: false, legacy: true };
  }
  const lines = text.split('\n');
  // The text after the last newline is a line whose append never completed.
  const tail = lines.pop() ?? '';
  const torn = tail !== '';
  const p = entryParsers(file);
  let records = 0;
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1}`;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (err) {
      throw invalid(file, `${where} is not json (${(err as Error).message})`);
    }
    const e = p.object(raw, where);
    if (i === 0) {
      if (e['version'] !== LEASE_FILE_VERSION) throw invalid(file, `${where}: version ${JSON.stringify(e['version'])}, expected ${LEASE_FILE_VERSION}`);
      continue;
    }
    records += 1;
    if (e['op'] === 'put') table.apply({ op: 'put', lease: p.lease(e, where) });
    else if (e['op'] === 'drop') table.apply({ op: 'drop', key: p.key(e['key'], where) });
    else if (e['op'] === 'decline') table.apply({ op: 'decline', declined: p.declined(e, where) });
    else throw invalid(file, `${where}: op ${JSON.stringify(e['op'])} is not put, drop or decline`);
  }
  if (lines.length === 0) throw invalid(file, 'no header line');
  return { table, records, torn, legacy: false };
}

/** A lease file's text; undefined when it does not exist. Throws `ERR_LEASE_FILE`. */
export async function readLeaseText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ApplianceError(
      ERR_LEASE_FILE,
      `cannot read lease file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { file },
      { cause: err },
    );
  }
}

/** Read a lease file (either format) without changing it; a missing file is an empty table. Throws `ERR_LEASE_FILE`. */
export async function loadLeaseFile(file: string): Promise<LeaseSnapshot> {
  const text = await readLeaseText(file);
  if (text === undefined) return { leases: [], declined: [] };
  return parseLeaseFile(text, file).table.snapshot(0);
}

/** loadLeaseFile, synchronously (tools and tests reading the file of a running server). */
export function loadLeaseFileSync(file: string): LeaseSnapshot {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { leases: [], declined: [] };
    throw new ApplianceError(
      ERR_LEASE_FILE,
      `cannot read lease file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { file },
      { cause: err },
    );
  }
  return parseLeaseFile(text, file).table.snapshot(0);
}
