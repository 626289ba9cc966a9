/** The real appliance (bin/appliance, built dist/) on br0 of a DHCPv6 namespace lab (../dhcp/netns-lab.ts). */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, type Lab, type Proc } from '../dhcp/netns-lab.js';

/** The usable (not tentative) link-local address of `dev` in `ns`, waiting up to 10 s for DAD. */
export async function linkLocal(ns: string, dev = 'eth0'): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const out = execFileSync('ip', ['-n', ns, '-6', 'addr', 'show', 'dev', dev, 'scope', 'link'], { encoding: 'utf8' });
    const m = /inet6 (fe80::[0-9a-f:]+)\/64 scope link/.exec(out);
    if (m && !/tentative/.test(out)) return m[1]!;
    if (Date.now() > deadline) throw new Error(`${dev} in ${ns} has no usable link-local address:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A home directory for the appliance in the lab's directory; its IPv6 lease journal is `leases6`. */
export function applianceHome(lab: Lab): { home: string; leases6: string } {
  const home = path.join(lab.dir, 'home');
  mkdirSync(path.join(home, 'tftp'), { recursive: true });
  writeFileSync(path.join(home, 'appliance.json'), '{}\n');
  return { home, leases6: path.join(home, 'leases6.json') };
}

/** Start the appliance in the server namespace: DHCP off, fd00:99::1 on br0, range ::100-::1ff, and `args`. */
export function startAppliance(lab: Lab, home: string, args: string[]): Proc {
  return lab.spawn(lab.srv, [
    process.execPath,
    path.join(ROOT, 'bin', 'appliance'),
    '--config',
    path.join(home, 'appliance.json'),
    '--db',
    path.join(home, 'db.json'),
    '--tftp-root',
    path.join(home, 'tftp'),
    '--interface',
    'br0',
    '--address',
    '10.99.0.1',
    '--address6',
    'fd00:99::1',
    '--dhcp-mode',
    'off',
    '--dhcp6-range',
    'fd00:99::100-fd00:99::1ff',
    '--lease6-file',
    path.join(home, 'leases6.json'),
    '--http-port',
    '0',
    '--tftp-port',
    '0',
    ...args,
  ]);
}

/** ISC dhclient's script (it gets no inherited environment): append what it was told to a file. */
export function dhclient6Script(dir: string, name: string): { script: string; events: string } {
  const script = path.join(dir, `${name}.sh`);
  const events = path.join(dir, `${name}.events`);
  writeFileSync(
    script,
    `#!/bin/sh
echo "DHCLIENT6 $reason ip6=$new_ip6_address dns=$new_dhcp6_name_servers server=$new_dhcp6_server_id" >> ${events}
exit 0
`,
  );
  chmodSync(script, 0o755);
  writeFileSync(events, '');
  return { script, events };
}
