/**
 * What the web console shows about machines, as pure functions of the database, the selection
 * and the event log: one row per machine (declared, discovered, or only seen on the wire), a
 * short facts summary, and a plain-words explanation of why a machine is stuck. No I/O here,
 * so every rule is table-tested.
 */
import type { BootEvent } from '../events.js';
import type { Facts, Machine } from '../store/schema.js';
import type { Selection } from '../store/select.js';

/** A handful of facts for the table: vendor, CPUs, memory, disks, NICs. */
export interface FactsSummary {
  vendor?: string;
  product?: string;
  cpus?: number;
  memoryMiB?: number;
  disks?: number;
  diskBytes?: number;
  nics?: number;
}

/** The last thing that went wrong for a machine, in plain words. */
export interface Failure {
  at: string;
  /** Event type that showed it (`http-script`, `tftp-error`, ...) or `selection`. */
  source: string;
  message: string;
}

/** One row of the machines table. */
export interface MachineRow {
  mac: string;
  /** `declared` (written by the operator), `discovered` (registered on first boot), `seen` (only in the event log). */
  kind: 'declared' | 'discovered' | 'seen';
  hostname: string | null;
  uuid: string | null;
  state: string | null;
  profile: string | null;
  /** How the profile was chosen: machine-uuid, machine-mac, group, default; null when none. */
  via: string | null;
  group: string | null;
  /** Why the group matched: one line per selector key (`facts: cpu.count >= 4 (got 8)`); [] otherwise. */
  reasons: string[];
  /** Whether the facts shown may drive selection (null: no facts); see routes/facts.ts. */
  factsVerified: boolean | null;
  /** Last event time and the address it came from. */
  lastSeen: string | null;
  lastIp: string | null;
  lastEvent: string | null;
  /** Firmware/arch from DHCP (`bios`, `efi-x64` ...) or the iPXE platform. */
  arch: string | null;
  facts: FactsSummary | null;
  failure: Failure | null;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const obj = (v: unknown): Record<string, unknown> | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/** Summarize facts in the reference agent's shape (agent/README.md); unknown shapes give {}. */
export function summarizeFacts(facts: Facts | undefined): FactsSummary | null {
  if (!facts) return null;
  const out: FactsSummary = {};
  const dmi = obj(facts['dmi']);
  const vendor = str(dmi?.['vendor']) ?? str(facts['vendor']);
  if (vendor) out.vendor = vendor;
  const product = str(dmi?.['product']);
  if (product) out.product = product;
  const cpus = num(obj(facts['cpu'])?.['count']) ?? num(facts['cpus']);
  if (cpus !== undefined) out.cpus = cpus;
  const kib = num(obj(facts['memory'])?.['totalKiB']) ?? num(facts['memoryKiB']);
  if (kib !== undefined) out.memoryMiB = Math.round(kib / 1024);
  const disks = facts['disks'];
  if (Array.isArray(disks)) {
    out.disks = disks.length;
    out.diskBytes = disks.reduce<number>((sum, d) => sum + (num(obj(d)?.['sizeBytes']) ?? 0), 0);
  }
  const nics = facts['nics'];
  if (Array.isArray(nics)) out.nics = nics.length;
  return out;
}

/**
 * Why a machine is stuck, from its newest events: a retry script names its reason (missing
 * assets with the fetch command, an unknown profile, a broken template), a TFTP error names the
 * file. A later successful step (a booted script after a retry, a finished transfer after an
 * error) clears it: the failure shown is the one still standing.
 */
export function explainFailure(events: readonly BootEvent[], selection?: Selection): Failure | null {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!;
    const d = e.detail ?? {};
    if ((e.type === 'http-script' || e.type === 'grub-script') && d['outcome'] === 'retry') {
      return { at: e.at, source: e.type, message: str(d['reason']) ?? 'the boot script could not be built' };
    }
    if (e.type === 'boot-diagnosis') {
      const fix = str(d['fix']);
      return { at: e.at, source: e.type, message: `${str(d['explanation']) ?? str(d['reason']) ?? 'boot problem'}${fix ? `; fix: ${fix}` : ''}` };
    }
    if (e.type === 'tftp-error' && d['reason'] !== 'client-error') {
      const file = str(d['file']) ?? 'a file';
      const why = str(d['reason']) ?? str(d['message']) ?? 'transfer failed';
      return {
        at: e.at,
        source: e.type,
        message: `tftp transfer of ${file} failed: ${why}${why === 'not-found' ? ' (is iPXE installed? run: node bin/appliance fetch ipxe)' : ''}`,
      };
    }
    // claimedBy: this machine's reserved address was asked for by another MAC; it did not fail.
    if (e.type === 'dhcp-refused' && d['claimedBy'] === undefined) {
      const reason = str(d['reason']) ?? 'refused';
      const hint =
        reason === 'pool exhausted'
          ? ' (widen --dhcp-range or shorten --lease-time)'
          : reason === 'new-lease rate'
            ? ' (too many new machines at once; it is answered again shortly)'
            : '';
      return { at: e.at, source: e.type, message: `the dhcp server refused it: ${reason}${hint}` };
    }
    if (e.type === 'dhcp-nak' || e.type === 'dhcp-decline') {
      return {
        at: e.at,
        source: e.type,
        message:
          e.type === 'dhcp-nak'
            ? 'the dhcp server refused the address the machine asked for'
            : 'the machine declined its address (address conflict on the network)',
      };
    }
    // Progress after the failure: the machine got past it.
    if (
      ((e.type === 'http-script' || e.type === 'grub-script') && d['outcome'] === 'boot') ||
      e.type === 'http-asset' ||
      e.type === 'http-cloud-config' ||
      e.type === 'facts' ||
      e.type === 'tftp-file' ||
      e.type === 'dhcp-ack'
    )
      break;
  }
  if (selection?.kind === 'none') return { at: events.at(-1)?.at ?? '', source: 'selection', message: selection.reason };
  return null;
}

