/**
 * Fact selectors: the small expression language groups use to match machines on the facts
 * their discovery agent reported (`selector.facts`, every expression must hold). Pure
 * functions: parse once at write time (a bad expression is refused naming its position),
 * evaluate at boot time with the reason recorded, so the API can say why a group matched.
 *
 * Syntax (one expression per string):
 *
 *     PATH                      the fact exists (is not null)
 *     PATH OP VALUE
 *     PATH  := SEG ("." SEG)*   SEG := a key, an array index (0, 1 ...) or "#"
 *              "list.#" is the length of a list; "list.#.key" is every element's key, and
 *              the expression holds when it holds for ANY element (gjson-style paths)
 *     OP    := == | != | < | <= | > | >= | ~ (glob, case-insensitive; * and ?) | !~
 *     VALUE := a number, optionally with a unit K M G T (powers of 1000) or Ki Mi Gi Ti
 *              (powers of 1024); or "a quoted string" (\" and \\ escapes); or a bare word
 *
 * Examples: `dmi.vendor == QEMU`, `dmi.product ~ "Standard PC*"`, `cpu.count >= 4`,
 * `memory.totalKiB >= 8Mi` (8 GiB, the fact is in KiB), `disks.# >= 2`,
 * `disks.#.sizeBytes > 100G`, `nics.#.vendor == 0x8086`.
 *
 * Numbers compare numerically (a fact that is a numeric string counts as a number); `==` and
 * `!=` compare strings exactly otherwise; ordering against a non-number does not hold.
 */
import { trimOldest } from '../bounded-map.js';
import { ApplianceError } from '../errors.js';

/** One reported fact value (recursive JSON; schema.ts bounds it by FACTS_LIMITS). */
export type FactValue = string | number | boolean | null | FactValue[] | { [key: string]: FactValue };

/** Comparison operators. */
export type FactOp = '==' | '!=' | '<' | '<=' | '>' | '>=' | '~' | '!~';

/** A parsed expression. */
export interface FactExpr {
  /** The expression as written (for reasons and errors). */
  source: string;
  path: string[];
  /** Absent for an existence test. */
  op?: FactOp;
  /** The value as written (string) and, when it reads as one, as a number. */
  value?: { text: string; number?: number };
}

/** Longest expression accepted, and most expressions per group. */
export const FACT_SELECTOR_LIMITS = { length: 256, expressions: 32, segments: 8 } as const;

const UNITS: Record<string, number> = { K: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };

function fail(source: string, at: number, message: string): never {
  throw new ApplianceError('ERR_SELECTOR', `fact selector ${JSON.stringify(source)}: ${message} at character ${at + 1}`, {
    selector: source,
    position: at + 1,
  });
}

