/**
 * Boot diagnoses drawn from a machine's timeline, for failures the appliance cannot see
 * directly. Today one: Secure Boot firmware refusing unsigned iPXE.
 *
 * What that looks like from the network (docs/NETBOOT-FACTS.md section 7, OVMF with Microsoft keys):
 * the firmware downloads the iPXE binary completely, its signature check fails ("Access
 * Denied" on the console only), and it moves to its next boot option — which DHCPs again as
 * firmware (PXEClient/HTTPClient, not iPXE). A loaded iPXE would have DHCPed as iPXE (user
 * class `iPXE`) or fetched its script. So: an iPXE EFI binary served in full, then a firmware
 * DISCOVER from the same MAC with no iPXE sign in between, is the signal.
 */
import type { BootEvent, EventLog } from '../events.js';
import type { Logger } from '../log.js';
import { SIGNED_FILES } from './loader.js';

/** A diagnosis for the timeline (grub-asked-another-server: grub-watch.ts). */
export interface Diagnosis {
  problem: 'unsigned-loader-refused' | 'grub-asked-another-server';
  /** The binary that was refused, or that went on to ask another server. */
  file: string;
  explanation: string;
  fix: string;
}

const SIGNED = new Set(Object.values(SIGNED_FILES).flatMap((f) => [f.shim, f.grub]));

/** The EFI file name of a completed TFTP or HTTP-boot download, if this event is one. */
function servedEfi(e: BootEvent): string | undefined {
  const file = e.detail?.['file'];
  if (typeof file !== 'string' || !file.toLowerCase().endsWith('.efi')) return undefined;
  if (e.type === 'tftp-file' || (e.type === 'http-asset' && e.detail?.['via'] === 'http-boot')) return file.split('/').pop();
  return undefined;
}

/** A DHCP answer to firmware (PXE or UEFI HTTP boot), the request that can reveal a refusal. */
function isFirmwareRequest(e: BootEvent): boolean {
  if (e.type !== 'dhcp-offer' && e.type !== 'dhcp-ack') return false;
  const client = e.detail?.['client'];
  return client === 'pxe' || client === 'http';
}

/** True for events that only a running iPXE (or a booted OS) produces. */
function ipxeRan(e: BootEvent): boolean {
  return (e.type === 'dhcp-offer' || e.type === 'dhcp-ack') && e.detail?.['client'] === 'ipxe'
    ? true
    : e.type === 'http-script' || e.type === 'http-cloud-config' || e.type === 'facts';
}

/**
 * Diagnose the newest event of a machine's timeline (oldest first): a firmware DHCP request
 * right after an unsigned EFI binary was served, with no iPXE activity in between. Earlier
 * firmware requests are taken as judged when they were recorded (withBootDiagnosis puts a
 * boot-diagnosis after each refusal it finds), so the walk ends at the previous one.
 */
export function diagnoseRefusedLoader(events: readonly BootEvent[]): Diagnosis | undefined {
  const last = events.at(-1);
  if (!last || !isFirmwareRequest(last)) return undefined;
  for (let i = events.length - 2; i >= 0; i--) {
    const e = events[i]!;
    if (ipxeRan(e) || e.type === 'boot-diagnosis') return undefined;
    // An earlier firmware request with nothing served since: it was judged then (a refusal
    // found behind it would have put a boot-diagnosis after it), so the walk ends here instead
    // of reading a retransmitting PXE ROM's whole history on every DISCOVER.
    if (isFirmwareRequest(e)) return undefined;
    const file = servedEfi(e);
    if (file === undefined) continue;
    if (SIGNED.has(file)) return undefined;
    return {
      problem: 'unsigned-loader-refused',
      file,
      explanation: `the firmware downloaded ${file} and then asked dhcp again as firmware instead of running it: it refused the image, as secure boot firmware refuses unsigned ipxe (its console says "Access Denied")`,
      fix: 'set secureBoot: true on this machine, its group or profile (or start with --secure-boot) and run: node bin/appliance fetch secureboot; shim and signed grub then boot a signed kernel. Or turn secure boot off in the firmware setup',
    };
  }
  return undefined;
}

/**
 * An EventLog that adds `boot-diagnosis` events (and a warning in the log, with the MAC) when a
 * recorded DHCP event completes a pattern `diagnoseRefusedLoader` recognises.
 */
export function withBootDiagnosis(events: EventLog, log: Logger): EventLog {
  return {
    ...events,
    record(input) {
      const recorded = events.record(input);
      // Only a firmware (PXE or HTTP boot) request can complete the pattern: an iPXE or plain
      // DHCP client's offer needs no look at its history (a DORA flood is mostly those).
      const client = recorded.detail?.['client'];
      if (recorded.mac && (recorded.type === 'dhcp-offer' || recorded.type === 'dhcp-ack') && (client === 'pxe' || client === 'http')) {
        const found = diagnoseRefusedLoader(events.list({ mac: recorded.mac }));
        if (found) {
          log.warn({ mac: recorded.mac, file: found.file, problem: found.problem, fix: found.fix }, found.explanation);
          events.record({ type: 'boot-diagnosis', mac: recorded.mac, ...(recorded.ip ? { ip: recorded.ip } : {}), detail: { ...found } });
        }
      }
      return recorded;
    },
  };
}
