/**
 * sendfile(2) from native/sendfile.c (built by scripts/build-native into build/Release/): the
 * kernel copies file pages to the socket, as nginx sends assets, so a 64 MiB initrd is never read
 * into the process. Without the addon (no compiler where it was installed) `sendfileNative()` is
 * undefined and assets go out by copying (src/http/file-stream.ts); the appliance logs which at
 * start. NETBOOT_SENDFILE=0 turns it off (the bench's copy row).
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { constants } from 'node:os';

/** sendfile(socketFd, fileFd, offset, count): bytes sent, or -errno. */
export type SendfileFn = (socketFd: number, fileFd: number, offset: number, count: number) => number;

/** The errno sendfile returns (negated) when the socket's send buffer is full. */
export const EAGAIN = constants.errno.EAGAIN;

interface Loaded {
  fn: SendfileFn | undefined;
  /** Why it is not used, when it is not. */
  reason: string | undefined;
}

let loaded: Loaded | undefined;

function load(): Loaded {
  if (process.platform !== 'linux') return { fn: undefined, reason: `sendfile is used on Linux only (this is ${process.platform})` };
  if (process.env['NETBOOT_SENDFILE'] === '0') return { fn: undefined, reason: 'NETBOOT_SENDFILE=0' };
  const require = createRequire(import.meta.url);
  let failure = '';
  // This module runs from src/http/ (tests, under tsx) and from dist/src/http/ (bin/appliance).
  for (const root of ['../..', '../../..']) {
    const file = `${root}/build/Release/netboot_sendfile.node`;
    let addon: { sendfile?: unknown };
    try {
      addon = require(file) as { sendfile?: unknown };
    } catch (err) {
      failure ||= (err as Error).message.split('\n')[0] ?? '';
      continue;
    }
    if (typeof addon.sendfile !== 'function') return { fn: undefined, reason: `${file} has no sendfile` };
    return { fn: addon.sendfile as SendfileFn, reason: undefined };
  }
  return { fn: undefined, reason: `the sendfile addon is not built (scripts/build-native): ${failure}` };
}

/** The addon's sendfile, or undefined when assets are sent by copying. */
export function sendfileNative(): SendfileFn | undefined {
  loaded ??= load();
  return loaded.fn;
}

/** Why sendfile is not used (undefined when it is). */
export function sendfileUnavailableReason(): string | undefined {
  loaded ??= load();
  return loaded.reason;
}

/** The kernel descriptor of a TCP socket libuv owns, when there is one (not for TLS or pipes). */
export function socketFd(socket: Socket | null | undefined): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } } | null | undefined)?._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}
