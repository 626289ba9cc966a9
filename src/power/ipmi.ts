/**
 * Power control through a machine's BMC with ipmitool (IPMI over LAN). The command line is
 * built by a pure function; the password goes to ipmitool through its environment (`-E`,
 * IPMI_PASSWORD), never on the command line where `ps` would show it. Calls to one BMC run
 * one at a time (BMCs handle few sessions) and every call is bounded in time. Errors name
 * the BMC and the step that failed.
 */
import { execFile } from 'node:child_process';
import { ApplianceError } from '../errors.js';
import type { Bmc } from '../store/schema.js';

/** What `POST /api/machines/:mac/power` can do. */
export const POWER_ACTIONS = ['on', 'off', 'cycle', 'reset', 'status'] as const;
export type PowerAction = (typeof POWER_ACTIONS)[number];
/** Next-boot devices (`chassis bootdev`; one-shot: valid for the next boot only). */
export const BOOT_DEVICES = ['pxe', 'disk'] as const;
export type BootDevice = (typeof BOOT_DEVICES)[number];

/** One ipmitool step. */
export type IpmiStep = { power: PowerAction } | { bootdev: BootDevice };

/** The ipmitool command of a step (after the connection arguments). */
export function stepCommand(step: IpmiStep): string[] {
  return 'power' in step ? ['chassis', 'power', step.power] : ['chassis', 'bootdev', step.bootdev];
}

/** How a step is named in errors and logs, e.g. `chassis bootdev pxe`. */
export function stepName(step: IpmiStep): string {
  return stepCommand(step).join(' ');
}

/** `address:port` of a BMC, as errors name it. */
export function bmcName(bmc: Bmc): string {
  return `${bmc.address}:${bmc.port ?? 623}`;
}

/** ipmitool arguments for `step` on `bmc` (password not included: it goes in IPMI_PASSWORD). */
export function ipmitoolArgs(bmc: Bmc, step: IpmiStep): string[] {
  const iface = bmc.interface ?? 'lanplus';
  return [
    '-I',
    iface,
    '-H',
    bmc.address,
    '-p',
    String(bmc.port ?? 623),
    '-U',
    bmc.user,
    '-E',
    ...(iface === 'lanplus' ? ['-C', String(bmc.cipherSuite ?? 3)] : []),
    // ipmitool's own retry and per-try timeout; the process is killed after timeoutMs anyway.
    '-N',
    '3',
    '-R',
    '2',
    ...stepCommand(step),
  ];
}

/** `Chassis Power is on` -> 'on'. */
export function parsePowerStatus(output: string): 'on' | 'off' | undefined {
  const m = /Chassis Power is (on|off)/i.exec(output);
  return m ? (m[1]!.toLowerCase() as 'on' | 'off') : undefined;
}

/** The result of one step. */
export interface IpmiResult {
  step: string;
  output: string;
  /** For `status` (and after on/off), what the BMC reported. */
  power?: 'on' | 'off';
}

/** Runs ipmitool steps against BMCs. */
export interface PowerController {
  run(bmc: Bmc, step: IpmiStep): Promise<IpmiResult>;
}

/** Options for {@link createIpmiPower}. */
export interface IpmiPowerOptions {
  /** ipmitool binary (default `ipmitool`). */
  command?: string;
  /** Most time one step may take (default 30 s). */
  timeoutMs?: number;
  /** Wraps the command, e.g. ['ip', 'netns', 'exec', NS] in tests (default none). */
  prefix?: readonly string[];
}

/** Create the ipmitool-backed controller. */
export function createIpmiPower(options: IpmiPowerOptions = {}): PowerController {
  const command = options.command ?? 'ipmitool';
  const timeoutMs = options.timeoutMs ?? 30_000;
  const prefix = options.prefix ?? [];
  const queues = new Map<string, Promise<unknown>>();

  const exec = (bmc: Bmc, step: IpmiStep): Promise<IpmiResult> =>
    new Promise((resolve, reject) => {
      const argv = [...prefix, command, ...ipmitoolArgs(bmc, step)];
      const env = { ...process.env, IPMI_PASSWORD: bmc.password ?? '' };
      execFile(argv[0]!, argv.slice(1), { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
        const out = String(stdout).trim();
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean };
          const why =
            e.code === 'ENOENT'
              ? `${command} is not installed (apt-get install ipmitool)`
              : e.killed
                ? `no answer within ${timeoutMs / 1000} s`
                : (String(stderr).trim().split('\n').filter(Boolean).slice(-2).join('; ') || out || e.message).slice(0, 400);
          reject(new ApplianceError('ERR_BMC', `bmc ${bmcName(bmc)}: ${stepName(step)} failed: ${why}`, { bmc: bmcName(bmc), step: stepName(step) }));
          return;
        }
        const power = parsePowerStatus(out);
        resolve({ step: stepName(step), output: out, ...(power ? { power } : {}) });
      });
    });

  return {
    run(bmc, step) {
      const key = bmcName(bmc);
      const previous = queues.get(key) ?? Promise.resolve();
      const run = previous.then(
        () => exec(bmc, step),
        () => exec(bmc, step),
      );
      const tail = run.catch(() => undefined);
      queues.set(key, tail);
      void tail.then(() => {
        if (queues.get(key) === tail) queues.delete(key);
      });
      return run;
    },
  };
}

/**
 * Power the machine so it boots again now: `cycle` when it is on, `on` when it is off (a cycle
 * of a machine that is off is refused by many BMCs). Returns every step's result.
 */
export async function rebootThroughBmc(power: PowerController, bmc: Bmc, options: { bootdev?: BootDevice } = {}): Promise<IpmiResult[]> {
  const results: IpmiResult[] = [];
  if (options.bootdev) results.push(await power.run(bmc, { bootdev: options.bootdev }));
  const status = await power.run(bmc, { power: 'status' });
  results.push(status);
  results.push(await power.run(bmc, { power: status.power === 'off' ? 'on' : 'cycle' }));
  return results;
}
