/**
 * `node bin/appliance lab`: boot QEMU VMs through this appliance on a private lab network (a
 * bridge in its own network namespace, a plain DHCP server beside it, one tap per VM). Its flags
 * are one CommandSpec in the command table like every other command's, so `lab --help` is
 * generated and an unknown flag gets "did you mean"; plan.ts checks them, run.ts (loaded only
 * when a lab runs) does the work.
 */
import { OPTIONS } from '../config.js';
import { EXIT, UsageError, commandHelp, parseCommandArgs, type CliIo, type CommandSpec, type FlagSpec } from '../commands/command.js';
import { LAB_EXIT, LAB_PATH_FLAGS, planLab, type LabIo } from './plan.js';
import { FIRMWARE_HELP, FIRMWARES } from './qemu.js';

export { LAB_EXIT, type LabIo as LabCommandIo } from './plan.js';

const VMS = 'VMs (the i-th --firmware/--mac/--uuid goes to the i-th VM; --firmware repeats cyclically)';
const CONSOLES = 'consoles';
const BOOT = 'what the VMs boot (default: your appliance settings, as `node bin/appliance` would use them)';
const NETWORK = 'network';

/** A flag the lab hands to the appliance it starts, with the setting's own help. */
function applianceFlag(flag: (typeof LAB_PATH_FLAGS)[number] | 'api-token' | 'log-level', arg: string): FlagSpec {
  const setting = OPTIONS.find((o) => o.flag === flag);
  const help = flag === 'config' ? 'the appliance settings file [default: config/appliance.json]' : (setting?.help ?? flag);
  return { name: flag, type: 'string', arg, help: `passed to the appliance: ${help}`, section: BOOT };
}

const firmwareWidth = Math.max(...FIRMWARES.map((f) => f.length)) + 2;

/** The lab's flags, in the order its help lists them. */
export const LAB_FLAGS: readonly FlagSpec[] = [
  { name: 'vms', type: 'string', arg: 'N', help: 'number of VMs, 0-16 [default: 1, or as many as --mac/--uuid given]', section: VMS },
  {
    name: 'firmware',
    type: 'string',
    multiple: true,
    arg: 'FW',
    help: ['the VM firmware [default: bios]:', ...FIRMWARES.map((f) => `  ${f.padEnd(firmwareWidth)}${FIRMWARE_HELP[f]}`)].join('\n'),
    section: VMS,
  },
  { name: 'mac', type: 'string', multiple: true, arg: 'MAC', help: 'NIC MAC, e.g. 52:54:00:12:34:56 [default: random 52:54:00:xx:xx:xx]', section: VMS },
  { name: 'uuid', type: 'string', multiple: true, arg: 'UUID', help: 'SMBIOS UUID (-uuid), e.g. to match a machine record by UUID', section: VMS },
  { name: 'memory', type: 'string', arg: 'MiB', help: 'guest memory, 128-16384 [default: 512]', section: VMS },
  { name: 'timeout', type: 'string', arg: 'SECONDS', help: 'kill a VM still running after this long [default: 3600]', section: VMS },
  {
    name: 'serial-log',
    type: 'string',
    arg: 'DIR',
    help: "also write each VM's console to DIR/NAME.serial.log, and the appliance's log to DIR/appliance.log at exit",
    section: CONSOLES,
  },
  { name: 'quiet', type: 'boolean', help: 'do not show the consoles (prefixed [NAME]) on stdout', section: CONSOLES },
  ...LAB_PATH_FLAGS.map((f) => applianceFlag(f, f === 'config' || f === 'db' ? 'PATH' : 'DIR')),
  applianceFlag('api-token', 'TOKEN'),
  applianceFlag('log-level', 'LEVEL'),
  {
    name: 'test-os',
    type: 'boolean',
    help:
      'instead, a private database whose default profile boots a busybox test OS that fetches its cloud-config, ' +
      'reports facts and powers off: checks that the lab and the appliance work on this host; ' +
      "arm64 VMs get Debian's arm64 kernel, uefi-secureboot VMs a machine record with secureBoot, " +
      'both shim + signed grub (packages downloaded once; the plain DHCP server then names the appliance as next-server, which grub needs)',
    section: BOOT,
  },
  {
    name: 'attach',
    type: 'string',
    multiple: true,
    arg: 'IFACE',
    help: 'move a host NIC onto the lab bridge for the run, so a bare-metal machine cabled to it netboots from the lab (repeatable); it returns to the host at exit without its addresses: re-add them then',
    section: NETWORK,
  },
  { name: 'no-upstream-dhcp', type: 'boolean', help: 'no plain DHCP server: the appliance runs as the DHCP server too', section: NETWORK },
  { name: 'no-ipv6-router', type: 'boolean', help: 'no IPv6 router advertisements (iPXE then waits ~16 s for one)', section: NETWORK },
  { name: 'http-port', type: 'string', arg: 'N', help: "the appliance's HTTP port on the lab network [default: 8080]", section: NETWORK },
  {
    name: 'keep',
    type: 'boolean',
    help: 'after the VMs stop, keep the lab and the appliance running until Ctrl-C / SIGTERM (to use the API or attach more machines)',
    section: NETWORK,
  },
];

/** `lab`. */
export const LAB_COMMAND: CommandSpec = {
  name: 'lab',
  summary: 'boot QEMU VMs through this appliance on a private lab bridge (needs root)',
  description: [
    'Boot QEMU VMs through this appliance on a private lab network: a bridge in its own network',
    'namespace with the appliance on it (ProxyDHCP, TFTP, HTTP on the real ports), a plain DHCP',
    'server beside it (dnsmasq, addresses only) and one tap per VM. Needs root and the VM lab',
    'packages (qemu-system-x86 ipxe ovmf busybox-static dnsmasq-base iproute2). The lab is removed',
    'on exit: when every VM has powered off, or on Ctrl-C / SIGTERM.',
  ].join('\n'),
  flags: LAB_FLAGS,
  epilog: [
    "The appliance's API is reachable inside the lab namespace, e.g.",
    '  ip netns exec lab-ID curl -H "Authorization: Bearer $(cat HOME/api-token)" http://10.99.X.1:8080/api/events',
    '',
    'exit codes: 0 every VM powered off (with --keep or --vms 0: stopped by a signal), 1 a VM',
    'crashed or timed out or the lab could not start, 2 invalid flags, 130 interrupted before every',
    'VM powered off',
  ].join('\n'),
  async run(args) {
    const plan = planLab(args.flags, args.io.cwd);
    const { runLab } = await import('./run.js');
    return runLab(plan, args.io, args.signals);
  },
};

/** The `--help` text of the lab command (generated from LAB_COMMAND). */
export const LAB_USAGE = commandHelp(LAB_COMMAND, 'lab');

/**
 * Run `lab` with the arguments after its name, as `node bin/appliance lab ...` does (help and
 * usage errors included, written as the CLI writes them). Resolves with the exit code once the
 * lab is torn down: when every VM has powered off (unless `--keep`), on SIGINT/SIGTERM from
 * `signals`, or on a failure.
 */
export async function runLabCommand(argv: string[], io: LabIo, signals: NodeJS.EventEmitter = process): Promise<number> {
  const cli: CliIo = { ...io, argv: ['lab', ...argv] };
  try {
    const args = parseCommandArgs(LAB_COMMAND, 'lab', argv, cli, signals);
    if (args === 'help') {
      io.stdout.write(`${LAB_USAGE}\n`);
      return EXIT.ok;
    }
    return await LAB_COMMAND.run!(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`appliance: ${err.message}\n`);
    return LAB_EXIT.usage;
  }
}
