/**
 * A diagnosis for grub that was loaded from this appliance but then asked another server for
 * its configuration: what Debian 12's grub does in ProxyDHCP mode beside a DHCP server whose
 * ACK names another next-server.
 *
 * Why (read in Debian's grub2 2.06-13+deb12u2 source, and measured in the lab):
 *  - `grub-core/net/drivers/efi/efinet.c` `grub_efi_net_config_real` configures the network
 *    from `pxe->mode->dhcp_ack` only (EDK2's `Mode->DhcpAck`: the ACK of the DHCP server that
 *    leased the address). It never reads `Mode->ProxyOffer` or `Mode->PxeReply`, where the
 *    ProxyDHCP answers are (upstream grub's "efinet: Add DHCP proxy support" is not in Debian 12;
 *    the signed binary has no "proxy" string).
 *  - `grub-core/net/bootp.c` `grub_net_configure_by_dhcp_ack` makes the boot device
 *    `tftp,SIADDR` from that ACK's siaddr, else from option 66 / sname; the image's built-in
 *    prefix `/grub` becomes `(tftp,SIADDR)/grub`, and its embedded config sources
 *    `$prefix/x86_64-efi/grub.cfg` or `$prefix/grub.cfg`.
 *  - dnsmasq puts its own address in siaddr: in the proxy lab grub sent
 *    `RRQ /grub/x86_64-efi/command.lst` ... `/grub/grub.cfg` to dnsmasq's address (no TFTP
 *    there), retrying each for ~25 s, and never asked the appliance. With the DHCP server's
 *    next-server set to the appliance the same VM booted (2 s from grub's download to its first
 *    request here).
 *
 * So: grub's binary served in full, then no request under `grub/` from that machine within
 * `waitMs`, means grub went to another server. shim is not affected (it reads the proxy offer).
 */
import type { BootEvent, EventLog } from '../events.js';
import type { Logger } from '../log.js';
import type { Diagnosis } from './diagnosis.js';
import { SIGNED_FILES } from './loader.js';

/** grub's network images as the appliance serves them (shim loads these names). */
const GRUB_BINARIES = new Set(Object.values(SIGNED_FILES).map((f) => f.grub));

/** How long grub gets from its download to its first request (2 s measured under TCG). */
export const GRUB_FIRST_REQUEST_MS = 30_000;

/** At most this many machines watched at once: a flood of grub downloads cannot grow memory. */
const MAX_WATCHED = 256;

function fileOf(e: BootEvent): string | undefined {
  const file = e.detail?.['file'];
  return typeof file === 'string' ? file : undefined;
}

/** A completed TFTP download of a grub network image. */
function grubServed(e: BootEvent): boolean {
  const file = fileOf(e);
  return e.type === 'tftp-file' && file !== undefined && GRUB_BINARIES.has(file.split('/').pop()!);
}

/** Any TFTP request grub makes of its prefix (found or not: `/grub/x86_64-efi/command.lst` is normal). */
function grubAsked(e: BootEvent): boolean {
  const file = fileOf(e);
  return (e.type === 'tftp-file' || e.type === 'tftp-error') && file !== undefined && /^\/?grub\//.test(file);
}

/**
 * Diagnose a machine's timeline (oldest first) at `now`: the newest grub download is at least
 * `waitMs` old and no grub request, and no diagnosis, came after it.
 */
export function diagnoseGrubElsewhere(events: readonly BootEvent[], now: number, waitMs = GRUB_FIRST_REQUEST_MS): Diagnosis | undefined {
  let i = events.length - 1;
  for (; i >= 0; i--) {
    const e = events[i]!;
    if (grubAsked(e) || (e.type === 'boot-diagnosis' && e.detail?.['problem'] === 'grub-asked-another-server')) return undefined;
    if (grubServed(e)) break;
  }
  if (i < 0) return undefined;
  const served = events[i]!;
  if (now - Date.parse(served.at) < waitMs) return undefined;
  const file = fileOf(served)!.split('/').pop()!;
  return {
    problem: 'grub-asked-another-server',
    file,
    explanation: `grub (${file}) was downloaded from this appliance but asked it for no grub file within ${Math.round(waitMs / 1000)} s: debian 12's grub takes its tftp server from the dhcp server's ack (siaddr / next-server), not from the proxydhcp offer, so it is asking the dhcp server that leased the address for /grub/grub.cfg`,
    fix: "on the dhcp server that hands out addresses, set next-server to this appliance's address (isc dhcpd: next-server ADDRESS; dnsmasq: dhcp-option=option:server-ip-address,ADDRESS; kea: next-server), or run the appliance with --dhcp-mode server, or serve debian 13's grub, which reads the proxydhcp offer (node bin/appliance fetch secureboot --release trixie); machines without secure boot can use ipxe instead (bootloader: ipxe), which works beside any dhcp server",
  };
}

/**
 * An EventLog that, after each completed download of a grub image by a known machine, checks
 * `waitMs` later whether grub asked for anything, and if not records a `boot-diagnosis` event
 * and logs the explanation with the MAC. `setTimer` is a seam for tests.
 */
export function withGrubWatch(
  events: EventLog,
  log: Logger,
  options: { waitMs?: number; now?: () => number; setTimer?: (fn: () => void, ms: number) => { unref?(): unknown } } = {},
): EventLog {
  const waitMs = options.waitMs ?? GRUB_FIRST_REQUEST_MS;
  const now = options.now ?? Date.now;
  const setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
  const watched = new Set<string>();
  const arm = (mac: string, ms: number): void => {
    watched.add(mac);
    // A little past the wait, so the download's own timestamp is old enough when it fires.
    setTimer(() => {
      try {
        check(mac);
      } catch (err) {
        // The timeline may be closed (appliance stopping): a diagnosis is never worth a crash.
        log.debug({ mac, err: (err as Error).message }, 'grub watch check failed');
      }
    }, ms + 50).unref?.();
  };
  const check = (mac: string): void => {
    watched.delete(mac);
    const list = events.list({ mac });
    const found = diagnoseGrubElsewhere(list, now(), waitMs);
    if (!found) {
      // grub was downloaded again meanwhile: wait for that download's turn.
      const newest = list.findLast(grubServed);
      const left = newest ? waitMs - (now() - Date.parse(newest.at)) : 0;
      if (left > 0 && !list.slice(list.indexOf(newest!)).some(grubAsked)) arm(mac, left);
      return;
    }
    log.warn({ mac, file: found.file, problem: found.problem, fix: found.fix }, found.explanation);
    const ip = events.lastIp(mac);
    events.record({ type: 'boot-diagnosis', mac, ...(ip ? { ip } : {}), detail: { ...found } });
  };
  return {
    ...events,
    record(input) {
      const recorded = events.record(input);
      const mac = recorded.mac;
      if (mac && grubServed(recorded) && !watched.has(mac) && watched.size < MAX_WATCHED) arm(mac, waitMs);
      return recorded;
    },
  };
}
