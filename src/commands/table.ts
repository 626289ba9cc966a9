/**
 * The subcommand table: `node bin/appliance COMMAND ...`. One entry per command (groups such as
 * `fetch` list theirs in `subcommands`); help, parsing and "did you mean" are derived from it.
 * `serve` runs when no command is named.
 */
import { versionInfo } from '../version.js';
import { EXIT, type CommandSpec } from './command.js';
import { BUILD_COMMAND } from '../image/command.js';
import { FETCH_COMMAND } from './fetch.js';
import { IMPORT_COMMAND } from './import.js';
import { EVENTS_COMMAND, MACHINES_COMMAND, STATUS_COMMAND } from './remote.js';
import { SERVE_COMMAND } from './serve.js';
import { LAB_COMMAND } from '../lab/command.js';

/** `version` (also `--version`). */
export const VERSION_COMMAND: CommandSpec = {
  name: 'version',
  summary: 'print the appliance version (also --version)',
  async run(args) {
    const v = versionInfo();
    args.io.stdout.write(`${v.name} ${v.version} (node ${v.node})\n`);
    return EXIT.ok;
  },
};

/** Every top-level command, in the order `--help` lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  SERVE_COMMAND,
  FETCH_COMMAND,
  IMPORT_COMMAND,
  BUILD_COMMAND,
  LAB_COMMAND,
  STATUS_COMMAND,
  MACHINES_COMMAND,
  EVENTS_COMMAND,
  VERSION_COMMAND,
];
