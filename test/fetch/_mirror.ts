/**
 * A local HTTP mirror for fetch tests, bound to 127.0.0.1:0, with fault switches: cut the
 * connection after N bytes, ignore Range, answer a bogus Content-Range, stall, redirect.
 * It records every request so tests can assert what the client sent (e.g. the Range header).
 */
import { createHash, randomBytes } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  path: string;
  headers: IncomingHttpHeaders;
}

export interface MirrorFaults {
  /** path -> bytes after which the connection is destroyed; applies once per path. */
  cutOnce: Map<string, number>;
  /** Answer every request with 200 and the whole file, as if Range were unsupported. */
  ignoreRange: boolean;
  /** Answer range requests with 206 carrying the whole file (Content-Range starts at 0). */
  badContentRange: boolean;
  /** path -> ms to wait after sending headers before sending the body (never, if huge). */
  stall: Map<string, number>;
  /** path -> Location to redirect to with 302. */
  redirects: Map<string, string>;
}

export interface Mirror {
  base: string;
  files: Map<string, Buffer>;
  seen: SeenRequest[];
  faults: MirrorFaults;
  /** Requests for one path. */
  requestsFor(path: string): SeenRequest[];
  close(): Promise<void>;
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The strong ETag the mirror gives `body`. */
export function etagFor(body: Buffer): string {
  return `"${sha256(body).slice(0, 16)}"`;
}

export function md5(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

/** Start a mirror serving `files` (URL path -> content). */
export async function startMirror(files: Map<string, Buffer> = new Map()): Promise<Mirror> {
  const seen: SeenRequest[] = [];
  const faults: MirrorFaults = {
    cutOnce: new Map(),
    ignoreRange: false,
    badContentRange: false,
    stall: new Map(),
    redirects: new Map(),
  };
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    seen.push({ path, headers: req.headers });
    const location = faults.redirects.get(path);
    if (location !== undefined) {
      res.writeHead(302, { location });
      res.end();
      return;
    }
    const body = files.get(path);
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    const etag = etagFor(body);
    let start = 0;
    let status = 200;
    const headers: Record<string, string> = { etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    if (range && !faults.ignoreRange && (ifRange === undefined || ifRange === etag)) {
      start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` });
        res.end();
        return;
      }
      status = 206;
      // The bogus variant is self-consistent (length matches) but starts at 0, not at the
      // requested offset: only the client's start check can catch it.
      if (faults.badContentRange) start = 0;
      headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    }
    const slice = body.subarray(start);
    headers['content-length'] = String(slice.length);
    res.writeHead(status, headers);
    const cut = faults.cutOnce.get(path);
    if (cut !== undefined) {
      faults.cutOnce.delete(path);
      res.write(slice.subarray(0, cut), () => {
        // Give the bytes time to reach the client, then drop the connection mid-body.
        setTimeout(() => res.destroy(), 200);
      });
      return;
    }
    const stall = faults.stall.get(path);
    if (stall !== undefined) {
      res.flushHeaders();
      const timer = setTimeout(() => res.end(slice), stall);
      res.on('close', () => clearTimeout(timer));
      return;
    }
    res.end(slice);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    files,
    seen,
    faults,
    requestsFor: (path) => seen.filter((r) => r.path === path),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A fake RancherOS release under `/<version>/`, in the real checksums.txt layout. */
export function makeFakeRelease(version = 'v1.5.8'): { files: Map<string, Buffer>; vmlinuz: Buffer; initrd: Buffer; checksums: string } {
  const vmlinuz = randomBytes(300 * 1024);
  const initrd = randomBytes(1024 * 1024 + 123);
  const iso = randomBytes(1000);
  // md5 and sha256 lines per file, as RancherOS publishes them (NETBOOT-FACTS §6), with
  // irregular whitespace to prove the parser is tolerant.
  const checksums = [
    `md5: ${md5(initrd)}  initrd`,
    `sha256: ${sha256(initrd)}  initrd`,
    `md5: ${md5(iso)}  rancheros.iso`,
    `sha256:   ${sha256(iso)}\trancheros.iso`,
    `md5: ${md5(vmlinuz)}  vmlinuz`,
    `  sha256: ${sha256(vmlinuz).toUpperCase()}   vmlinuz  \r`,
    '',
  ].join('\n');
  const files = new Map<string, Buffer>([
    [`/${version}/vmlinuz`, vmlinuz],
    [`/${version}/initrd`, initrd],
    [`/${version}/rancheros.iso`, iso],
    [`/${version}/checksums.txt`, Buffer.from(checksums)],
  ]);
  return { files, vmlinuz, initrd, checksums };
}
