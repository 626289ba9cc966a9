/**
 * The shape every subcommand has: one declaration (name, summary, the appliance settings it
 * reads, its own flags, its subcommands) from which argument parsing, `--help`, "did you mean"
 * and the settings it validates are all derived. Add a command by adding one CommandSpec to the
 * table in `table.ts` (or to a group's `subcommands`).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from '../errors.js';
import { envName, loadConfig, OPTIONS, type Config, type OptionSpec, type SettingKey } from '../config.js';
import { createLogOutput, type Logger } from '../log.js';

/** What a command needs from the outside world; injectable so tests run it in-process. */
export interface CliIo {
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  cwd: string;
}

/** Exit codes: 0 done (or stopped by SIGINT/SIGTERM), 1 runtime failure, 2 invalid settings or usage. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** A flag of the command itself (not an appliance setting). */
export interface FlagSpec {
  name: string;
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  /** Placeholder shown in help, e.g. `URL`. */
  arg?: string;
  /** Help text; each further line (after a newline) is shown under the first. */
  help: string;
  /** Heading the flag is listed under in `--help` (flags keep their order; default `options`). */
  section?: string;
}

/** Parsed arguments handed to a command's `run`. */
export interface CommandArgs {
  /** Own flags by name (`no-download`), strings or booleans (arrays for `multiple`). */
  flags: Record<string, string | boolean | string[] | undefined>;
  /** Appliance settings given as flags, by flag name, as strings (for loadConfig). */
  settingFlags: Record<string, string | undefined>;
  /** `--config PATH`, when given. */
  configFile: string | undefined;
  positionals: string[];
  io: CliIo;
  signals: NodeJS.EventEmitter;
}

/** One subcommand. */
export interface CommandSpec {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** A paragraph for its own `--help`. */
  description?: string;
  /** Positional arguments for the usage line, e.g. `[MAC]`. */
  args?: string;
  /** Most positionals accepted (default 0). */
  maxPositionals?: number;
  /** Appliance settings it reads (flags, APPLIANCE_* and file keys); only these are accepted as flags and validated. */
  settings?: readonly SettingKey[];
  flags?: readonly FlagSpec[];
  subcommands?: readonly CommandSpec[];
  /** Extra lines at the end of its help (examples, exit codes). */
  epilog?: string;
  run?(args: CommandArgs): Promise<number>;
}

/** The two settings every command that logs reads (`--log-level`, `--log-format`). */
export const LOG_SETTINGS = ['logLevel', 'logFormat'] as const;

/**
 * The settings `keys` of a command from its flags, the environment and the settings file
 * (validated once; nothing else is read or checked), and a logger on stderr set by
 * `--log-level` / `--log-format`. List the same keys plus LOG_SETTINGS in the command's
 * `settings` so they are accepted as flags and shown in its help.
 */
export function loadCommandConfig<K extends SettingKey>(
  args: CommandArgs,
  keys: readonly K[],
): { config: Pick<Config, K | (typeof LOG_SETTINGS)[number] | 'sources'>; log: Logger } {
  const config = loadConfig({ keys: [...keys, ...LOG_SETTINGS], flags: args.settingFlags, env: args.io.env, cwd: args.io.cwd, configFile: args.configFile });
  const { log } = createLogOutput({ level: config.logLevel, format: config.logFormat, destination: args.io.stderr });
  return { config, log };
}

/** A usage error: one line on stderr, exit 2. */
export class UsageError extends ConfigError {}

/** Levenshtein distance, for "did you mean". */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** The closest of `candidates` to `word`, when it is close enough to be a typo. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 2 ? 0.5 : editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

/** The settings specs of a command, in OPTIONS order. */
export function settingSpecs(command: CommandSpec): OptionSpec[] {
  const keys = new Set<string>(command.settings ?? []);
  return OPTIONS.filter((s) => keys.has(s.key));
}

const HELP_FLAG: FlagSpec = { name: 'help', type: 'boolean', short: 'h', help: 'show this help' };
const CONFIG_FLAG: FlagSpec = { name: 'config', type: 'string', arg: 'PATH', help: 'settings file [default: config/appliance.json]; env APPLIANCE_CONFIG' };

/** Every flag a command accepts: its own, its settings, --config (with settings) and --help. */
export function acceptedFlags(command: CommandSpec): FlagSpec[] {
  const settings = settingSpecs(command).map((s): FlagSpec => ({ name: s.flag, type: s.kind === 'bool' ? 'boolean' : 'string', help: s.help }));
  return [...(command.flags ?? []), ...settings, ...(settings.length > 0 ? [CONFIG_FLAG] : []), HELP_FLAG];
}

/**
 * Parse `argv` (after the command's name) against the command's table. Throws UsageError with
 * one line ("unknown option --htp-port; did you mean --http-port?") on a bad argument.
 */
