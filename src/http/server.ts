/**
 * Binds the HTTP app. The constructor never binds; `start()` resolves with the real port once
 * listening and rejects on the first bind error; `stop()` closes the listener and open
 * keep-alive connections. Open connections are capped in total and per client address
 * (connections.ts); headers, requests and idle keep-alive connections have timeouts.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type Koa from 'koa';
import type { Logger } from '../log.js';
import { createHttpApp, type HttpDeps } from './app.js';
import { limitConnections, type ConnectionLimits, type ConnectionStats } from './connections.js';

/** Timeouts of the HTTP server, in ms. */
export interface HttpTimeouts {
  /** Until the request headers are complete (slowloris); default 10 s. */
  headersMs?: number;
  /** Until the whole request (headers and body) is received; default 60 s. */
  requestMs?: number;
  /** An idle keep-alive connection is closed after this; default 5 s. */
  keepAliveMs?: number;
  /** A socket with no traffic either way (a stalled download) is closed after this; default 120 s. */
  idleMs?: number;
}

/** Options for {@link createHttpServer}: an app, or deps to build one. */
export type HttpServerOptions = { host?: string; port: number; log: Logger; limits?: ConnectionLimits; timeouts?: HttpTimeouts } & (
  { app: Koa } | { deps: HttpDeps }
);

/** A started-on-demand HTTP server. */
export interface HttpServer {
  start(): Promise<{ port: number }>;
  stop(): Promise<void>;
  /** The bound port (0 before start). */
  port(): number;
  /** Connection counters (zeros before start). */
  connections(): ConnectionStats;
}

/** Create (but do not bind) the HTTP server. Port 0 picks a free port. */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const log = options.log.child({ subsystem: 'http' });
  const app = 'app' in options ? options.app : createHttpApp(options.deps);
  const host = options.host ?? '0.0.0.0';
  const timeouts = options.timeouts ?? {};
  let server: http.Server | undefined;
  let stats: (() => ConnectionStats) | undefined;
  let bound = 0;
  return {
    port: () => bound,
    connections: () => stats?.() ?? { open: 0, shed: 0, refused: 0 },
    start() {
      if (server) return Promise.reject(new Error('http server already started'));
      // Slow or stalled clients must not hold sockets forever (boot files are large, so the
      // request timeout bounds only the headers/body upload, not the download). Node checks
      // the header and request timeouts every connectionsCheckingInterval.
      const headersMs = timeouts.headersMs ?? 10_000;
      const s = http.createServer(
        {
          headersTimeout: headersMs,
          requestTimeout: Math.max(timeouts.requestMs ?? 60_000, headersMs),
          keepAliveTimeout: timeouts.keepAliveMs ?? 5_000,
          connectionsCheckingInterval: Math.min(1000, headersMs),
        },
        app.callback(),
      );
      const idleMs = timeouts.idleMs ?? 120_000;
      s.setTimeout(idleMs, (socket) => socket.destroy());
      // Node's header timeout starts with the first byte: a connection that sends nothing at all
      // gets the header timeout as its inactivity limit until its first request.
      s.on('connection', (socket: Socket) => socket.setTimeout(headersMs));
      s.on('request', (req: http.IncomingMessage) => req.socket.setTimeout(idleMs));
      stats = limitConnections(s, log, options.limits);
      server = s;
      return new Promise((resolve, reject) => {
        const onError = (err: Error): void => {
          server = undefined;
          reject(err);
        };
        s.once('error', onError);
        s.listen(options.port ?? 0, host, () => {
          s.off('error', onError);
          s.on('error', (err) => log.error({ err: err.message }, 'http server error'));
          const addr = s.address();
          bound = typeof addr === 'object' && addr ? addr.port : 0;
          log.info({ host, port: bound }, 'http listening');
          resolve({ port: bound });
        });
      });
    },
    stop() {
      const s = server;
      server = undefined;
      if (!s) return Promise.resolve();
      return new Promise((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    },
  };
}
