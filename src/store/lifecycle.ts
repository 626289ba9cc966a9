/**
 * One-shot boots and the provisioning lifecycle, as pure record transformations (the routes
 * apply them through `Store.updateMachine`, so each is one validated, serialized write):
 *
 *   POST /api/machines/:mac/boot {profile, once: true}   -> nextBoot = {profile, token}
 *   the machine's next /ipxe request gets that profile   -> nextBoot consumed;
 *                                                           state provisioning (unless the
 *                                                           profile is local-disk)
 *   the installed OS or the microkernel calls back        -> state provisioned (or failed)
 *
 * While provisioning, the machine's cloud-config and preseed come from the one-shot profile
 * (the installer asks for them after its /ipxe request consumed the one-shot); its next /ipxe
 * request gets its ordinary selection again (record profile, group, default), e.g. local-disk.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { ApplianceError } from '../errors.js';
import { LOCAL_DISK_PROFILE_ID, type Machine, type Profile } from './schema.js';

/**
 * The built-in `local-disk` profile, used when the database defines no profile of that id. Its
 * kernel is never fetched: /ipxe answers it with the local boot script (http/local-disk.ts).
 */
export const LOCAL_DISK_PROFILE: Profile = {
  id: LOCAL_DISK_PROFILE_ID,
  name: 'boot from the local disk (built in)',
  kernel: '/assets/.local-disk',
  initrd: [],
  cmdline: '',
};

/** True for the built-in local-disk profile (not an operator's profile of the same id). */
export function isBuiltinLocalDisk(profile: Profile): boolean {
  return profile.id === LOCAL_DISK_PROFILE_ID && profile.kernel === LOCAL_DISK_PROFILE.kernel;
}

/** States the callback may set. */
export const CALLBACK_STATES = ['provisioned', 'failed'] as const;
/** A state set by the callback. */
export type CallbackState = (typeof CALLBACK_STATES)[number];

/** A fresh callback token (128 bits, hex). */
export function newCallbackToken(): string {
  return randomBytes(16).toString('hex');
}

/** What `POST /api/machines/:mac/boot` asks for. */
export interface BootRequestBody {
  profile: string;
  /** true: only the next netboot; false: the machine's profile from now on. */
  once: boolean;
  /** With `once`: the machine's profile afterwards (e.g. local-disk). */
  then?: string | undefined;
}

/** Apply a boot request to a machine record. */
export function requestBoot(machine: Machine, body: BootRequestBody, at: string, token: string): Machine {
  const next: Machine = { ...machine };
  if (!body.once) {
    next.profile = body.profile;
    delete next.nextBoot;
    return next;
  }
  next.nextBoot = { profile: body.profile, setAt: at, ...(body.profile === LOCAL_DISK_PROFILE_ID ? {} : { token }) };
  if (body.then !== undefined) next.profile = body.then;
  return next;
}

/**
 * The one-shot was served: drop it and, for anything but local-disk, start provisioning
 * (state `provisioning`, the profile and callback token kept for the config endpoints).
 */
