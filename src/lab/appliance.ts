/**
 * The real appliance (`node bin/appliance`) as a lab boot server: a private home (database,
 * assets, templates, empty TFTP root, empty settings file) that boots the busybox test OS, and
 * the process itself started inside the lab namespace on the lab bridge with real ports.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { APPLIANCE_HOME } from '../config.js';
import { ApplianceError } from '../errors.js';
import type { BootEvent } from '../events.js';
import type { DbInput, GroupInput, MachineInput, ProfileInput } from '../store/schema.js';
import type { BootAssets, BootServer } from './baseline.js';
import type { BenchVariant } from './bench.js';
import type { Lab } from './netns.js';
import { startProcessBootServer } from './process-server.js';

/**
 * The node flags bin/appliance's `#!` line and the systemd units run the appliance with (see
 * bin/appliance); the benches run it the same way.
 */
export const APPLIANCE_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128', '--interrupt-budget=8192'];
/** The appliance's entry point (imports the compiled `dist/`; `npm run build` first). */
export const APPLIANCE_BIN = join(APPLIANCE_HOME, 'bin', 'appliance');
/** The bench's bare-Node floor server (src/lab/floor-server.ts), compiled like the appliance. */
export const FLOOR_SERVER = join(APPLIANCE_HOME, 'dist', 'src', 'lab', 'floor-server.js');

/** Id of the test OS profile written by {@link writeTestOsHome}; the default profile. */
export const TEST_OS_PROFILE_ID = 'lab-test-os';
/** Template that serves the lab's cloud-config body verbatim. */
export const TEST_OS_CLOUD_CONFIG_TEMPLATE = 'lab-test-os.cloud-config.yaml.njk';

/**
 * Kernel arguments of a test OS profile. The datasource URL is filled in per machine by the
 * profile placeholder mechanism (templates/README.md): `{{ address }}`, `{{ port }}` and
 * `{{ mac }}` become this appliance's address, HTTP port and the booting NIC's MAC.
 */
export const TEST_OS_CMDLINE: Readonly<Record<string, string>> = {
  'rancher.cloud_init.datasources': '[url:http://{{ address }}:{{ port }}/cloud-config?mac={{ mac }}]',
  console: 'ttyS0',
  // A panic reboots at once; with -no-reboot QEMU then exits and the boot fails fast.
  panic: '-1',
  // Facts are reported by the appliance's reference agent (agent/discover.sh), as the RancherOS
  // microkernel would, so the end-to-end boot proves its posting step.
  'netboot.agent': '1',
  // This boot's facts token: with it the report is verified and may match fact selectors.
  'netboot.facts_token': '{{ facts_token? }}',
};

/** A profile that boots the test OS from the home's assets (`/assets/vmlinuz`, `/assets/initrd.img`). */
export function testOsProfile(id: string, options: { extraCmdline?: Record<string, string>; cloudConfig?: string; name?: string } = {}): ProfileInput {
  return {
    id,
    name: options.name ?? 'busybox test OS (lab)',
    kernel: '/assets/vmlinuz',
    initrd: ['/assets/initrd.img'],
    cmdline: { ...TEST_OS_CMDLINE, ...(options.extraCmdline ?? {}) },
    cloudConfig: options.cloudConfig ?? TEST_OS_CLOUD_CONFIG_TEMPLATE,
  };
}

/** Paths of an appliance home made by {@link writeTestOsHome}. */
export interface ApplianceHome {
  dir: string;
  db: string;
  assets: string;
  templates: string;
  tftpRoot: string;
  /** An empty settings file, so a `config/appliance.json` of the checkout is not read. */
  config: string;
}

/** Options for {@link writeTestOsHome}. */
export interface TestOsHomeOptions {
  /** Extra profiles, machines and groups (the test OS profile is always there and default). */
  profiles?: readonly ProfileInput[];
  machines?: readonly MachineInput[];
  groups?: readonly GroupInput[];
  /** Extra templates by file name, written beside copies of the shipped ones. */
  templates?: Readonly<Record<string, string>>;
}

