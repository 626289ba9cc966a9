/**
 * Settling a pending one-shot boot (lifecycle.ts) once the machine itself took it. The machine
 * is the requester its boot session trusts (boot-sessions.ts): a stranger who sends
 * `/ipxe?mac=VICTIM` gets the one-shot script, consumes nothing, and the machine still boots
 * what the operator asked for. Verified facts of the boot also settle it.
 */
import { consumeNextBoot } from '../store/lifecycle.js';
import type { RouteEnv } from './context.js';

/** What settling a one-shot needs: the HTTP routes' env, or the same pieces from the TFTP side (grub). */
export type OneShotEnv = Pick<RouteEnv, 'log' | 'record'> & {
  deps: { store: Pick<RouteEnv['deps']['store'], 'getMachine' | 'updateMachine'> };
  sessions: Pick<RouteEnv['sessions'], 'trusted'>;
};

/**
 * Who took the one-shot: an /ipxe script, a grub script (over TFTP), a Pixiecore boot spec
 * (asked by the Pixiecore server for the machine), or the boot's verified facts.
 */
export type OneShotTaker = 'ipxe' | 'grub' | 'pixiecore' | 'facts';

/** What became of a one-shot that was served. */
export type OneShotOutcome = { kind: 'consumed' } | { kind: 'kept'; reason: string };

/** Consume `mac`'s pending one-shot (state provisioning) and put that in the timeline. */
export async function consumeOneShot(env: OneShotEnv, mac: string, ip: string, by: OneShotTaker): Promise<void> {
  const { store } = env.deps;
  try {
    const before = await store.getMachine(mac);
    if (!before?.nextBoot) return;
    const after = await store.updateMachine(mac, (m) => consumeNextBoot(m, new Date().toISOString()));
    if (before.state !== after.state) {
      env.log.info({ mac, ip, from: before.state ?? null, to: after.state, profile: after.provisioning?.profile, by }, 'machine state changed');
      env.record('state', mac, ip, {
        from: before.state ?? null,
        to: after.state ?? null,
        profile: after.provisioning?.profile ?? before.nextBoot.profile,
        by,
      });
    }
  } catch (err) {
    // The script is still served; the one-shot then repeats at the next boot.
    env.log.warn({ mac, err: (err as Error).message }, 'could not consume the one-shot boot');
  }
}

/** A one-shot script went to `ip`: consume it when that address speaks for `mac`, else keep it. */
export async function settleServedOneShot(env: OneShotEnv, mac: string, ip: string, by: Exclude<OneShotTaker, 'facts'> = 'ipxe'): Promise<OneShotOutcome> {
  const trust = env.sessions.trusted(mac, ip);
  if (!trust.ok) {
    env.log.warn({ mac, ip, reason: trust.reason }, 'one-shot boot served but kept: the request may not be the machine');
    return { kind: 'kept', reason: trust.reason };
  }
  await consumeOneShot(env, mac, ip, by);
  return { kind: 'consumed' };
}

/** Timeline detail of a served one-shot: consumed, or kept (and why). */
export function oneShotDetail(outcome: OneShotOutcome): Record<string, unknown> {
  return outcome.kind === 'consumed' ? { oneShot: 'consumed' } : { oneShot: 'kept', oneShotWhy: outcome.reason };
}
