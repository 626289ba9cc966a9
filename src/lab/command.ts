/**
 * `node bin/appliance lab`: boot QEMU VMs through this appliance on a private lab network (a
 * bridge in its own network namespace, a plain DHCP server beside it, one tap per VM), show or
 * log their serial consoles, and remove everything on exit.
 */
import { createWriteStream, mkdirSync, copyFileSync, existsSync, type WriteStream } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseErrorMessage } from '../commands/command.js';
import { ApplianceError } from '../errors.js';
import { createSilentLogger } from '../log.js';
import { DEFAULT_CLOUD_CONFIG } from './baseline.js';
import { startApplianceInLab, startTestOsAppliance, testOsProfile, type LabAppliance } from './appliance.js';
import { prepareArm64TestOs } from './arm64.js';
import { fetchSecureBoot } from '../fetch/secureboot.js';
import { buildTestInitrd } from './initrd.js';
import { createLab, type Lab } from './netns.js';
import { checkLabPrerequisites } from './prereqs.js';
import { FIRMWARES, randomMac, startVm, type Firmware, type Vm } from './qemu.js';

/** Streams and settings the lab command uses; injectable so tests run it in-process. */
export interface LabCommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** Exit codes of the lab command. */
export const LAB_EXIT = {
  /** Every VM powered off (or, with --keep or no VMs, the lab was stopped by a signal). */
  ok: 0,
  /** A VM crashed or timed out, or the lab could not be built. */
  failure: 1,
  /** Bad flags. */
  usage: 2,
  /** SIGINT/SIGTERM arrived before every VM had powered off. */
  interrupted: 130,
} as const;

/** The `--help` text of the lab command. */
export const LAB_USAGE = `usage: node bin/appliance lab [options]

Boot QEMU VMs through this appliance on a private lab network: a bridge in its own network
namespace with the appliance on it (ProxyDHCP, TFTP, HTTP on the real ports), a plain DHCP
server beside it (dnsmasq, addresses only) and one tap per VM. Needs root and the VM lab
packages (qemu-system-x86 ipxe ovmf busybox-static dnsmasq-base iproute2). The lab is removed
on exit: when every VM has powered off, or on Ctrl-C / SIGTERM.

VMs (the i-th --firmware/--mac/--uuid goes to the i-th VM; --firmware repeats cyclically):
  --vms N                  number of VMs, 0-16 [default: 1, or as many as --mac/--uuid given]
  --firmware FW            bios: SeaBIOS + iPXE ROM; uefi: OVMF with its own PXE;
                           uefi-http: OVMF HTTP boot only (PXE off); uefi-secureboot:
                           OVMF with Secure Boot on (Microsoft keys; needs fetch secureboot
                           and secureBoot set, see README); arm64: AAVMF under
                           qemu-system-aarch64 (grub); uefi-ipv6: OVMF PXEv6 only
                           [default: bios]
  --mac MAC                NIC MAC, e.g. 52:54:00:12:34:56 [default: random 52:54:00:xx:xx:xx]
  --uuid UUID              SMBIOS UUID (-uuid), e.g. to match a machine record by UUID
  --memory MiB             guest memory, 128-16384 [default: 512]
  --timeout SECONDS        kill a VM still running after this long [default: 3600]

Consoles:
  --serial-log DIR         also write each VM's console to DIR/NAME.serial.log, and the
                           appliance's log to DIR/appliance.log at exit
  --quiet                  do not show the consoles (prefixed [NAME]) on stdout

What the VMs boot:
  (default)                your appliance settings, as \`node bin/appliance\` would use them
  --db PATH  --assets DIR  --templates DIR  --tftp-root DIR  --config PATH  --api-token TOKEN
  --log-level LEVEL        passed to the appliance (network flags are set by the lab)
  --test-os                instead, a private database whose default profile boots a busybox
                           test OS that fetches its cloud-config, reports facts and powers off:
                           checks that the lab and the appliance work on this host;
                           arm64 VMs get Debian's arm64 kernel, uefi-secureboot VMs a
                           machine record with secureBoot, both shim + signed grub
                           (packages downloaded once; use --no-upstream-dhcp for grub)

Network:
  --attach IFACE           move a host NIC onto the lab bridge for the run, so a bare-metal
                           machine cabled to it netboots from the lab (repeatable); it returns
                           to the host at exit without its addresses: re-add them then
  --no-upstream-dhcp       no plain DHCP server: the appliance runs as the DHCP server too
  --no-ipv6-router         no IPv6 router advertisements (iPXE then waits ~16 s for one)
  --http-port N            the appliance's HTTP port on the lab network [default: 8080]
  --keep                   after the VMs stop, keep the lab and the appliance running until
                           Ctrl-C / SIGTERM (to use the API or attach more machines)
  -h, --help               show this help

The appliance's API is reachable inside the lab namespace, e.g.
  ip netns exec lab-ID curl -H "Authorization: Bearer $(cat HOME/api-token)" http://10.99.X.1:8080/api/events

exit codes: 0 every VM powered off (with --keep or --vms 0: stopped by a signal), 1 a VM
crashed or timed out or the lab could not start, 2 invalid flags, 130 interrupted before every
VM powered off`;