/**
 * Write a private appliance home into `dir`: `db.json` whose default profile boots the test OS
 * (kernel and initrd copied into `assets/`), `templates/` (the shipped templates, plus one that
 * serves `assets.cloudConfig` verbatim, plus `options.templates`), an empty `tftpboot/` (the
 * appliance then serves iPXE from /usr/lib/ipxe) and an empty settings file.
 */
export function writeTestOsHome(dir: string, assets: BootAssets, options: TestOsHomeOptions = {}): ApplianceHome {
  const home: ApplianceHome = {
    dir,
    db: join(dir, 'db.json'),
    assets: join(dir, 'assets'),
    templates: join(dir, 'templates'),
    tftpRoot: join(dir, 'tftpboot'),
    config: join(dir, 'appliance.json'),
  };
  for (const d of [home.assets, home.templates, home.tftpRoot]) mkdirSync(d, { recursive: true });
  copyFileSync(assets.kernelPath, join(home.assets, 'vmlinuz'));
  copyFileSync(assets.initrdPath, join(home.assets, 'initrd.img'));
  const shipped = join(APPLIANCE_HOME, 'templates');
  for (const f of readdirSync(shipped)) if (f.endsWith('.njk')) copyFileSync(join(shipped, f), join(home.templates, f));
  if (assets.cloudConfig.includes('{% endraw %}')) {
    throw new ApplianceError('ERR_LAB_CONFIG', 'the lab cloud-config must not contain "{% endraw %}"');
  }
  // raw: the body is served byte for byte, whatever braces it holds.
  writeFileSync(join(home.templates, TEST_OS_CLOUD_CONFIG_TEMPLATE), `{% raw %}${assets.cloudConfig}{% endraw %}`);
  for (const [name, text] of Object.entries(options.templates ?? {})) writeFileSync(join(home.templates, name), text);
  const db: DbInput = {
    defaultProfile: TEST_OS_PROFILE_ID,
    profiles: [testOsProfile(TEST_OS_PROFILE_ID), ...(options.profiles ?? [])],
    machines: [...(options.machines ?? [])],
    groups: [...(options.groups ?? [])],
  };
  writeFileSync(home.db, `${JSON.stringify(db, null, 2)}\n`);
  writeFileSync(home.config, '{}\n');
  return home;
}

/** The newest modification time below `dir` of files ending in `ext` (0 when none). */
function newest(dir: string, ext: string): { mtimeMs: number; path: string } {
  let best = { mtimeMs: 0, path: '' };
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      const sub = newest(p, ext);
      if (sub.mtimeMs > best.mtimeMs) best = sub;
    } else if (e.name.endsWith(ext)) {
      const m = statSync(p).mtimeMs;
      if (m > best.mtimeMs) best = { mtimeMs: m, path: p };
    }
  }
  return best;
}

/**
 * Throw `ERR_LAB_PREREQ` when `bin/appliance` cannot run the current sources: `dist/` is
 * missing, or a file under `src/` is newer than every compiled file (a stale build would test
 * yesterday's code). Installed copies without `src/` pass.
 */
export function assertApplianceBuilt(home = APPLIANCE_HOME): void {
  const cli = join(home, 'dist', 'src', 'cli.js');
  if (!existsSync(cli)) {
    throw new ApplianceError(
      'ERR_LAB_PREREQ',
      `${relative(process.cwd(), cli) || cli} is missing: run \`npm run build\` before starting the appliance in the lab`,
    );
  }
  if (!existsSync(join(home, 'src'))) return;
  const src = newest(join(home, 'src'), '.ts');
  const built = newest(join(home, 'dist', 'src'), '.js');
  if (src.mtimeMs > built.mtimeMs + 1000) {
    throw new ApplianceError(
      'ERR_LAB_PREREQ',
      `dist/ is older than ${relative(home, src.path)}: run \`npm run build\` so bin/appliance runs the current sources`,
    );
  }
}