/** Firmware of the machine's newest DHCP event, else the iPXE platform of its newest script. */
function archOf(events: readonly BootEvent[]): string | null {
  for (let i = events.length - 1; i >= 0; i--) {
    const d = events[i]!.detail;
    const arch = str(d?.['arch']) ?? str(d?.['platform']);
    if (arch) return arch;
  }
  return null;
}

/**
 * What the appliance knows about one machine, whichever store holds it: the operator's record
 * (declared), what the appliance saw (runtime: discovered on first boot, last seen) and the
 * facts it reported. Built by console-machines.ts.
 */
export interface MachineSource {
  mac: string;
  declared?: Machine | undefined;
  runtime?:
    | {
        discovered: boolean;
        firstSeen?: string | undefined;
        lastSeen?: string | undefined;
        lastIp?: string | undefined;
        uuid?: string | undefined;
        factsAt?: string | undefined;
        factsVerified?: boolean | undefined;
      }
    | undefined;
  facts?: Facts | undefined;
  /**
   * What the row shows of the facts, when the caller already has it (console-machines.ts keeps
   * it per machine, so a listing reads no facts from disk); otherwise taken from `facts`.
   */
  factsSummary?: FactsSummary | null | undefined;
  factsHostname?: string | undefined;
}

/**
 * The table row of one machine: what is known about it, the selection for it and its events
 * (oldest first); `lastIp` is the event log's freshest address.
 */
export function machineRow(source: MachineSource, selection: Selection, events: readonly BootEvent[], lastIp: string | undefined): MachineRow {
  const { declared, runtime } = source;
  const last = events.at(-1);
  const kind: MachineRow['kind'] = declared ? 'declared' : runtime?.discovered ? 'discovered' : 'seen';
  const lastSeen =
    [last?.at, runtime?.lastSeen, runtime?.firstSeen]
      .filter((x): x is string => x !== undefined)
      .sort()
      .at(-1) ?? null;
  return {
    mac: source.mac,
    kind,
    hostname: declared?.hostname ?? source.factsHostname ?? str(source.facts?.['hostname']) ?? null,
    uuid: declared?.uuid ?? runtime?.uuid ?? null,
    state: declared?.state ?? (kind === 'declared' ? null : kind),
    profile: selection.kind === 'profile' ? selection.profile.id : null,
    via: selection.kind === 'profile' ? selection.via : null,
    group: selection.group?.id ?? null,
    reasons: selection.kind === 'profile' && selection.via === 'group' ? (selection.reasons ?? []) : [],
    factsVerified: runtime?.factsAt !== undefined || source.facts ? runtime?.factsVerified === true : null,
    lastSeen,
    lastIp: lastIp ?? runtime?.lastIp ?? null,
    lastEvent: last?.type ?? null,
    arch: archOf(events),
    facts: source.factsSummary !== undefined ? source.factsSummary : summarizeFacts(source.facts),
    failure: explainFailure(events, selection),
  };
}