const MAC_RE = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PATH_FLAGS = ['db', 'assets', 'templates', 'tftp-root', 'config'] as const;

/** Parsed and checked flags of the lab command. */
interface LabPlan {
  vms: Array<{ name: string; firmware: Firmware; mac?: string; uuid?: string }>;
  memoryMiB: number;
  timeoutMs: number;
  serialLogDir: string | undefined;
  quiet: boolean;
  testOs: boolean;
  applianceArgs: string[];
  logLevel: string | undefined;
  attach: string[];
  upstreamDhcp: boolean;
  ipv6Router: boolean;
  httpPort: number;
  keep: boolean;
}

class UsageError extends ApplianceError {
  constructor(message: string) {
    super('ERR_LAB_USAGE', message);
  }
}

function intFlag(value: string | undefined, name: string, min: number, max: number, dflt: number): number {
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** Parse argv into a plan; throws UsageError (exit 2) naming the bad flag. */
function parsePlan(argv: string[], cwd: string): LabPlan | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: false,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        vms: { type: 'string' },
        firmware: { type: 'string', multiple: true },
        mac: { type: 'string', multiple: true },
        uuid: { type: 'string', multiple: true },
        memory: { type: 'string' },
        timeout: { type: 'string' },
        'serial-log': { type: 'string' },
        quiet: { type: 'boolean' },
        'test-os': { type: 'boolean' },
        db: { type: 'string' },
        assets: { type: 'string' },
        templates: { type: 'string' },
        'tftp-root': { type: 'string' },
        config: { type: 'string' },
        'api-token': { type: 'string' },
        'log-level': { type: 'string' },
        attach: { type: 'string', multiple: true },
        'no-upstream-dhcp': { type: 'boolean' },
        'no-ipv6-router': { type: 'boolean' },
        'http-port': { type: 'string' },
        keep: { type: 'boolean' },
      },
    });
  } catch (err) {
    // The flags named in LAB_USAGE are the ones accepted: guesses come from there.
    const known = [...new Set([...LAB_USAGE.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!))].map((name) => ({ name }));
    throw new UsageError(parseErrorMessage(err as Error & { code?: string }, known, 'lab').replace(/^lab: /, ''));
  }
  const v = parsed.values;
  if (v.help) return 'help';
  const firmwares = v.firmware ?? ['bios'];
  for (const f of firmwares) {
    if (!(FIRMWARES as readonly string[]).includes(f)) throw new UsageError(`--firmware must be one of ${FIRMWARES.join(', ')}, not ${JSON.stringify(f)}`);
  }
  const macs = v.mac ?? [];
  const uuids = v.uuid ?? [];
  for (const m of macs) if (!MAC_RE.test(m)) throw new UsageError(`--mac ${JSON.stringify(m)} is not a MAC address like 52:54:00:12:34:56`);
  for (const u of uuids) if (!UUID_RE.test(u)) throw new UsageError(`--uuid ${JSON.stringify(u)} is not a UUID like 8f9a2b3c-1d2e-4f50-8a6b-7c8d9e0f1a2b`);
  if (new Set(macs.map((m) => m.toLowerCase())).size !== macs.length)
    throw new UsageError('--mac values must differ: two NICs with one MAC on one bridge do not boot');
  const count = intFlag(v.vms, 'vms', 0, 16, Math.max(1, macs.length, uuids.length));
  if (macs.length > count || uuids.length > count) throw new UsageError(`${Math.max(macs.length, uuids.length)} --mac/--uuid values for --vms ${count}`);
  const attach = v.attach ?? [];
  for (const a of attach) if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(a)) throw new UsageError(`--attach ${JSON.stringify(a)} is not an interface name`);
  const applianceArgs: string[] = [];
  for (const flag of PATH_FLAGS) {
    const value = v[flag];
    // The appliance runs with another working directory: hand it absolute paths.
    if (value !== undefined) applianceArgs.push(`--${flag}`, isAbsolute(value) ? value : resolve(cwd, value));
  }
  if (v['api-token'] !== undefined) applianceArgs.push('--api-token', v['api-token']);
  if (v['test-os'] && applianceArgs.length > 0)
    throw new UsageError('--test-os uses a private database, assets and templates: drop --db/--assets/--templates/--tftp-root/--config/--api-token');
  const vms = Array.from({ length: count }, (_, i) => {
    const firmware = firmwares[i % firmwares.length] as Firmware;
    const mac = macs[i]?.toLowerCase();
    const uuid = uuids[i];
    return { name: `vm${i}-${firmware}`, firmware, ...(mac ? { mac } : {}), ...(uuid ? { uuid } : {}) };
  });
  // With no upstream DHCP server on the bridge, the appliance is the only one: server mode
  // (the last --dhcp-mode given to bin/appliance wins over the lab's default proxy).
  if (v['no-upstream-dhcp'] === true) applianceArgs.push('--dhcp-mode', 'server');
  const serialLog = v['serial-log'];
  return {
    vms,
    memoryMiB: intFlag(v.memory, 'memory', 128, 16384, 512),
    timeoutMs: intFlag(v.timeout, 'timeout', 10, 7 * 24 * 3600, 3600) * 1000,
    serialLogDir: serialLog === undefined ? undefined : resolve(cwd, serialLog),
    quiet: v.quiet === true,
    testOs: v['test-os'] === true,
    applianceArgs,
    logLevel: v['log-level'],
    attach,
    upstreamDhcp: v['no-upstream-dhcp'] !== true,
    ipv6Router: v['no-ipv6-router'] !== true,
    httpPort: intFlag(v['http-port'], 'http-port', 1, 65535, 8080),
    keep: v.keep === true,
  };
}

