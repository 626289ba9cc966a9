/**
 * `node bin/appliance build microkernel`: the command-line side of the image build (flags,
 * settings for `--assets`, JSON result on stdout).
 */
import { definedFields } from '../defined.js';
import { EXIT, LOG_SETTINGS, loadCommandConfig, type CommandSpec } from '../commands/command.js';
import { stringFlag } from '../commands/fetch.js';

/** `build microkernel`. */
export const BUILD_MICROKERNEL_COMMAND: CommandSpec = {
  name: 'microkernel',
  summary: 'build the discovery image from Debian packages (mmdebstrap) into --assets/microkernel/ (needs root)',
  description:
    'Build the discovery image (agent/discover.sh with dmidecode, lshw, lldpd, ipmitool, util-linux,\n' +
    'pciutils, ethtool) with mmdebstrap, without a Docker daemon, as a docker-save tarball\n' +
    'ASSETS/microkernel/discovery.tar with discovery.tar.sha256 and discovery.json. Reproducible; the\n' +
    'root filesystem is cached by its inputs and the mirror state. Prints what it did as JSON on stdout.',
  settings: ['assets', ...LOG_SETTINGS],
  flags: [
    { name: 'suite', type: 'string', arg: 'NAME', help: 'Debian suite [default: bookworm]' },
    { name: 'mirror', type: 'string', arg: 'URL', help: 'Debian mirror, http(s):// or file:// [default: http://deb.debian.org/debian]' },
    { name: 'cache-dir', type: 'string', arg: 'DIR', help: 'root filesystem cache [default: /var/cache/netboot-appliance]' },
    { name: 'no-cache', type: 'boolean', help: 'build the root filesystem from scratch and cache nothing' },
  ],
  async run(args) {
    const { config, log } = loadCommandConfig(args, ['assets']);
    const { buildMicrokernel } = await import('./microkernel.js');
    const suite = stringFlag(args, 'suite');
    const mirror = stringFlag(args, 'mirror');
    const cacheDir = stringFlag(args, 'cache-dir');
    const build = await buildMicrokernel({
      assetsDir: config.assets,
      log,
      ...definedFields({ suite, mirror }),
      cacheDir: args.flags['no-cache'] === true ? null : cacheDir,
    });
    args.io.stdout.write(`${JSON.stringify(build, null, 2)}\n`);
    return EXIT.ok;
  },
};

/** The `build` group. */
export const BUILD_COMMAND: CommandSpec = {
  name: 'build',
  summary: 'build images the appliance serves (the discovery microkernel)',
  description: 'Build images machines run, from Debian packages, into the assets directory.',
  subcommands: [BUILD_MICROKERNEL_COMMAND],
};