export function consumeNextBoot(machine: Machine, at: string): Machine {
  const once = machine.nextBoot;
  if (!once) return machine;
  const next: Machine = { ...machine };
  delete next.nextBoot;
  if (once.profile === LOCAL_DISK_PROFILE_ID) return next;
  next.state = 'provisioning';
  next.provisioning = { profile: once.profile, since: at, ...(once.token ? { token: once.token } : {}) };
  return next;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Default lifetime of a provisioning's callback token: a day from the boot that started it. */
export const DEFAULT_CALLBACK_TOKEN_SECONDS = 86_400;
/** Longest accepted lifetime of a callback token: 30 days. */
export const MAX_CALLBACK_TOKEN_SECONDS = 2_592_000;

/** When the callback token of a provisioning in progress stops being accepted (ms since epoch). */
export function callbackDeadline(machine: Machine, lifetimeSeconds: number): number | undefined {
  const since = machine.provisioning?.since;
  return since === undefined ? undefined : Date.parse(since) + lifetimeSeconds * 1000;
}

/**
 * The callback of a provisioning machine: checks the token (constant time) and ends
 * provisioning, which also uses the token up (it lives in the provisioning record). Throws
 * ERR_CALLBACK_TOKEN, with the reason, when nothing is in progress (never started, or already
 * ended: a replay), when the token is missing or wrong, or when the provisioning started more
 * than `lifetimeSeconds` before `now`; the record is then unchanged.
 */
export function completeProvisioning(
  machine: Machine,
  token: string | undefined,
  state: CallbackState,
  now: number = Date.now(),
  lifetimeSeconds: number = DEFAULT_CALLBACK_TOKEN_SECONDS,
): Machine {
  const refuse = (reason: string): never => {
    throw new ApplianceError('ERR_CALLBACK_TOKEN', `callback for ${machine.mac} refused: ${reason}`, { mac: machine.mac, reason });
  };
  const p = machine.provisioning;
  if (!p || machine.state !== 'provisioning') {
    return refuse(`the machine is not provisioning (state ${machine.state ?? 'none'}): its callback token was used already or no one-shot boot started one`);
  }
  if (token === undefined || token === '') return refuse('no callback token (?token= or {"token"}): use the callback_url the machine was given');
  if (!p.token || !sameToken(p.token, token)) return refuse('wrong callback token (a new one-shot boot replaces the token)');
  const deadline = callbackDeadline(machine, lifetimeSeconds)!;
  if (!(now < deadline)) {
    return refuse(
      `the callback token expired at ${new Date(deadline).toISOString()} (provisioning started ${p.since}; --callback-token-seconds ${lifetimeSeconds})`,
    );
  }
  const next: Machine = { ...machine, state };
  delete next.provisioning;
  return next;
}

/** The callback token a boot of this machine may hand out (one-shot pending, or in progress). */
export function callbackToken(machine: Machine | undefined): string | undefined {
  return machine?.nextBoot?.token ?? machine?.provisioning?.token;
}

/** A machine record as API reads show it: the BMC password and callback tokens left out. */
export function publicMachine(machine: Machine): Machine {
  const out: Machine = { ...machine };
  if (out.bmc) {
    const { password, ...bmc } = out.bmc;
    out.bmc = { ...bmc, ...(password !== undefined ? { passwordSet: true } : {}) } as typeof bmc;
  }
  if (out.nextBoot) {
    const { token: _t, ...rest } = out.nextBoot;
    out.nextBoot = rest;
  }
  if (out.provisioning) {
    const { token: _t, ...rest } = out.provisioning;
    out.provisioning = rest;
  }
  return out;
}

/**
 * A machine PUT by the operator keeps secrets the API never showed: the BMC password (when the
 * BMC address is unchanged and no password is given) and the tokens of a pending one-shot or
 * provisioning, so GET-then-PUT round trips lose nothing.
 */
export function keepSecrets(input: Record<string, unknown>, existing: Machine | undefined): Record<string, unknown> {
  if (!existing) return input;
  const out = { ...input };
  const bmc = out['bmc'];
  if (bmc && typeof bmc === 'object' && !Array.isArray(bmc) && existing.bmc?.password !== undefined) {
    const b = { ...(bmc as Record<string, unknown>) };
    delete b['passwordSet'];
    if (b['password'] === undefined && b['address'] === existing.bmc.address) b['password'] = existing.bmc.password;
    out['bmc'] = b;
  } else if (bmc && typeof bmc === 'object' && !Array.isArray(bmc)) {
    const b = { ...(bmc as Record<string, unknown>) };
    delete b['passwordSet'];
    out['bmc'] = b;
  }
  for (const key of ['nextBoot', 'provisioning'] as const) {
    const v = out[key];
    const old = existing[key];
    if (
      v &&
      typeof v === 'object' &&
      !Array.isArray(v) &&
      old?.token &&
      (v as Record<string, unknown>)['profile'] === old.profile &&
      (v as Record<string, unknown>)['token'] === undefined
    ) {
      out[key] = { ...(v as Record<string, unknown>), token: old.token };
    }
  }
  return out;
}