/** Strip terminal control sequences (firmware consoles position the cursor, clear, colour). */
function plainText(s: string): string {
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>c]/g, '').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
}

/** Writes a VM's console to stdout line by line with a `[name] ` prefix. */
function createConsolePrinter(name: string, out: NodeJS.WritableStream): { write(chunk: Buffer): void; flush(): void } {
  let partial = '';
  return {
    write(chunk) {
      partial += chunk.toString('latin1');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      // Bounded: a console that never prints a newline still gets shown.
      if (partial.length > 4096) {
        lines.push(partial);
        partial = '';
      }
      for (const line of lines) out.write(`[${name}] ${plainText(line)}\n`);
    },
    flush() {
      if (partial !== '') out.write(`[${name}] ${plainText(partial)}\n`);
      partial = '';
    },
  };
}

/**
 * Run the lab command. Resolves with the exit code once the lab is torn down: when every VM
 * has powered off (unless `--keep`), on SIGINT/SIGTERM from `signals`, or on a failure.
 */
export async function runLabCommand(argv: string[], io: LabCommandIo, signals: NodeJS.EventEmitter = process): Promise<number> {
  const say = (text: string) => io.stderr.write(`lab: ${text}\n`);
  let plan: LabPlan;
  try {
    const p = parsePlan(argv, io.cwd);
    if (p === 'help') {
      io.stdout.write(`${LAB_USAGE}\n`);
      return LAB_EXIT.ok;
    }
    plan = p;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`appliance lab: ${err.message}\n`);
      return LAB_EXIT.usage;
    }
    throw err;
  }
  const fw = new Set(plan.vms.map((v) => v.firmware));
  const uefiLike = [...fw].some((f) => f !== 'bios');
  const missing = checkLabPrerequisites(fw.has('bios') && uefiLike ? 'both' : uefiLike ? 'uefi' : 'bios', [...fw]);
  if (missing.length > 0) {
    for (const m of missing) say(`missing ${m.what} (${m.fix})`);
    return LAB_EXIT.failure;
  }

  // Signals end the run from here on; the handlers are removed before returning.
  let signalled: string | undefined;
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<void>((r) => {
    onAbort = r;
  });
  const onSignal = (signal: string) => {
    if (signalled) return;
    signalled = signal;
    say(`${signal}: tearing the lab down`);
    onAbort();
  };
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);

  let lab: Lab | undefined;
  let appliance: LabAppliance | undefined;
  const vms: Vm[] = [];
  const exitCodes = new Map<Vm, number | null>();
  const printers: Array<{ flush(): void }> = [];
  const files: WriteStream[] = [];
  let code: number = LAB_EXIT.ok;
  try {
    if (plan.serialLogDir) mkdirSync(plan.serialLogDir, { recursive: true });
    lab = await createLab({ upstreamDhcp: plan.upstreamDhcp, ipv6Router: plan.ipv6Router, log: createSilentLogger() });
    if (signalled) throw new ApplianceError('ERR_LAB_INTERRUPTED', 'interrupted');
    say(
      `network ${lab.network}/${lab.prefixLength} on ${lab.bridge} in netns ${lab.netns}${plan.upstreamDhcp ? `, plain DHCP from ${lab.upstreamAddress}` : ''}${plan.ipv6Router ? ', IPv6 router on' : ''}`,
    );
    for (const ifname of plan.attach) {
      await lab.attachInterface(ifname);
      say(`attached ${ifname} to the lab bridge`);
    }
    const common = { httpPort: plan.httpPort, checkBuild: false, logLevel: plan.logLevel ?? (plan.testOs ? 'info' : null) };
    if (plan.testOs) {
      const initrd = buildTestInitrd();
      const kinds = new Set(plan.vms.map((v) => v.firmware));
      const grubKinds = kinds.has('arm64') || kinds.has('uefi-secureboot');
      if (grubKinds && plan.upstreamDhcp)
        say(
          "warning: grub (arm64, uefi-secureboot) takes its TFTP server from the DHCP server's ACK, and the lab's plain dnsmasq names itself: pass --no-upstream-dhcp so the appliance serves addresses (README: Firmware paths)",
        );
      // Secure Boot VMs need a MAC for their machine record (secureBoot: true); others keep theirs.
      for (const v of plan.vms) if (v.firmware === 'uefi-secureboot' && v.mac === undefined) v.mac = randomMac();
      const arm64 = kinds.has('arm64') ? await prepareArm64TestOs() : undefined;
      const arm64Profile = arm64
        ? {
            ...testOsProfile('lab-test-os-arm64', { extraCmdline: { console: 'ttyAMA0' } }),
            kernel: '/assets/arm64/vmlinuz',
            initrd: ['/assets/arm64/initrd.img'],
          }
        : undefined;
      const started = await startTestOsAppliance(
        lab,
        { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG },
        {
          ...common,
          args: plan.applianceArgs,
          ...(arm64Profile ? { profiles: [arm64Profile], groups: [{ id: 'arm64', profile: arm64Profile.id, selector: { arch: 'arm64' } }] } : {}),
          machines: plan.vms.filter((v) => v.firmware === 'uefi-secureboot').map((v) => ({ mac: v.mac!, secureBoot: true })),
        },
      );
      appliance = started;
      if (arm64) {
        mkdirSync(join(started.home.assets, 'arm64'), { recursive: true });
        copyFileSync(arm64.kernelPath, join(started.home.assets, 'arm64', 'vmlinuz'));
        copyFileSync(arm64.initrdPath, join(started.home.assets, 'arm64', 'initrd.img'));
      }
      if (grubKinds) {
        const arches: Array<'amd64' | 'arm64'> = [
          ...(kinds.has('uefi-secureboot') ? (['amd64'] as const) : []),
          ...(kinds.has('arm64') ? (['arm64'] as const) : []),
        ];
        await fetchSecureBoot({ tftpRoot: started.home.tftpRoot, arches, log: createSilentLogger() });
        say(`shim and signed grub (${arches.join(', ')}) in the test os tftp root`);
      }
    } else {
      appliance = await startApplianceInLab(lab, { ...common, args: plan.applianceArgs, env: io.env });
    }
    say(
      `appliance at ${appliance.baseUrl} (log ${appliance.logPaths?.['stdout'] ?? '?'}); API: ip netns exec ${lab.netns} curl -H "Authorization: Bearer TOKEN" ${appliance.baseUrl}/api/events`,
    );
    if (signalled) throw new ApplianceError('ERR_LAB_INTERRUPTED', 'interrupted');

    for (const spec of plan.vms) {
      const printer = plan.quiet ? undefined : createConsolePrinter(spec.name, io.stdout);
      if (printer) printers.push(printer);
      const file = plan.serialLogDir ? createWriteStream(join(plan.serialLogDir, `${spec.name}.serial.log`)) : undefined;
      if (file) files.push(file);
      const vm = await startVm(lab, {
        ...spec,
        memoryMiB: plan.memoryMiB,
        timeoutMs: plan.timeoutMs,
        onSerial: (chunk) => {
          printer?.write(chunk);
          file?.write(chunk);
        },
      });
      vms.push(vm);
      say(`${vm.name} started: ${vm.firmware}, mac ${vm.mac}${spec.uuid ? `, uuid ${spec.uuid}` : ''}, tap ${vm.tap}`);
      void vm.exited.then((exit) => {
        // QEMU also exits 0 when it is sent SIGTERM: only 0 without a stop of ours is a poweroff.
        const by = vm.stoppedBy();
        const poweredOff = exit.code === 0 && by === undefined;
        exitCodes.set(vm, poweredOff ? 0 : (exit.code ?? -1) || -1);
        say(
          poweredOff
            ? `${vm.name} powered off`
            : `${vm.name} stopped (${by === 'timeout' ? `still running after --timeout ${plan.timeoutMs / 1000} s` : by === 'kill' ? 'killed by the lab' : (exit.signal ?? `exit code ${exit.code}`)})`,
        );
      });
      if (signalled) break;
    }

    const exits = Promise.all(vms.map((vm) => vm.exited));
    if (vms.length > 0) await Promise.race([exits, aborted]);
    if (!signalled && (plan.keep || vms.length === 0)) {
      say(vms.length === 0 ? 'lab running; Ctrl-C or SIGTERM stops it' : 'VMs stopped; the lab and the appliance keep running until Ctrl-C or SIGTERM');
      await aborted;
    }
    // A signal is the normal end only once every VM has powered off (--keep) or with none.
    if (vms.some((vm) => !exitCodes.has(vm))) code = LAB_EXIT.interrupted;
    else if ([...exitCodes.values()].some((c) => c !== 0)) code = LAB_EXIT.failure;
  } catch (err) {
    if (!(err instanceof ApplianceError && err.code === 'ERR_LAB_INTERRUPTED')) {
      say(err instanceof ApplianceError ? err.message : ((err as Error).stack ?? String(err)));
      code = LAB_EXIT.failure;
    } else {
      code = LAB_EXIT.interrupted;
    }
  } finally {
    await Promise.all(vms.map((vm) => vm.kill()));
    for (const p of printers) p.flush();
    await Promise.all(files.map((f) => new Promise<void>((r) => f.end(() => r()))));
    await appliance?.stop();
    if (plan.serialLogDir && appliance?.logPaths) {
      for (const [kind, path] of Object.entries(appliance.logPaths)) {
        if (existsSync(path)) copyFileSync(path, join(plan.serialLogDir, kind === 'stdout' ? 'appliance.log' : `appliance.${kind}.log`));
      }
    }
    await lab?.destroy();
    if (lab) say(`lab ${lab.netns} removed`);
    signals.off('SIGINT', onSignal);
    signals.off('SIGTERM', onSignal);
  }
  return code;
}