/** Read a number with an optional unit; undefined when `text` is not one. */
export function parseFactNumber(text: string): number | undefined {
  const m = /^(-?(?:\d+(?:\.\d+)?|\.\d+))(K|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(text.replace(/_/g, ''));
  if (!m) return undefined;
  return Number(m[1]) * (m[2] ? UNITS[m[2]]! : 1);
}

/** Parse one expression; throws ERR_SELECTOR naming the position of the problem. */
export function parseFactSelector(source: string): FactExpr {
  if (source.length > FACT_SELECTOR_LIMITS.length) fail(source, FACT_SELECTOR_LIMITS.length, `longer than ${FACT_SELECTOR_LIMITS.length} characters`);
  const s = source;
  let i = 0;
  const skip = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  skip();
  const pathStart = i;
  while (i < s.length && /[A-Za-z0-9_.:@#-]/.test(s[i]!)) i++;
  const rawPath = s.slice(pathStart, i);
  if (rawPath === '') fail(source, i, 'expected a fact path such as dmi.vendor');
  const path = rawPath.split('.');
  if (path.some((seg) => seg === '')) fail(source, pathStart, 'empty path segment');
  if (path.length > FACT_SELECTOR_LIMITS.segments) fail(source, pathStart, `more than ${FACT_SELECTOR_LIMITS.segments} path segments`);
  if (path.some((seg) => seg.includes('#') && seg !== '#')) fail(source, pathStart, '"#" must be a whole path segment (list.# or list.#.key)');
  skip();
  if (i === s.length) return { source, path };
  const opMatch = /^(==|!=|<=|>=|!~|<|>|~)/.exec(s.slice(i));
  if (!opMatch) fail(source, i, 'expected an operator (== != < <= > >= ~ !~)');
  const op = opMatch[1] as FactOp;
  i += op.length;
  skip();
  let text: string;
  if (s[i] === '"') {
    let out = '';
    i++;
    for (;;) {
      if (i >= s.length) fail(source, i, 'unterminated quoted string');
      const c = s[i]!;
      if (c === '"') break;
      if (c === '\\') {
        const n = s[i + 1];
        if (n !== '"' && n !== '\\') fail(source, i, 'only \\" and \\\\ are escapes');
        out += n;
        i += 2;
        continue;
      }
      out += c;
      i++;
    }
    i++;
    text = out;
  } else {
    const start = i;
    while (i < s.length && !/\s/.test(s[i]!)) i++;
    text = s.slice(start, i);
    if (text === '') fail(source, i, 'expected a value');
    if (text.includes('"')) fail(source, start, 'a value with quotes must be a whole "quoted string"');
  }
  skip();
  if (i !== s.length) fail(source, i, 'unexpected text after the value (quote values that contain spaces)');
  const number = parseFactNumber(text);
  if ((op === '<' || op === '<=' || op === '>' || op === '>=') && number === undefined) fail(source, i, `${op} needs a number`);
  return { source, path, op, value: number === undefined ? { text } : { text, number } };
}

/** Every value `path` reaches in `facts` (several through `#` over a list). */
export function factValues(facts: FactValue | undefined, path: readonly string[]): FactValue[] {
  let current: FactValue[] = facts === undefined ? [] : [facts];
  for (let k = 0; k < path.length; k++) {
    const seg = path[k]!;
    const next: FactValue[] = [];
    for (const v of current) {
      if (seg === '#') {
        if (!Array.isArray(v)) continue;
        // "list.#" at the end is the count; in the middle it fans out over the elements.
        if (k === path.length - 1) next.push(v.length);
        else next.push(...v);
      } else if (Array.isArray(v)) {
        if (/^\d+$/.test(seg) && Number(seg) < v.length) next.push(v[Number(seg)]!);
      } else if (v !== null && typeof v === 'object' && Object.hasOwn(v, seg)) {
        next.push(v[seg]!);
      }
    }
    current = next;
  }
  return current.filter((v) => v !== null);
}

function asNumber(v: FactValue): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return parseFactNumber(v.trim());
  return undefined;
}

/** Glob match (`*` any run, `?` one character), case-insensitive, linear time. */
export function globMatch(pattern: string, text: string): boolean {
  const p = pattern.toLowerCase();
  const t = text.toLowerCase();
  let pi = 0;
  let ti = 0;
  let star = -1;
  let mark = 0;
  while (ti < t.length) {
    if (pi < p.length && (p[pi] === '?' || p[pi] === t[ti])) {
      pi++;
      ti++;
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++;
      mark = ti;
    } else if (star >= 0) {
      pi = star + 1;
      ti = ++mark;
    } else return false;
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}

function holds(expr: FactExpr, v: FactValue): boolean {
  const { op, value } = expr;
  if (op === undefined || value === undefined) return true;
  const n = asNumber(v);
  const scalar = typeof v === 'object' ? JSON.stringify(v) : String(v);
  switch (op) {
    case '==':
      return value.number !== undefined && n !== undefined ? n === value.number : scalar === value.text;
    case '!=':
      return value.number !== undefined && n !== undefined ? n !== value.number : scalar !== value.text;
    case '<':
      return n !== undefined && n < value.number!;
    case '<=':
      return n !== undefined && n <= value.number!;
    case '>':
      return n !== undefined && n > value.number!;
    case '>=':
      return n !== undefined && n >= value.number!;
    case '~':
      return typeof v !== 'object' && globMatch(value.text, scalar);
    case '!~':
      return typeof v !== 'object' && !globMatch(value.text, scalar);
  }
}

/** The outcome of one expression against one machine's facts, with what was seen. */
export interface FactCheck {
  expr: string;
  matched: boolean;
  /** `dmi.vendor == QEMU (got "QEMU")` or `cpu.count >= 4 (got 1)` / `(no such fact)`. */
  reason: string;
}

function shown(values: FactValue[]): string {
  if (values.length === 0) return 'no such fact';
  const parts = values.slice(0, 4).map((v) => JSON.stringify(v).slice(0, 80));
  return `got ${parts.join(', ')}${values.length > 4 ? `, ... (${values.length} values)` : ''}`;
}

/**
 * Evaluate one parsed expression. A `!=`/`!~` over a fanned-out list holds when some element
 * differs; write `list.# == 0` to test for an empty list.
 */
export function checkFact(expr: FactExpr, facts: FactValue | undefined): FactCheck {
  const values = factValues(facts, expr.path);
  const matched = values.some((v) => holds(expr, v));
  return { expr: expr.source, matched, reason: `${expr.source.trim()} (${shown(values)})` };
}

/** Distinct expressions {@link parseFactSelectorCached} keeps (the operator's, so few; bounded anyway). */
export const FACT_SELECTOR_CACHE_MAX = 1024;
const parsedSelectors = new Map<string, FactExpr | Error>();

/**
 * parseFactSelector through a bounded cache: a group selection runs on every boot request and
 * console list, and the expressions change only with the database. A parsed expression is
 * never changed by its readers; a parse error is thrown again as the same error.
 */
export function parseFactSelectorCached(source: string): FactExpr {
  let hit = parsedSelectors.get(source);
  if (hit === undefined) {
    try {
      hit = parseFactSelector(source);
    } catch (err) {
      hit = err as Error;
    }
    parsedSelectors.set(source, hit);
    trimOldest(parsedSelectors, FACT_SELECTOR_CACHE_MAX);
  }
  if (hit instanceof Error) throw hit;
  return hit;
}

/** Check every expression (all must hold); parse errors count as not matching. */
export function checkFacts(sources: readonly string[], facts: FactValue | undefined): { matched: boolean; checks: FactCheck[] } {
  const checks = sources.map((src): FactCheck => {
    try {
      return checkFact(parseFactSelectorCached(src), facts);
    } catch (err) {
      return { expr: src, matched: false, reason: (err as Error).message };
    }
  });
  return { matched: checks.every((c) => c.matched), checks };
}