export function parseCommandArgs(command: CommandSpec, path: string, argv: string[], io: CliIo, signals: NodeJS.EventEmitter): CommandArgs | 'help' {
  const flags = acceptedFlags(command);
  const options: ParseArgsConfig['options'] = {};
  for (const f of flags) options[f.name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  let parsed: { values: Record<string, string | boolean | Array<string | boolean> | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(parseErrorMessage(err as Error & { code?: string }, flags, path));
  }
  if (parsed.values.help === true) return 'help';
  const max = command.maxPositionals ?? 0;
  if (parsed.positionals.length > max) {
    const extra = parsed.positionals[max]!;
    throw new UsageError(`${path}: unexpected argument "${extra}"${max === 0 ? ' (it takes none)' : ''}; see ${path} --help`);
  }
  const settingFlags: Record<string, string | undefined> = {};
  for (const spec of settingSpecs(command)) {
    const v = parsed.values[spec.flag];
    if (typeof v === 'string') settingFlags[spec.flag] = v;
    else if (v === true) settingFlags[spec.flag] = 'true';
  }
  const own: CommandArgs['flags'] = {};
  for (const f of command.flags ?? []) own[f.name] = parsed.values[f.name] as string | boolean | string[] | undefined;
  const configFile = typeof parsed.values.config === 'string' ? parsed.values.config : undefined;
  return { flags: own, settingFlags, configFile, positionals: parsed.positionals, io, signals };
}

/**
 * One line for a `util.parseArgs` error, with a guess from `flags` ("unknown option --vsm; did you
 * mean --vms?").
 */
function parseErrorMessage(err: Error & { code?: string }, flags: readonly FlagSpec[], path: string): string {
  // Node's texts name the option in quotes and add advice about `--`; say it in one line instead.
  const name = /'(-[^' ]+)/.exec(err.message)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && name !== undefined) {
    const bare = name.replace(/^-+/, '').split('=')[0]!;
    const guess = didYouMean(
      bare,
      flags.map((f) => f.name),
    );
    if (guess === undefined && OPTIONS.some((o) => o.flag === bare)) return `${path}: --${bare} does not apply to ${path} (see ${path} --help)`;
    return `${path}: unknown option ${name}${guess ? `; did you mean --${guess}?` : ''} (see ${path} --help)`;
  }
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && name !== undefined) {
    const flag = flags.find((f) => `--${f.name}` === name || (f.short !== undefined && `-${f.short}` === name));
    return flag?.type === 'boolean' ? `${path}: ${name} takes no value` : `${path}: ${name} needs a value${flag?.arg ? ` (${flag.arg})` : ''}`;
  }
  return `${path}: ${err.message.replace(/^./, (c) => c.toLowerCase())}`;
}

const ARG_NAMES: Record<OptionSpec['kind'], string> = {
  enum: '',
  port: 'N',
  int: 'N',
  ipv4: 'IP',
  ipv4list: 'IP[,IP]',
  range: 'START-END',
  ipv6: 'IP6',
  ipv6list: 'IP6[,IP6]',
  range6: 'START-END',
  string: 'VALUE',
  bool: '',
  path: 'PATH',
  dir: 'DIR',
};

/** Help lines are wrapped to this width (the text column starts at 34). */
const HELP_WIDTH = 100;

/** `text` split at its newlines and wrapped at spaces to fit the help column. */
function wrap(text: string, width = HELP_WIDTH - 34): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    // A table row ("  name    text") continues under its text, any other line under its start.
    const head = /^ *\S+ {2,}/.exec(line)?.[0] ?? /^ */.exec(line)![0];
    let current = head;
    let fresh = true;
    for (const word of line.slice(head.length).split(' ')) {
      if (!fresh && current.length + 1 + word.length > width) {
        out.push(current);
        current = ' '.repeat(head.length) + word;
      } else current = fresh ? current + word : `${current} ${word}`;
      fresh = false;
    }
    out.push(current);
  }
  return out;
}

function row(head: string, text: string): string[] {
  const [first = '', ...more] = wrap(text);
  const rest = more.map((line) => ' '.repeat(34) + line);
  // A long head gets its own line, so the help column stays aligned.
  return head.length >= 33 ? [head, ' '.repeat(34) + first, ...rest] : [head.padEnd(34) + first, ...rest];
}

/** The `--help` text of `command`, reached as `path` (e.g. `fetch ipxe`). */
export function commandHelp(command: CommandSpec, path: string, program = 'node bin/appliance'): string {
  const lines: string[] = [];
  if (command.subcommands && command.subcommands.length > 0) {
    lines.push(`usage: ${program} ${path} COMMAND [options]`, '');
    if (command.description) lines.push(command.description, '');
    lines.push('commands:');
    for (const sub of command.subcommands) lines.push(...row(`  ${sub.name}`, sub.summary));
    lines.push('', `${program} ${path} COMMAND --help shows the options of each.`);
    return lines.join('\n');
  }
  lines.push(`usage: ${program} ${path}${command.args ? ' ' + command.args : ''} [options]`, '');
  lines.push(command.description ?? command.summary, '');
  if (command.flags && command.flags.length > 0) {
    let section: string | undefined;
    for (const f of command.flags) {
      const heading = f.section ?? 'options';
      if (heading !== section) {
        if (section !== undefined) lines.push('');
        lines.push(`${heading}:`);
        section = heading;
      }
      lines.push(...row(`  ${f.short ? `-${f.short}, ` : ''}--${f.name}${f.arg ? ' ' + f.arg : ''}`, f.help));
    }
    lines.push('');
  }
  const settings = settingSpecs(command);
  if (settings.length > 0) {
    lines.push('settings (each also as APPLIANCE_<NAME> in the environment and as a key in');
    lines.push('config/appliance.json; flags win over environment, environment over file, file over defaults):');
    for (const spec of settings) {
      const arg = spec.kind === 'enum' ? spec.values!.join('|') : ARG_NAMES[spec.kind];
      const def = spec.default !== undefined ? ` [default: ${spec.default}]` : '';
      lines.push(...row(`  --${spec.flag}${arg ? ' ' + arg : ''}`, spec.help + def));
      lines.push(' '.repeat(34) + `env ${envName(spec)}, file key "${spec.key}"`);
    }
    lines.push(...row(`  --config PATH`, CONFIG_FLAG.help));
  }
  lines.push(...row('  -h, --help', HELP_FLAG.help));
  if (command.epilog) lines.push('', command.epilog);
  return lines.join('\n');
}
