import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ApplianceError, ConfigError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import { OPTIONS, helpText, loadConfig, type Config } from './config.js';

/** What the CLI needs from the outside world; injectable so tests run it in-process. */
export interface CliIo {
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  cwd: string;
}

/** Exit codes: 0 clean stop, 1 runtime failure, 2 invalid configuration or usage. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** Split `argv` into option flags (by name, without `--`) and positionals, refusing unknown flags. */
export function parseFlags(argv: string[], extra: Record<string, { type: 'string' | 'boolean'; short?: string }> = {}) {
  const options: ParseArgsConfig['options'] = { help: { type: 'boolean', short: 'h' }, config: { type: 'string' }, ...extra };
  for (const spec of OPTIONS) options[spec.flag] = { type: spec.kind === 'bool' ? 'boolean' : 'string' };
  try {
    const parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals };
  } catch (err) {
    // parseArgs messages name the option ("Unknown option '--htp-port'"); keep them, lowercased.
    const message = (err as Error).message.replace(/^./, (c) => c.toLowerCase());
    throw new ConfigError(`${message}; see --help`);
  }
}

function settingFlags(values: Record<string, string | boolean | undefined>): Record<string, string | undefined> {
  const flags: Record<string, string | undefined> = {};
  for (const spec of OPTIONS) {
    const v = values[spec.flag];
    if (typeof v === 'string') flags[spec.flag] = v;
    else if (v === true) flags[spec.flag] = 'true';
  }
  return flags;
}

/**
 * Run the command line. Resolves with the exit code for a command that finishes; for the server it
 * resolves only when a signal has stopped it. The only `process.exit` is in bin/appliance.
 */
export async function main(io: CliIo, signals: NodeJS.EventEmitter = process): Promise<number> {
  const write = (stream: NodeJS.WritableStream, text: string) => stream.write(text.endsWith('\n') ? text : text + '\n');
  let log: Logger | undefined;
  try {
    const sub = io.argv[0];
    if (sub === 'fetch') return await runFetch(io, write);
    if (sub === 'lab') {
      const { runLabCommand } = await import('./lab/command.js');
      return await runLabCommand(io.argv.slice(1), io, signals);
    }
    const { values, positionals } = parseFlags(io.argv);
    if (values.help) {
      write(io.stdout, helpText());
      return EXIT.ok;
    }
    if (positionals.length > 0) throw new ConfigError(`unknown command "${positionals[0]}"; commands: fetch ipxe, fetch rancheros, lab; see --help`);
    const config = loadConfig({ flags: settingFlags(values), env: io.env, cwd: io.cwd, configFile: values.config as string | undefined });
    log = createLogger({ level: config.logLevel, destination: io.stdout });
    return await runServer(config, log, signals);
  } catch (err) {
    if (err instanceof ConfigError) {
      write(io.stderr, `appliance: ${err.message}`);
      return EXIT.usage;
    }
    // Expected failures (a port that cannot be bound) get their message, not a stack trace.
    if (log && err instanceof ApplianceError) log.fatal({ code: err.code, ...err.detail }, err.message);
    else if (log) log.fatal({ err }, 'appliance failed');
    else write(io.stderr, `appliance: ${err instanceof ApplianceError ? err.message : (err as Error).stack ?? String(err)}`);
    return EXIT.failure;
  }
}

async function runServer(config: Config, log: Logger, signals: NodeJS.EventEmitter): Promise<number> {
  const { createAppliance } = await import('./appliance.js');
  const appliance = createAppliance(config, { log });
  await appliance.start();
  return new Promise<number>((resolveExit) => {
    let stopping = false;
    const onSignal = (signal: string) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting without waiting for sockets to close');
        resolveExit(EXIT.failure);
        return;
      }
      stopping = true;
      log.info({ signal }, 'stopping');
      appliance.stop().then(
        () => {
          log.info('stopped');
          signals.off('SIGINT', onSignal);
          signals.off('SIGTERM', onSignal);
          resolveExit(EXIT.ok);
        },
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          resolveExit(EXIT.failure);
        },
      );
    };
    signals.on('SIGINT', onSignal);
    signals.on('SIGTERM', onSignal);
  });
}

async function runFetch(io: CliIo, write: (s: NodeJS.WritableStream, t: string) => void): Promise<number> {
  const what = io.argv[1];
  const { values } = parseFlags(io.argv.slice(2), { 'no-download': { type: 'boolean' }, mirror: { type: 'string' }, version: { type: 'string' } });
  if (values.help || (what !== 'ipxe' && what !== 'rancheros')) {
    write(what === undefined || values.help ? io.stdout : io.stderr, helpText());
    return values.help ? EXIT.ok : EXIT.usage;
  }
  const config = loadConfig({ flags: settingFlags(values), env: io.env, cwd: io.cwd, configFile: values.config as string | undefined, addressOptional: true });
  const log = createLogger({ level: config.logLevel, destination: io.stderr });
  if (what === 'ipxe') {
    const { fetchIpxe } = await import('./fetch/ipxe.js');
    // Files the system ipxe package lacks are downloaded unless --no-download (offline labs).
    const results = await fetchIpxe({ tftpRoot: config.tftpRoot, download: values['no-download'] !== true, ...(typeof values.mirror === 'string' ? { mirror: values.mirror } : {}), log });
    write(io.stdout, JSON.stringify(results, null, 2));
    return EXIT.ok;
  }
  const { fetchRancherOS } = await import('./fetch/rancheros.js');
  const result = await fetchRancherOS({
    assetsDir: config.assets,
    ...(typeof values.version === 'string' ? { version: values.version } : {}),
    ...(typeof values.mirror === 'string' ? { mirror: values.mirror } : {}),
    log,
  });
  write(io.stdout, JSON.stringify(result, null, 2));
  return EXIT.ok;
}
