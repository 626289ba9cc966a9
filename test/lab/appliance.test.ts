/** The appliance's command line in a lab (src/lab/appliance.ts), read back as `serve` reads it. */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import type { NetworkInterfaceInfo } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandArgs } from '../../src/commands/command.js';
import { SERVE_COMMAND } from '../../src/commands/serve.js';
import { APPLIANCE_HOME, loadConfig } from '../../src/config.js';
import { APPLIANCE_BIN, applianceLabArgs } from '../../src/lab/appliance.js';
import type { Lab } from '../../src/lab/netns.js';

const INTERFACES: NodeJS.Dict<NetworkInterfaceInfo[]> = {
  br0: [{ address: '10.99.7.1', netmask: '255.255.255.0', family: 'IPv4', mac: '52:54:00:00:00:01', internal: false, cidr: '10.99.7.1/24' }],
};

function settingsOf(args: string[], workDir: string) {
  const io = { argv: args, env: {}, stdout: process.stdout, stderr: process.stderr, cwd: workDir };
  const parsed = parseCommandArgs(SERVE_COMMAND, 'serve', args, io, process);
  if (parsed === 'help') throw new Error('help');
  return loadConfig({
    flags: parsed.settingFlags,
    env: {},
    cwd: workDir,
    interfaces: INTERFACES,
    keys: ['address', 'interface', 'httpPort', 'tftpPort', 'dhcpPort', 'proxyPort', 'dhcpMode', 'leaseFile', 'lease6File', 'logLevel'],
  });
}

test('a lab appliance journals its leases in the lab work dir, never in the checkout; a later --lease-file still wins', (t) => {
  const workDir = mkdtempSync(join(tmpdir(), 'lab-args-'));
  t.teardown(() => rmSync(workDir, { recursive: true, force: true }));
  const lab = { bridge: 'br0', serverAddress: '10.99.7.1', workDir } as Lab;
  const args = applianceLabArgs(lab, { name: 'appliance-server', args: ['--dhcp-mode', 'server'] });
  t.is(args[0], APPLIANCE_BIN);
  const config = settingsOf(args.slice(1), workDir);
  t.is(config.leaseFile, join(workDir, 'appliance-server.leases.json'));
  t.is(config.lease6File, join(workDir, 'appliance-server.leases6.json'));
  t.false(config.leaseFile.startsWith(join(APPLIANCE_HOME, 'config')));
  t.is(config.dhcpMode, 'server');

  const own = join(workDir, 'mine.json');
  t.is(settingsOf(applianceLabArgs(lab, { args: ['--lease-file', own] }).slice(1), workDir).leaseFile, own);
});
