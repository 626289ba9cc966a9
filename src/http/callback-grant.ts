/**
 * Who receives a provisioning's callback token (`{{ callback_url }}`, lifecycle.ts). The
 * callback ends a provisioning (provisioning -> provisioned), which changes where that
 * machine's cloud-config and preseed come from and what it boots next, so the token must reach
 * the booted machine and nobody else. Anyone on the segment can ask for any machine's documents
 * (`/ipxe?mac=VICTIM`, `/preseed?mac=VICTIM`); what a stranger cannot easily be is the
 * machine's own address as DHCP saw it (boot-sessions.ts). So:
 *
 * - with binding `dhcp` a document carries the token only when it goes to an address the
 *   sessions trust for that MAC (DHCP saw the MAC there, no other DHCP-seen address fetched its
 *   boot script): the one-shot's iPXE script, preseed, cloud-config or NoCloud user-data of the
 *   machine's own boot. A stranger's copy has no callback (`{{ callback_url? }}` is left out);
 * - the callback itself is then accepted from any address (an installed OS may come up with a
 *   static address or long after every DHCP sighting expired), once, until the provisioning's
 *   deadline (`--callback-token-seconds` after the boot that started it);
 * - with binding `none` every document for the MAC carries it (anyone on the segment can then
 *   end any provisioning: README "A callback nobody else can make").
 *
 * A host that forges DHCP with the machine's MAC is indistinguishable from it, as for facts.
 */
import { callbackDeadline, callbackToken } from '../store/lifecycle.js';
import type { Machine } from '../store/schema.js';
import type { BootSessions } from './boot-sessions.js';

/** Whether a document gets the callback token: granted, withheld (and why), or none to give. */
export type CallbackGrant = { kind: 'granted'; token: string } | { kind: 'withheld'; reason: string } | { kind: 'none' };

/** What deciding a grant needs. */
export interface CallbackGrantDeps {
  sessions: Pick<BootSessions, 'binding' | 'trusted'>;
  /** Lifetime of a provisioning's callback token, seconds. */
  lifetimeSeconds: number;
  now?: () => number;
}

/** Decide whether the document for `mac` sent to `ip` may carry `machine`'s callback token. */
export function grantCallback(deps: CallbackGrantDeps, machine: Machine | undefined, mac: string, ip: string): CallbackGrant {
  const token = callbackToken(machine);
  if (token === undefined || !machine) return { kind: 'none' };
  const deadline = callbackDeadline(machine, deps.lifetimeSeconds);
  if (deadline !== undefined && !((deps.now?.() ?? Date.now()) < deadline)) {
    return { kind: 'withheld', reason: `the provisioning's callback token expired at ${new Date(deadline).toISOString()}` };
  }
  if (deps.sessions.binding === 'none') return { kind: 'granted', token };
  const trust = deps.sessions.trusted(mac, ip);
  return trust.ok ? { kind: 'granted', token } : { kind: 'withheld', reason: trust.reason };
}

/** The token to render, if granted. */
export function grantedToken(grant: CallbackGrant): string | undefined {
  return grant.kind === 'granted' ? grant.token : undefined;
}

/** Timeline detail of a grant: `callback: granted|withheld` (and why); nothing when there was none to give. */
export function callbackDetail(grant: CallbackGrant): Record<string, unknown> {
  if (grant.kind === 'none') return {};
  return grant.kind === 'granted' ? { callback: 'granted' } : { callback: 'withheld', callbackWhy: grant.reason };
}
