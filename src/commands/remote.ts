/** `status`, `machines` and `events`: ask a running appliance through its API. */
import { loadConfig } from '../config.js';
import { ApplianceError } from '../errors.js';
import type { BootEvent } from '../events.js';
import type { VersionInfo } from '../version.js';
import { CLIENT_SETTINGS, URL_FLAG, clientToken, createApiClient, type ApiClient } from './client.js';
import { EXIT, UsageError, type CommandArgs, type CommandSpec } from './command.js';
import { stringFlag } from './fetch.js';

const JSON_FLAG = { name: 'json', type: 'boolean', help: 'print the API answer as JSON' } as const;

function connect(args: CommandArgs): ApiClient {
  const config = loadConfig({
    keys: CLIENT_SETTINGS,
    requireDbDir: false,
    flags: args.settingFlags,
    env: args.io.env,
    cwd: args.io.cwd,
    configFile: args.configFile,
  });
  const base = stringFlag(args, 'url') ?? `http://127.0.0.1:${config.httpPort}`;
  try {
    return createApiClient({ base, token: clientToken(config) });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function print(args: CommandArgs, text: string): void {
  args.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** What `status` reads of GET /healthz (src/http/routes/health.ts). */
export interface Health {
  status: string;
  /** Why the status is `degraded` (a refused hand edit, a failing database, state or timeline write). */
  problems?: string[];
  /** What works less well than configured; the status stays `ok`. */
  warnings?: string[];
  store: { ok: boolean; error?: string; loadedAt: string };
}

/** The lines `status` prints for the health: the status, then each problem and warning. */
export function healthLines(health: Health): string[] {
  return [
    `health: ${health.status}`,
    ...(health.problems ?? []).map((p) => `  problem: ${p}`),
    ...(health.warnings ?? []).map((w) => `  warning: ${w}`),
    `database: ${health.store.ok ? 'ok' : `refused: ${health.store.error ?? 'unknown error'}`}, loaded ${health.store.loadedAt}`,
  ];
}

/** One entry of GET /api/machines: the operator's record and the runtime state. */
interface MachineRow {
  mac: string;
  declared: { hostname?: string; profile?: string; ip?: string; state?: string } | null;
  runtime: { lastIp?: string; discovered?: boolean } | null;
}

/** `status`. */
export const STATUS_COMMAND: CommandSpec = {
  name: 'status',
  summary: 'show whether an appliance is running, its version, health (problems, warnings), store and machine count',
  description:
    'Ask the running appliance (through its HTTP API) for its version, its health (ok or degraded,\nwith each problem and warning), the state of its database file and how many machines it knows.',
  settings: CLIENT_SETTINGS,
  flags: [URL_FLAG, JSON_FLAG],
  epilog: 'exit codes: 0 running and the database is served, 1 not reachable or the database file is refused',
  async run(args) {
    const api = connect(args);
    const [version, health, machines] = await Promise.all([
      api.get<VersionInfo>('/api/version'),
      api.get<Health>('/healthz'),
      api.get<MachineRow[]>('/api/machines'),
    ]);
    if (args.flags.json === true) {
      print(args, JSON.stringify({ url: api.base, version, health, machines: machines.length }, null, 2));
    } else {
      print(args, `${version.name} ${version.version} (node ${version.node}) at ${api.base}`);
      for (const line of healthLines(health)) print(args, line);
      print(args, `machines: ${machines.length}`);
    }
    return health.store.ok ? EXIT.ok : EXIT.failure;
  },
};

/** `machines`. */
export const MACHINES_COMMAND: CommandSpec = {
  name: 'machines',
  summary: 'list the machines a running appliance knows (MAC, hostname, profile, address)',
  settings: CLIENT_SETTINGS,
  flags: [URL_FLAG, JSON_FLAG],
  async run(args) {
    const api = connect(args);
    const machines = await api.get<MachineRow[]>('/api/machines');
    if (args.flags.json === true) {
      print(args, JSON.stringify(machines, null, 2));
      return EXIT.ok;
    }
    const rows = [['MAC', 'HOSTNAME', 'PROFILE', 'IP', 'STATE']];
    for (const m of machines) {
      const d = m.declared;
      rows.push([
        m.mac,
        d?.hostname ?? '-',
        d?.profile ?? '(default)',
        d?.ip ?? m.runtime?.lastIp ?? '-',
        d?.state ?? (m.runtime?.discovered ? 'discovered' : '-'),
      ]);
    }
    print(args, formatTable(rows));
    return EXIT.ok;
  },
};

/** `events`. */
export const EVENTS_COMMAND: CommandSpec = {
  name: 'events',
  summary: 'show boot events (DHCP, TFTP, HTTP, facts) of a running appliance; --follow keeps watching',
  settings: CLIENT_SETTINGS,
  flags: [
    URL_FLAG,
    { name: 'mac', type: 'string', arg: 'MAC', help: "only this machine's events" },
    { name: 'limit', type: 'string', arg: 'N', help: 'how many recent events first, 1-10000 [default: 50]' },
    { name: 'follow', type: 'boolean', short: 'f', help: 'keep printing new events as they happen (the live stream) until Ctrl-C' },
    { name: 'json', type: 'boolean', help: 'one JSON object per line' },
  ],
  async run(args) {
    const limitText = stringFlag(args, 'limit') ?? '50';
    if (!/^\d+$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 10_000)
      throw new UsageError(`events: --limit must be a whole number from 1 to 10000, not ${JSON.stringify(limitText)}`);
    const mac = stringFlag(args, 'mac');
    const api = connect(args);
    const query = (limit: number) => `/api/events?limit=${limit}${mac !== undefined ? `&mac=${encodeURIComponent(mac)}` : ''}`;
    const show = (e: BootEvent) => print(args, args.flags.json === true ? JSON.stringify(e) : formatEvent(e));
    const seen = new EventCursor();
    const limit = Number(limitText);
    if (args.flags.follow !== true) {
      for (const e of seen.fresh(await api.get<BootEvent[]>(query(limit)))) show(e);
      return EXIT.ok;
    }
    // Follow the live stream (GET /api/events/stream, token-authenticated); reconnect when it
    // breaks; poll /api/events when the appliance has no stream. Ctrl-C ends it with exit 0.
    let stopped = false;
    let wake: () => void = () => undefined;
    const controller = new AbortController();
    const onSignal = () => {
      stopped = true;
      controller.abort();
      wake();
    };
    const pause = (ms: number) =>
      new Promise<void>((r) => {
        // A referenced timer: it is what keeps the process alive between attempts.
        const timer = setTimeout(r, ms);
        wake = () => {
          clearTimeout(timer);
          r();
        };
      });
    args.signals.on('SIGINT', onSignal);
    args.signals.on('SIGTERM', onSignal);
    let first = true;
    let polling = false;
    try {
      while (!stopped) {
        try {
          if (polling) {
            for (const e of seen.fresh(await api.get<BootEvent[]>(query(first ? limit : 1000)))) show(e);
            first = false;
            await pause(1000);
            continue;
          }
          const backlog: BootEvent[] = [];
          let live = false;
          for await (const ev of api.stream(`/api/events/stream${mac !== undefined ? `?mac=${encodeURIComponent(mac)}` : ''}`, controller.signal)) {
            if (ev.event === 'ready') {
              // The stream sends what it has, then `ready`, then live events.
              for (const e of seen.fresh(first ? backlog.slice(-limit) : backlog)) show(e);
              backlog.length = 0;
              live = true;
              first = false;
            } else if (ev.event === 'boot') {
              const e = JSON.parse(ev.data) as BootEvent;
              if (live) for (const x of seen.fresh([e])) show(x);
              else backlog.push(e);
            }
          }
        } catch (err) {
          if (stopped) break;
          if (err instanceof ApplianceError && err.code === 'ERR_API_STATUS' && err.detail?.status === 404) {
            polling = true;
            continue;
          }
          if (!(err instanceof ApplianceError && err.code === 'ERR_API_UNREACHABLE')) throw err;
          args.io.stderr.write(`appliance events: ${err.message}; retrying\n`);
        }
        if (!stopped) await pause(3000);
      }
      return EXIT.ok;
    } finally {
      args.signals.off('SIGINT', onSignal);
      args.signals.off('SIGTERM', onSignal);
    }
  },
};

/** Remembers what was printed, so repeated polls print each event once, oldest first. */
export class EventCursor {
  private last = '';
  private atLast = new Set<string>();

  /** The events of `batch` not returned before, sorted by time. */
  fresh(batch: readonly BootEvent[]): BootEvent[] {
    const out: BootEvent[] = [];
    for (const e of [...batch].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0))) {
      const key = JSON.stringify(e);
      if (e.at < this.last || (e.at === this.last && this.atLast.has(key))) continue;
      if (e.at > this.last) {
        this.last = e.at;
        this.atLast = new Set();
      }
      this.atLast.add(key);
      out.push(e);
    }
    return out;
  }
}

/** `2026-12-01T12:00:00.000Z  dhcp-offer  52:54:00:12:34:56  10.99.0.50  arch=7 file=snponly.efi` */
export function formatEvent(e: BootEvent): string {
  const detail = Object.entries(e.detail ?? {}).map(([k, v]) => `${k}=${typeof v === 'string' && /^\S+$/.test(v) ? v : JSON.stringify(v)}`);
  return [e.at, e.type.padEnd(17), (e.mac || '-').padEnd(17), (e.ip ?? '-').padEnd(15), ...detail].join(' ').trimEnd();
}

/** Left-aligned columns separated by two spaces. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
