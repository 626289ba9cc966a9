/**
 * Binds the HTTP app. The constructor never binds; `start()` resolves with the real port once
 * listening and rejects on the first bind error; `stop()` closes the listener and open
 * keep-alive connections.
 */
import http from 'node:http';
import type Koa from 'koa';
import type { Logger } from '../log.js';
import { createHttpApp, type HttpDeps } from './app.js';

/** Options for {@link createHttpServer}: an app, or deps to build one. */
export type HttpServerOptions = { host?: string; port: number; log: Logger } & ({ app: Koa } | { deps: HttpDeps });

/** A started-on-demand HTTP server. */
export interface HttpServer {
  start(): Promise<{ port: number }>;
  stop(): Promise<void>;
  /** The bound port (0 before start). */
  port(): number;
}

/** Create (but do not bind) the HTTP server. Port 0 picks a free port. */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const log = options.log.child({ subsystem: 'http' });
  const app = 'app' in options ? options.app : createHttpApp(options.deps);
  const host = options.host ?? '0.0.0.0';
  let server: http.Server | undefined;
  let bound = 0;
  return {
    port: () => bound,
    start() {
      if (server) return Promise.reject(new Error('http server already started'));
      const s = http.createServer(app.callback());
      server = s;
      // Slow or stalled clients must not hold sockets forever (boot files are large, so the
      // request timeout bounds only the headers/body upload, not the download).
      s.headersTimeout = 30_000;
      s.requestTimeout = 60_000;
      s.keepAliveTimeout = 5_000;
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
