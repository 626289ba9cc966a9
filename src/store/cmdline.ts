/**
 * What an operator-written value may hold when it becomes an argument on an iPXE `kernel` line,
 * following iPXE's own tokenizer exactly (ipxe src/image/script.c, src/core/exec.c,
 * src/core/getopt.c), so that anything iPXE would pass through unchanged is accepted:
 *
 * - script.c joins a line ending in `\` with the next one (continuation) and strips a final CR;
 * - exec.c `split_command` splits on `isspace` (space, \t, \n, \v, \f, \r) and knows no quoting;
 * - exec.c `command_terminator` ends the command at a token *starting* with `#` (comment) or at a
 *   token that *is* `||`, `&&` or `;` (separators); `;` or `&` inside a token are plain text;
 * - settings `${name}` are expanded per token after splitting (`expand_settings`), so `${uuid}`,
 *   `${mac:hexhyp}`, `${net0/mac}` reach the kernel as iPXE expands them and never split a token;
 * - getopt stops at the first non-option (the kernel URL), so later arguments may start with `-`.
 *
 * Refused: whitespace inside one argument, control characters (and the Unicode line breaks our
 * YAML consumers read as one), double or single quotes (the Linux command-line parser gives
 * `"` a meaning; quoting is never needed here), a token starting with `#`, a token that is
 * `||`, `&&` or `;`, and a token ending in `\`.
 */

/** iPXE's isspace() (src/include/ctype.h). */
const IPXE_SPACE = /[ \t\n\v\f\r]/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]/;

/** Why `token` cannot be one argument on an iPXE command line, or undefined when it can. */
export function ipxeTokenProblem(token: string): string | undefined {
  if (token === '') return 'is empty';
  if (IPXE_SPACE.test(token)) return 'contains whitespace (iPXE splits arguments there; use one argument per value)';
  if (CONTROL.test(token)) return 'contains a control character or line break';
  if (/["']/.test(token)) return 'contains a quote (iPXE passes quotes through and the kernel would read them)';
  if (token.startsWith('#')) return 'starts with "#" (iPXE reads the rest of the line as a comment)';
  if (token === '||' || token === '&&' || token === ';') return `is "${token}", which iPXE reads as a command separator`;
  if (token.endsWith('\\')) return 'ends with a backslash (iPXE joins the next script line onto it)';
  return undefined;
}

/** True when `token` passes {@link ipxeTokenProblem}. */
export function isIpxeToken(token: string): boolean {
  return ipxeTokenProblem(token) === undefined;
}

/** `{{ name }}` / `{{ name? }}` placeholders of profile cmdlines (not nunjucks: never code). */
export const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(\?)?\s*\}\}/g;

/** Placeholder names a cmdline may use besides `vars.NAME`. */
export const PLACEHOLDER_NAMES = [
  'address',
  'port',
  'base_url',
  'mac',
  'uuid',
  'arch',
  'platform',
  'hostname',
  'profile',
  'callback_url',
  'facts_token',
] as const;

/** Why a placeholder name is unknown, or undefined when it can be placed. */
export function placeholderProblem(name: string): string | undefined {
  if ((PLACEHOLDER_NAMES as readonly string[]).includes(name)) return undefined;
  if (/^vars\.[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(name)) return undefined;
  return `{{ ${name} }} is not a known placeholder (known: ${PLACEHOLDER_NAMES.join(', ')}, vars.NAME)`;
}

/**
 * Split the string form of a cmdline into arguments the way iPXE will, keeping each
 * `{{ ... }}` placeholder inside the argument it is written in (a placeholder may contain
 * spaces: `{{ vars.x ? }}`). Substitution happens per argument afterwards, so a value can never
 * add an argument.
 */
export function splitCmdline(text: string): string[] {
  const holes: string[] = [];
  const masked = text.replace(PLACEHOLDER, (m) => `\u0001${holes.push(m) - 1}\u0001`);
  return masked
    .split(/[ \t\n\v\f\r]+/)
    .filter((t) => t !== '')
    .map((t) => t.replace(/\u0001(\d+)\u0001/g, (_m, i: string) => holes[Number(i)]!));
}

/** One problem found in a cmdline: where (key or argument index) and why. */
export interface CmdlineIssue {
  path: (string | number)[];
  message: string;
}

/** Placeholders stripped to a neutral character, to check the text around them as a token. */
function withoutPlaceholders(text: string): string {
  return text.replace(PLACEHOLDER, 'x');
}

function placeholderIssues(text: string, path: (string | number)[]): CmdlineIssue[] {
  const out: CmdlineIssue[] = [];
  for (const m of text.matchAll(PLACEHOLDER)) {
    const p = placeholderProblem(m[1]!);
    if (p) out.push({ path, message: p });
  }
  return out;
}

/**
 * Check a profile cmdline (string form or `{ key: value | "" | [values] }`) as written: every
 * argument must be one iPXE token and every placeholder a known name. Values placed into a
 * placeholder are checked again when rendered (buildCmdline).
 */
export function cmdlineIssues(cmdline: string | Record<string, unknown>): CmdlineIssue[] {
  const issues: CmdlineIssue[] = [];
  if (typeof cmdline === 'string') {
    // Control characters and line breaks are refused before splitting: iPXE would end the line.
    if (CONTROL.test(cmdline)) return [{ path: [], message: 'contains a control character or line break' }];
    splitCmdline(cmdline).forEach((token, i) => {
      const p = ipxeTokenProblem(withoutPlaceholders(token));
      if (p) issues.push({ path: [], message: `argument ${i + 1} ${JSON.stringify(token.slice(0, 60))} ${p}` });
      issues.push(...placeholderIssues(token, []));
    });
    return issues;
  }
  for (const [key, raw] of Object.entries(cmdline)) {
    const values = Array.isArray(raw) ? raw : [raw];
    values.forEach((v, i) => {
      const path = Array.isArray(raw) ? [key, i] : [key];
      const text = String(v);
      const token = text === '' ? key : `${key}=${withoutPlaceholders(text)}`;
      const p = ipxeTokenProblem(token);
      if (p) issues.push({ path, message: `value ${p}` });
      issues.push(...placeholderIssues(text, path));
    });
  }
  return issues;
}

/**
 * Text `echo` prints as written: iPXE would expand `${`, end the command at a `||`, `&&` or `;`
 * word, drop the rest after a word starting with `#`, and join the next line after a final `\`.
 * Those are shown quoted or spaced instead of being replaced by `?`, so a reason stays legible.
 */
export function ipxeEchoText(message: string): string {
  const words = message
    .replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]/g, ' ')
    .replace(/\$\{/g, '$ {')
    .split(/[ \t\n\v\f\r]+/)
    .filter((w) => w !== '')
    .map((w) => (w === '||' || w === '&&' || w === ';' || w.startsWith('#') ? `"${w}"` : w));
  let text = words.join(' ');
  if (text.length > 300) text = `${text.slice(0, 297)}...`;
  return text.endsWith('\\') ? `${text} .` : text;
}