/** Options for {@link startApplianceInLab}. */
export interface StartApplianceOptions {
  /** Report name and log file stem (default `appliance`). */
  name?: string;
  /** HTTP port inside the lab namespace (default 8080; the namespace is private). */
  httpPort?: number;
  /**
   * `--log-level` (default debug: the logs are the diagnosis of a failed boot); null passes
   * none, so the appliance's own settings decide.
   */
  logLevel?: string | null;
  /** Settings flags without the network ones: `['--db', F, '--assets', D, ...]`. */
  args?: readonly string[];
  /** Environment of the appliance (default: this process's without `APPLIANCE_*` settings). */
  env?: NodeJS.ProcessEnv;
  /** Readiness limit (default 20 s: node start-up under a loaded 2-core host). */
  readyTimeoutMs?: number;
  /** Refuse a dist/ older than src/ (default true; the lab command runs from dist/ itself). */
  checkBuild?: boolean;
}

/** The appliance running in a lab, with read access to its API from inside the namespace. */
export interface LabAppliance extends BootServer {
  /** `http://ADDRESS:PORT`. */
  readonly baseUrl: string;
  /** GET a JSON document from the appliance (fetched inside the lab namespace). */
  getJson(path: string): Promise<unknown>;
  /** `GET /api/events?mac=MAC`: the boot timeline of one machine, oldest first. */
  events(mac: string): Promise<BootEvent[]>;
}

/** The API token an appliance started with `args` uses: `--api-token`, or the file beside `--db`. */
function apiTokenOf(args: readonly string[]): string | undefined {
  const flag = args.indexOf('--api-token');
  if (flag >= 0) return args[flag + 1];
  const db = args.indexOf('--db');
  const file = db >= 0 && args[db + 1] !== undefined ? join(dirname(args[db + 1]!), 'api-token') : undefined;
  return file !== undefined && existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

/** This process's environment minus the appliance's settings variables (`APPLIANCE_*`). */
export function cleanApplianceEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('APPLIANCE_')));
}

/**
 * The command line of `node bin/appliance` in a lab (after the node binary): the bridge, the lab
 * address and the real boot ports, ProxyDHCP, `--log-level`, DHCP leases journaled in the lab's
 * work dir (never the checkout's config/), then `options.args` (later flags win).
 */
export function applianceLabArgs(lab: Lab, options: Pick<StartApplianceOptions, 'name' | 'httpPort' | 'logLevel' | 'args'> = {}): string[] {
  const name = options.name ?? 'appliance';
  return [
    APPLIANCE_BIN,
    '--interface',
    lab.bridge,
    '--address',
    lab.serverAddress,
    '--http-port',
    String(options.httpPort ?? 8080),
    '--tftp-port',
    '69',
    '--dhcp-port',
    '67',
    '--proxy-port',
    '4011',
    '--dhcp-mode',
    'proxy',
    '--lease-file',
    join(lab.workDir, `${name}.leases.json`),
    '--lease6-file',
    join(lab.workDir, `${name}.leases6.json`),
    ...(options.logLevel === null ? [] : ['--log-level', options.logLevel ?? 'debug']),
    ...(options.args ?? []),
  ];
}

/** The settings flags that point the appliance at a home made by {@link writeTestOsHome}. */
export function testOsHomeArgs(home: ApplianceHome): string[] {
  return ['--config', home.config, '--db', home.db, '--assets', home.assets, '--templates', home.templates, '--tftp-root', home.tftpRoot];
}

/**
 * Start `node bin/appliance` inside `lab.netns` on the bridge with the real boot ports (ProxyDHCP
 * on 67 and 4011, TFTP 69, HTTP `httpPort`) and resolve once `GET /healthz` answers from inside
 * the namespace. Logs go to `WORKDIR/NAME.stdout.log` (pino JSON) and `.stderr.log`.
 */
