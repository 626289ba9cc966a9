/**
 * The lease file of the DHCP server mode: JSON, hand-readable, written atomically (temp file in
 * the same directory, fsync, rename, fsync of the directory) so a crash or power cut leaves
 * either the old or the new file, never a torn one. Leases therefore survive a restart, which
 * is what keeps two clients from being given the same address across restarts.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileDurable } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import { normalizeMac } from '../identity.js';
import type { DeclinedAddress, Lease, LeaseSnapshot } from './leases.js';
import { ipToNumber } from './subnet.js';

/** Error code of an unreadable or invalid lease file. */
export const ERR_LEASE_FILE = 'ERR_LEASE_FILE';

/** The file format version written by this code. */
export const LEASE_FILE_VERSION = 1;

interface LeaseFileLease {
  key: string;
  mac: string;
  ip: string;
  state: Lease['state'];
  expires: string;
  bound: boolean;
}

function invalid(file: string, what: string): ApplianceError {
  return new ApplianceError(ERR_LEASE_FILE, `lease file ${file} is invalid: ${what}; fix it or move it away (all leases are then forgotten)`, { file });
}

/** Render a snapshot as the file's text (2-space JSON, times as ISO 8601). */
export function serializeLeases(snapshot: LeaseSnapshot): string {
  const body = {
    version: LEASE_FILE_VERSION,
    leases: snapshot.leases.map<LeaseFileLease>((l) => ({ key: l.key, mac: l.mac, ip: l.ip, state: l.state, expires: new Date(l.expiresAt).toISOString(), bound: l.bound })),
    declined: snapshot.declined.map((d) => ({ ip: d.ip, until: new Date(d.until).toISOString(), ...(d.mac !== undefined ? { mac: d.mac } : {}) })),
  };
  return `${JSON.stringify(body, null, 2)}\n`;
}

/** Parse the file's text; throws `ERR_LEASE_FILE` naming the first bad field. */
export function parseLeases(text: string, file = 'leases'): LeaseSnapshot {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw invalid(file, `not json (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null) throw invalid(file, 'not an object');
  const obj = raw as Record<string, unknown>;
  if (obj['version'] !== LEASE_FILE_VERSION) throw invalid(file, `version ${JSON.stringify(obj['version'])}, expected ${LEASE_FILE_VERSION}`);
  const list = (name: string): unknown[] => {
    const v = obj[name] ?? [];
    if (!Array.isArray(v)) throw invalid(file, `${name} is not a list`);
    return v;
  };
  const time = (v: unknown, where: string): number => {
    const t = typeof v === 'string' ? Date.parse(v) : Number.NaN;
    if (Number.isNaN(t)) throw invalid(file, `${where} is not an iso 8601 time`);
    return t;
  };
  const ip = (v: unknown, where: string): string => {
    if (typeof v !== 'string' || ipToNumber(v) === undefined) throw invalid(file, `${where} is not an ipv4 address`);
    return v;
  };
  const leases = list('leases').map((entry, i): Lease => {
    const where = `leases.${i}`;
    if (typeof entry !== 'object' || entry === null) throw invalid(file, `${where} is not an object`);
    const e = entry as Record<string, unknown>;
    if (typeof e['key'] !== 'string' || !/^(mac|id):/.test(e['key'])) throw invalid(file, `${where}.key is not mac:... or id:...`);
    const mac = typeof e['mac'] === 'string' ? normalizeMac(e['mac']) : undefined;
    if (!mac) throw invalid(file, `${where}.mac is not a mac address`);
    const state = e['state'];
    if (state !== 'offered' && state !== 'bound' && state !== 'released') throw invalid(file, `${where}.state is not offered, bound or released`);
    return { key: e['key'], mac, ip: ip(e['ip'], `${where}.ip`), state, expiresAt: time(e['expires'], `${where}.expires`), bound: e['bound'] === true };
  });
  const declined = list('declined').map((entry, i): DeclinedAddress => {
    const where = `declined.${i}`;
    if (typeof entry !== 'object' || entry === null) throw invalid(file, `${where} is not an object`);
    const e = entry as Record<string, unknown>;
    const mac = typeof e['mac'] === 'string' ? normalizeMac(e['mac']) : undefined;
    return { ip: ip(e['ip'], `${where}.ip`), until: time(e['until'], `${where}.until`), ...(mac ? { mac } : {}) };
  });
  return { leases, declined };
}

/** Read the lease file; a missing file is an empty table. Throws `ERR_LEASE_FILE` when unreadable or invalid. */
export async function loadLeaseFile(file: string): Promise<LeaseSnapshot> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { leases: [], declined: [] };
    throw new ApplianceError(ERR_LEASE_FILE, `cannot read lease file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file }, { cause: err });
  }
  return parseLeases(text, file);
}

/**
 * Write the lease file atomically: temp file beside it, fsync, rename over it, fsync the
 * directory. Creates the directory if needed. Throws `ERR_LEASE_FILE`; the old file is intact then.
 */
export async function saveLeaseFile(file: string, snapshot: LeaseSnapshot): Promise<void> {
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFileDurable(file, serializeLeases(snapshot));
  } catch (err) {
    throw new ApplianceError(ERR_LEASE_FILE, `cannot write lease file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; the previous file is unchanged`, { file }, { cause: err });
  }
}

/**
 * Serialises writes of one lease file and coalesces bursts: `save()` resolves once a write that
 * started after the call has finished (so an ACK sent after `await save()` is on disk), and many
 * calls during one write share the next write.
 */
export interface LeaseFileWriter {
  save(): Promise<void>;
  /** Resolves when no write is pending. */
  idle(): Promise<void>;
}

/** Create a writer for `file` that writes `snapshot()` each time. */
export function createLeaseFileWriter(file: string, snapshot: () => LeaseSnapshot, write: typeof saveLeaseFile = saveLeaseFile): LeaseFileWriter {
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  const run = (): Promise<void> => {
    const p = write(file, snapshot());
    running = p.then(
      () => undefined,
      () => undefined,
    ).finally(() => {
      running = undefined;
    });
    return p;
  };
  return {
    save() {
      if (!running) return run();
      // A write is in flight with an older snapshot: chain one more write after it.
      next ??= running.then(() => {
        next = undefined;
        return run();
      });
      return next;
    },
    async idle() {
      while (running || next) await (next ?? running)?.catch(() => undefined);
    },
  };
}
