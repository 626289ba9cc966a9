/**
 * The one rule of `--dhcp-mode auto` and `--dhcp6-mode auto` (pure): `server` only when the
 * probe ran, no server answered it, and the interface does not carry a default route (on an
 * uplink an unanswered probe means a missed answer, not an empty network); otherwise `proxy`.
 * Each protocol brings its own probe result and its own wording; the reason is the log line.
 */

/** What the rule reads of a probe result. */
export interface AutoProbe {
  /** Some server answered. */
  found: boolean;
  /** How long the probe listened. */
  elapsedMs: number;
}

/** What auto mode knows when it decides. */
export interface AutoFacts<P extends AutoProbe> {
  /** The probe ran (it does not on a test port). */
  probe: P | undefined;
  /** The interface owning our address, when known. */
  interface: string | undefined;
  /** That interface carries this host's default route (an uplink). */
  carriesDefaultRoute: boolean;
}

/** The reason of each outcome, in the protocol's words; `where` is the interface (or "this interface"). */
export interface AutoWords<P extends AutoProbe> {
  notProbed: string;
  answered(probe: P): string;
  uplink(probe: P, where: string): string;
  alone(probe: P, where: string): string;
}

/** The mode auto mode takes, and why. */
export interface AutoDecision {
  mode: 'proxy' | 'server';
  reason: string;
}

/** Apply the rule to `facts`, wording the reason with `words`. */
export function decideAuto<P extends AutoProbe>(facts: AutoFacts<P>, words: AutoWords<P>): AutoDecision {
  const where = facts.interface ?? 'this interface';
  const probe = facts.probe;
  if (!probe) return { mode: 'proxy', reason: words.notProbed };
  if (probe.found) return { mode: 'proxy', reason: words.answered(probe) };
  if (facts.carriesDefaultRoute) return { mode: 'proxy', reason: words.uplink(probe, where) };
  return { mode: 'server', reason: words.alone(probe, where) };
}
