/**
 * `import DIR`: a bootcfg or matchbox data directory into the database, through the validated
 * file store (every write-time rule applies), reporting what it could not convert.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { EXIT, LOG_SETTINGS, UsageError, loadCommandConfig, type CommandSpec } from './command.js';

/** `import`. */
export const IMPORT_COMMAND: CommandSpec = {
  name: 'import',
  summary: 'import a bootcfg or matchbox data directory into --db, reporting what could not be converted',
  description:
    'Read DIR as a matchbox data directory (profiles/, groups/, ignition/, cloud/, generic/) or a\n' +
    'CoreOS bootcfg one (boot/ and cloud/, each with default, uuid/<UUID>, mac/<MAC>) and write its\n' +
    'profiles, groups and machines into --db through the same validation as the API. Templates\n' +
    'without Go template syntax are copied into --templates (never over an existing file). Prints a\n' +
    'JSON report on stdout: what was written and every problem.',
  args: 'DIR',
  maxPositionals: 1,
  settings: ['db', 'templates', ...LOG_SETTINGS],
  epilog: 'exit codes: 0 everything converted, 1 something was not (see "problems"), 2 usage',
  async run(args) {
    const dir = args.positionals[0];
    if (dir === undefined) throw new UsageError('import needs the data directory: node bin/appliance import DIR');
    const { config, log } = loadCommandConfig(args, ['db', 'templates']);
    const { planImport } = await import('../store/import.js');
    const { openFileStore } = await import('../store/file-store.js');
    let plan;
    try {
      plan = await planImport(path.resolve(args.io.cwd, dir));
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const problems = [...plan.problems];
    const written: string[] = [];
    for (const [name, text] of Object.entries(plan.templates)) {
      const target = path.join(config.templates, name);
      if (existsSync(target)) problems.push(`template ${name} already exists in ${config.templates}; kept the existing one`);
      else {
        await writeFile(target, text, { flag: 'wx' });
        written.push(`template ${name}`);
      }
    }
    const store = await openFileStore({ path: config.db, log, watch: false, templatesDir: config.templates });
    try {
      const put = async (what: string, key: string, write: () => Promise<unknown>) => {
        try {
          await write();
          written.push(`${what} ${key}`);
        } catch (err) {
          problems.push(`${what} ${key}: ${(err as Error).message}`);
        }
      };
      for (const p of plan.profiles) await put('profile', String(p['id']), () => store.putProfile(p));
      for (const g of plan.groups) await put('group', String(g['id']), () => store.putGroup(g));
      for (const m of plan.machines) await put('machine', String(m['mac']), () => store.putMachine(m));
      if (plan.defaultProfile !== undefined) await put('default profile', plan.defaultProfile, () => store.setDefaultProfileId(plan.defaultProfile));
    } finally {
      await store.close();
    }
    args.io.stdout.write(`${JSON.stringify({ layout: plan.layout, db: config.db, written, problems }, null, 2)}\n`);
    return problems.length === 0 ? EXIT.ok : EXIT.failure;
  },
};
