/**
 * Connection limits of the HTTP server: a cap on open connections in total and per client
 * address, so idle or slow sockets from the lab segment cannot exhaust the process's file
 * descriptors (Node's default limit here is 20,000; TFTP transfers and the store's temp files
 * share it).
 *
 * When a cap is reached, the oldest connection that has no request in flight (idle keep-alive,
 * or connected and silent) is closed to make room, as nginx drains reusable connections when it
 * runs out; downloads in progress are never cut. Only when every connection in scope is busy is
 * the new one refused (closed at once). Either way a warning is logged, at most every 10 s, with
 * the counts since the last one.
 */
import type http from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { createLogBudget } from '../log-budget.js';

/** Caps; both default to values a lab of a few hundred machines never reaches. */
export interface ConnectionLimits {
  /** Open connections in total. Default 1024. */
  maxConnections?: number;
  /** Open connections per client address. Default 64. */
  maxPerClient?: number;
  /** Least time between two warnings; default 10 s. */
  warnIntervalMs?: number;
}

/** Counters since start. */
export interface ConnectionStats {
  open: number;
  /** Idle connections closed to make room. */
  shed: number;
  /** New connections refused because every connection in scope was busy. */
  refused: number;
}

interface Entry {
  address: string;
  /** Requests in flight on this connection. */
  active: number;
}

/** Apply the caps to `server` (call before listen). Returns live counters. */
export function limitConnections(server: http.Server, log: Logger, limits: ConnectionLimits = {}): () => ConnectionStats {
  const maxConnections = limits.maxConnections ?? 1024;
  const maxPerClient = limits.maxPerClient ?? 64;
  const warnIntervalMs = limits.warnIntervalMs ?? 10_000;
  // Map order is insertion order: the first idle entry is the oldest idle connection.
  const all = new Map<Socket, Entry>();
  const byAddress = new Map<string, Set<Socket>>();
  const counters = { shed: 0, refused: 0 };
  const warnBudget = createLogBudget(1, warnIntervalMs);
  // What happened since the last warning, the one being warned about included (the budget's own
  // `suppressed` does not tell shed from refused).
  let sinceWarn = { shed: 0, refused: 0 };

  function warn(scope: 'total' | 'client', address: string, action: 'shed' | 'refused'): void {
    sinceWarn[action] += 1;
    if (!warnBudget.take().log) return;
    log.warn(
      { scope, ip: address, limit: scope === 'total' ? maxConnections : maxPerClient, open: all.size, shed: sinceWarn.shed, refused: sinceWarn.refused },
      scope === 'total' ? 'http connection limit reached' : 'http connection limit per client reached',
    );
    sinceWarn = { shed: 0, refused: 0 };
  }

  function oldestIdle(sockets: Iterable<Socket>): Socket | undefined {
    for (const s of sockets) if (all.get(s)?.active === 0) return s;
    return undefined;
  }

  /** Make room in one scope; false when the new connection must be refused. */
  function makeRoom(scope: 'total' | 'client', sockets: Iterable<Socket>, address: string): boolean {
    const victim = oldestIdle(sockets);
    if (!victim) {
      counters.refused += 1;
      warn(scope, address, 'refused');
      return false;
    }
    counters.shed += 1;
    warn(scope, address, 'shed');
    forget(victim);
    victim.destroy();
    return true;
  }

  function forget(socket: Socket): void {
    const entry = all.get(socket);
    if (!entry) return;
    all.delete(socket);
    const mine = byAddress.get(entry.address);
    mine?.delete(socket);
    if (mine?.size === 0) byAddress.delete(entry.address);
  }

  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const mine = byAddress.get(address);
    if (mine && mine.size >= maxPerClient && !makeRoom('client', mine, address)) {
      socket.destroy();
      return;
    }
    if (all.size >= maxConnections && !makeRoom('total', all.keys(), address)) {
      socket.destroy();
      return;
    }
    all.set(socket, { address, active: 0 });
    const set = byAddress.get(address);
    if (set) set.add(socket);
    else byAddress.set(address, new Set([socket]));
    socket.once('close', () => forget(socket));
  });

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const entry = all.get(req.socket);
    if (!entry) return;
    entry.active += 1;
    res.once('close', () => {
      entry.active -= 1;
    });
  });

  return () => ({ open: all.size, shed: counters.shed, refused: counters.refused });
}
