/** `serve` (the default command): run the appliance until SIGINT/SIGTERM; SIGHUP reloads. */
import { closeSync, openSync } from 'node:fs';
import { ApplianceError } from '../errors.js';
import type { Appliance } from '../appliance.js';
import { OPTIONS, loadConfig, type Config } from '../config.js';
import { createLogOutput, type LogOutput } from '../log.js';
import { EXIT, type CommandArgs, type CommandSpec } from './command.js';

/** The serve command's table entry: it reads every setting. */
export const SERVE_COMMAND: CommandSpec = {
  name: 'serve',
  summary: 'run the appliance: ProxyDHCP/DHCP, TFTP and HTTP (the default command)',
  description:
    'Run the appliance: ProxyDHCP (or a DHCP server), TFTP and HTTP, until SIGINT or SIGTERM.\n' +
    'SIGHUP re-reads the database and templates now and reopens --log-file, logging what changed;\n' +
    'started on a terminal, it stops when that terminal closes (run it under systemd, setsid or tmux to keep it).',
  settings: OPTIONS.map((s) => s.key),
  epilog: 'exit codes: 0 stopped by SIGINT/SIGTERM, 1 runtime failure (e.g. a port cannot be bound), 2 invalid settings',
  run: runServe,
};

/** Codes of setting errors that can only be found at start; they exit 2 like any other. */
const SETTING_ERRORS = new Set(['ERR_CONFIG', 'ERR_DHCP_CONFIG', 'ERR_DHCP_RANGE']);

async function runServe(args: CommandArgs): Promise<number> {
  const config = loadConfig({ flags: args.settingFlags, env: args.io.env, cwd: args.io.cwd, configFile: args.configFile });
  const { checkServerModeSettings } = await import('../appliance.js');
  checkServerModeSettings(config);
  const output = createLogOutput({
    level: config.logLevel,
    format: config.logFormat,
    destination: args.io.stdout,
    ...(config.logFile !== undefined ? { file: config.logFile } : {}),
  });
  // With --interface, DHCP hears only that interface: re-run under scripts/bind-device (dhcp/confine.ts).
  const { planConfinement, runConfined } = await import('../dhcp/confine.js');
  const plan = planConfinement(config);
  if (plan.confine) {
    output.log.info({ interface: plan.interface }, `confining dhcp to ${plan.interface}: running under scripts/bind-device (--no-strict-interface opts out)`);
    await output.flush();
    return await runConfined(plan, args.io.argv, args.io.env, args.signals);
  }
  // A crash outside the paths below (an uncaught exception) still writes out the queued lines.
  const onExit = (): void => output.flushSync();
  process.once('exit', onExit);
  try {
    return await runServer(config, output, args.signals);
  } catch (err) {
    // Expected failures (a port that cannot be bound) get their message, not a stack trace.
    if (err instanceof ApplianceError) output.log.fatal({ code: err.code, ...err.detail }, err.message);
    else output.log.fatal({ err }, 'appliance failed');
    // A setting found wrong only at start (a dhcp range outside the subnet) is still a setting error.
    return err instanceof ApplianceError && SETTING_ERRORS.has(err.code) ? EXIT.usage : EXIT.failure;
  } finally {
    // The last lines ("stopped", or the fatal one) are in the file before the process exits.
    await output.flush();
    process.off('exit', onExit);
  }
}

/** True when this process has a controlling terminal it can still open. */
export function hasControllingTerminal(): boolean {
  try {
    closeSync(openSync('/dev/tty', 'r'));
    return true;
  } catch {
    // ENXIO: no controlling terminal, or the kernel took it away when the terminal hung up.
    return false;
  }
}

async function runServer(config: Config, output: LogOutput, signals: NodeJS.EventEmitter): Promise<number> {
  const { log } = output;
  // A SIGHUP is either `kill -HUP` (reload, as dnsmasq does) or the terminal the appliance was
  // started on closing. In the second case the kernel has already detached the terminal, so
  // /dev/tty no longer opens: stop then, or an orphan would keep ports 67, 69 and 8080 and the
  // next start would fail to bind. Under systemd, setsid or nohup's redirected output there is no
  // terminal to lose, and SIGHUP always reloads.
  const onTerminal = Boolean(process.stdout.isTTY || process.stderr.isTTY) && hasControllingTerminal();
  return new Promise<number>((resolveExit, rejectExit) => {
    // The handlers are in place before start(): a signal while the stores open, the ports bind
    // or the DHCP probe listens would otherwise kill the process with the state store's writes
    // and the lease journal unflushed. Such a stop waits for start() to settle (start() itself
    // closes what it opened when it fails), then closes everything; a second signal exits at once.
    let phase: 'starting' | 'running' | 'stopping' = 'starting';
    let reloadAfterStart = false;
    let appliance: Appliance | undefined;
    const detach = (): void => {
      signals.off('SIGINT', onSignal);
      signals.off('SIGTERM', onSignal);
      signals.off('SIGHUP', onHangup);
    };
    const finish = (code: number): void => {
      detach();
      resolveExit(code);
    };
    const stop = (): void => {
      (appliance ? appliance.stop() : Promise.resolve()).then(
        () => {
          log.info('stopped');
          finish(EXIT.ok);
        },
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          finish(EXIT.failure);
        },
      );
    };
    function onSignal(signal: string): void {
      if (phase === 'stopping') {
        log.warn({ signal }, 'second signal: exiting without waiting for sockets to close');
        finish(EXIT.failure);
        return;
      }
      const starting = phase === 'starting';
      phase = 'stopping';
      if (starting) {
        log.info({ signal, during: 'startup' }, 'stopping: closing what has started once startup settles (a second signal exits at once)');
        return;
      }
      log.info({ signal }, 'stopping');
      stop();
    }
    const reload = (): void => {
      output.reopen();
      appliance!.reload().then(
        (changes) => log.info({ signal: 'SIGHUP', ...changes }, 'reloaded'),
        (err: unknown) => log.error({ err }, 'reload failed; still serving the last good state'),
      );
    };
    // dnsmasq's habit: SIGHUP re-reads what the operator edited, without dropping anything.
    function onHangup(): void {
      if (onTerminal && !hasControllingTerminal()) {
        log.info({ signal: 'SIGHUP' }, 'the terminal closed: stopping (run under systemd, setsid or tmux to keep the appliance running)');
        onSignal('SIGHUP');
        return;
      }
      if (phase === 'starting') {
        reloadAfterStart = true;
        log.info({ signal: 'SIGHUP', during: 'startup' }, 'reload requested during startup: reloading once started');
        return;
      }
      if (phase === 'running') reload();
    }
    signals.on('SIGINT', onSignal);
    signals.on('SIGTERM', onSignal);
    signals.on('SIGHUP', onHangup);
    import('../appliance.js')
      .then(({ createAppliance }) => {
        appliance = createAppliance(config, { log });
        return appliance.start();
      })
      .then(
        () => {
          if (phase === 'stopping') return stop();
          phase = 'running';
          if (reloadAfterStart) reload();
        },
        (err: unknown) => {
          // A failed start (a port that cannot be bound) has closed what it opened; runServe logs it.
          detach();
          rejectExit(err);
        },
      );
  });
}