export async function startApplianceInLab(lab: Lab, options: StartApplianceOptions = {}): Promise<LabAppliance> {
  if (options.checkBuild ?? true) assertApplianceBuilt();
  const port = options.httpPort ?? 8080;
  const baseUrl = `http://${lab.serverAddress}:${port}`;
  const args = applianceLabArgs(lab, options);
  // DHCP comes up after HTTP (its start-up probe listens up to 5 s): ready means both, or a VM
  // started at /healthz would send its first DISCOVERs to nobody. The last --dhcp-mode wins.
  const modes = args.flatMap((a, i) => (a === '--dhcp-mode' ? [args[i + 1]] : []));
  const dhcpOff = modes.at(-1) === 'off';
  const server = await startProcessBootServer(lab, {
    name: options.name ?? 'appliance',
    cmd: process.execPath,
    args,
    readyUrl: `${baseUrl}/healthz`,
    ...(dhcpOff ? {} : { readyPattern: /"msg":"(?:proxydhcp|dhcp server) listening"/ }),
    readyTimeoutMs: options.readyTimeoutMs ?? 20_000,
    env: options.env ?? cleanApplianceEnv(),
  });
  const getJson = async (path: string): Promise<unknown> => {
    const exit = server.process.exitStatus();
    if (exit) {
      const tail = readFileSync(server.logPaths?.['stderr'] ?? '/dev/null', 'utf8').slice(-2000);
      throw new ApplianceError('ERR_LAB_SERVER', `the appliance exited (code ${exit.code}, signal ${exit.signal}) before GET ${path}:\n${tail}`);
    }
    // Not -q: on an HTTP error busybox wget names the status on stderr, which the error
    // carries. No -T: busybox 1.35 wget fails silently with it here (runCommand bounds it).
    // API reads need the token: --api-token, or the one generated beside --db.
    const token = apiTokenOf(args);
    const auth = path.startsWith('/api/') && token !== undefined ? ['--header', `Authorization: Bearer ${token}`] : [];
    const { stdout } = await lab.exec('busybox', ['wget', ...auth, '-O', '-', `${baseUrl}${path}`]);
    try {
      return JSON.parse(stdout) as unknown;
    } catch {
      throw new ApplianceError('ERR_LAB_SERVER', `GET ${path} did not return JSON: ${stdout.slice(0, 200)}`);
    }
  };
  return {
    ...server,
    name: options.name ?? 'appliance',
    baseUrl,
    getJson,
    events: async (mac) => (await getJson(`/api/events?mac=${encodeURIComponent(mac)}`)) as BootEvent[],
  };
}

/**
 * Start the appliance with a fresh test OS home in `lab.workDir` (see {@link writeTestOsHome}):
 * what the bench and the e2e tests boot through.
 */
export async function startTestOsAppliance(
  lab: Lab,
  assets: BootAssets,
  options: TestOsHomeOptions & StartApplianceOptions = {},
): Promise<LabAppliance & { home: ApplianceHome }> {
  const home = writeTestOsHome(join(lab.workDir, `${options.name ?? 'appliance'}-home`), assets, options);
  const appliance = await startApplianceInLab(lab, {
    ...options,
    args: [...testOsHomeArgs(home), ...(options.args ?? [])],
  });
  return { ...appliance, home };
}

/** Bench variant: the appliance (ProxyDHCP + TFTP + HTTP in one process) booting the test OS. */
export const APPLIANCE_VARIANT: BenchVariant = {
  name: 'appliance',
  // info, not debug: the figure should not include the cost of debug logging. The build is
  // checked once by the bench before its first boot, not per boot (sources may be edited
  // while a long bench runs).
  startBootServer: (lab, assets) => startTestOsAppliance(lab, assets, { logLevel: 'info', checkBuild: false }),
};
