/**
 * The command line: find the subcommand in the table (src/commands/table.ts), parse its
 * arguments, run it. Usage and setting errors are one line on stderr and exit 2; the only
 * `process.exit` is in bin/appliance.
 */
import { ApplianceError, ConfigError } from './errors.js';
import { EXIT, UsageError, commandHelp, didYouMean, parseCommandArgs, type CliIo, type CommandSpec } from './commands/command.js';
import { COMMANDS, VERSION_COMMAND } from './commands/table.js';
import { SERVE_COMMAND } from './commands/serve.js';

export { EXIT, type CliIo } from './commands/command.js';

/** Errors that name a bad setting or argument (a version tag, a mirror URL): exit 2 like any setting error. */
const SETTING_ERROR_CODES = new Set(['ERR_CONFIG', 'ERR_FETCH_VERSION', 'ERR_FETCH_MIRROR', 'ERR_FETCH_URL']);

/** The top-level `--help`: the commands, then the options of `serve` (the default). */
export function mainHelp(): string {
  const lines = [
    'usage: node bin/appliance [serve] [options]        run the appliance (the default command)',
    '       node bin/appliance COMMAND [options]',
    '',
    'commands:',
  ];
  for (const c of COMMANDS) lines.push(`  ${c.name}`.padEnd(34) + c.summary);
  lines.push('', 'node bin/appliance COMMAND --help shows the options of each; --version prints the version.', '');
  const serve = commandHelp(SERVE_COMMAND, 'serve').split('\n');
  // The serve help without its own usage line.
  lines.push(...serve.slice(serve.findIndex((l) => l === '') + 1));
  return lines.join('\n');
}

/** Resolve `argv` to a command: the command, its path (`fetch ipxe`) and its own arguments. */
export function findCommand(argv: string[]): { command: CommandSpec; path: string; rest: string[] } | 'main-help' | 'version' {
  const first = argv[0];
  if (first === '--version' || first === '-V') return 'version';
  if (first === undefined || first.startsWith('-')) {
    if (first === '--help' || first === '-h') return 'main-help';
    return { command: SERVE_COMMAND, path: 'serve', rest: argv };
  }
  let table: readonly CommandSpec[] = COMMANDS;
  let path = '';
  let rest = argv;
  for (;;) {
    const name = rest[0];
    const found = table.find((c) => c.name === name);
    if (!found || name === undefined) {
      const where = path === '' ? '' : `${path} `;
      if (name === undefined || name === '--help' || name === '-h') throw new HelpRequest(path);
      const guess = didYouMean(
        name,
        table.map((c) => c.name),
      );
      throw new UsageError(
        `unknown command "${where}${name}"${guess ? `; did you mean "${where}${guess}"?` : ''} (commands: ${table.map((c) => `${where}${c.name}`).join(', ')})`,
      );
    }
    path = path === '' ? found.name : `${path} ${found.name}`;
    rest = rest.slice(1);
    if (!found.subcommands) return { command: found, path, rest };
    table = found.subcommands;
  }
}

/** `fetch` or `fetch --help` on a group: print the group's help. */
class HelpRequest extends Error {
  constructor(readonly path: string) {
    super(path);
  }
}

function groupAt(path: string): CommandSpec | undefined {
  let table: readonly CommandSpec[] = COMMANDS;
  let found: CommandSpec | undefined;
  for (const name of path.split(' ')) {
    found = table.find((c) => c.name === name);
    table = found?.subcommands ?? [];
  }
  return found;
}

/**
 * Run the command line. Resolves with the exit code for a command that finishes; for the server it
 * resolves only when a signal has stopped it.
 */
export async function main(io: CliIo, signals: NodeJS.EventEmitter = process): Promise<number> {
  const write = (stream: NodeJS.WritableStream, text: string) => stream.write(text.endsWith('\n') ? text : text + '\n');
  try {
    let found;
    try {
      found = findCommand(io.argv);
    } catch (err) {
      if (!(err instanceof HelpRequest)) throw err;
      const group = groupAt(err.path)!;
      // `fetch` alone is incomplete (exit 2); `fetch --help` asked for it (exit 0).
      const asked = io.argv.includes('--help') || io.argv.includes('-h');
      write(asked ? io.stdout : io.stderr, commandHelp(group, err.path));
      return asked ? EXIT.ok : EXIT.usage;
    }
    if (found === 'main-help') {
      write(io.stdout, mainHelp());
      return EXIT.ok;
    }
    if (found === 'version') found = { command: VERSION_COMMAND, path: 'version', rest: [] };
    const { command, path, rest } = found;
    const args = parseCommandArgs(command, path, rest, io, signals);
    if (args === 'help') {
      write(io.stdout, path === 'serve' && io.argv[0] !== 'serve' ? mainHelp() : commandHelp(command, path));
      return EXIT.ok;
    }
    return await command.run!(args);
  } catch (err) {
    if (err instanceof ConfigError || (err instanceof ApplianceError && SETTING_ERROR_CODES.has(err.code))) {
      write(io.stderr, `appliance: ${err.message}`);
      return EXIT.usage;
    }
    // Expected failures (an unreachable mirror) get their message, not a stack trace.
    write(io.stderr, `appliance: ${err instanceof ApplianceError ? err.message : ((err as Error).stack ?? String(err))}`);
    return EXIT.failure;
  }
}
