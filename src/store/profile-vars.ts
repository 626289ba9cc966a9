/**
 * The write-time check of what a profile's cmdline needs from the machines that name it (db
 * refinement in schema.ts): a value a machine sets and the cmdline places with `{{ vars.NAME }}`
 * must stay one iPXE token (cmdline.ts), and a placeholder written without `?` must have a value,
 * or the machine would only get a retry script at boot. Checked when the database is written
 * (the API answers 422, a hand edit is refused with its line and column) rather than looped at boot.
 */
import { ipxeTokenProblem, PLACEHOLDER } from './cmdline.js';

/** One problem, at `path` below the value checked. */
export interface VarIssue {
  path: (string | number)[];
  message: string;
}

type Vars = Record<string, unknown>;

/** A cmdline's texts: the string form, or every value of the object form. */
function cmdlineTexts(cmdline: unknown): string[] {
  if (typeof cmdline === 'string') return [cmdline];
  return cmdline && typeof cmdline === 'object' ? Object.values(cmdline).flat().map(String) : [];
}

const isScalar = (v: unknown): v is string | number | boolean => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';

/**
 * Vars a machine sets that its profile's cmdline places with `{{ vars.NAME }}`: the argument
 * the value lands in must still be one iPXE token (checked here and again at render time).
 */
export function machineVarIssues(profile: { cmdline?: unknown }, vars: Vars): VarIssue[] {
  const out: VarIssue[] = [];
  const texts = cmdlineTexts(profile.cmdline);
  for (const [name, v] of Object.entries(vars)) {
    if (!isScalar(v)) continue;
    if (!texts.some((t) => new RegExp(`\\{\\{\\s*vars\\.${name}\\s*\\??\\s*\\}\\}`).test(t))) continue;
    const p = ipxeTokenProblem(`x=${String(v)}`);
    if (p) out.push({ path: [name], message: `is placed in the kernel command line of its profile and ${p}` });
  }
  return out;
}

/**
 * Placeholders a profile's cmdline places without `?` that a machine naming the profile leaves
 * unset: `vars.NAME` that neither the machine nor the profile sets to a scalar, and `hostname`
 * when the machine has none. At boot each would only get a retry script.
 */
export function unsetPlaceholders(
  profile: { cmdline?: unknown; vars?: Vars | undefined },
  machine: { hostname?: string | undefined; vars?: Vars | undefined },
): string[] {
  const vars: Vars = { ...(profile.vars ?? {}), ...(machine.vars ?? {}) };
  const out = new Set<string>();
  for (const text of cmdlineTexts(profile.cmdline)) {
    for (const m of text.matchAll(PLACEHOLDER)) {
      if (m[2] === '?') continue;
      const name = m[1]!;
      if (name === 'hostname' && machine.hostname === undefined) out.add(name);
      const v = name.startsWith('vars.') && Object.hasOwn(vars, name.slice(5)) ? vars[name.slice(5)] : undefined;
      if (name.startsWith('vars.') && !isScalar(v)) out.add(name);
    }
  }
  return [...out];
}

/**
 * Every machine of `db` checked against the profile it names: its vars placed in that cmdline,
 * and the values that cmdline needs from it (`{{ vars.NAME }}`, `{{ hostname }}` without `?`).
 * Paths are from the database root.
 */
export function machineProfileIssues(db: {
  profiles: ReadonlyArray<{ id: string; cmdline?: unknown; vars?: Vars | undefined }>;
  machines: ReadonlyArray<{ profile?: string | undefined; hostname?: string | undefined; vars?: Vars | undefined }>;
}): VarIssue[] {
  const out: VarIssue[] = [];
  db.machines.forEach((m, i) => {
    const profile = m.profile !== undefined ? db.profiles.find((p) => p.id === m.profile) : undefined;
    if (!profile) return;
    for (const issue of machineVarIssues(profile, m.vars ?? {})) out.push({ path: ['machines', i, 'vars', ...issue.path], message: issue.message });
    for (const name of unsetPlaceholders(profile, m)) {
      const what = name === 'hostname' ? 'the machine has no hostname' : `neither the machine nor the profile sets ${name} to a string, number or boolean`;
      out.push({
        path: ['machines', i, 'profile'],
        message: `profile "${profile.id}" places {{ ${name} }} in its cmdline and ${what} (write {{ ${name}? }} to leave the argument out instead)`,
      });
    }
  });
  return out;
}
