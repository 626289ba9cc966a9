/**
 * The DHCPv6 server mode of the real appliance (`node bin/appliance`, built dist/) against ISC
 * dhclient -6 (nobody here wrote it) in namespaces this test makes and removes: the client gets
 * an address from the range and the DNS server, releases it (the journal says so), asks
 * stateless for configuration (Information-request), and takes a SLAAC address from the
 * appliance's own router advertisement (scripts/send-ra). Needs root, iproute2, isc-dhcp-client.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ip, makeLab, waitForFile } from '../dhcp/netns-lab.js';
import { applianceHome, dhclient6Script, linkLocal, startAppliance } from './netns-appliance.js';

test.serial('dhclient -6 leases from the appliance, releases, asks stateless; the RA gives a SLAAC address', async (t) => {
  t.timeout(90_000);
  const lab = makeLab(t, 1);
  const c = lab.clients[0]!;
  ip('-n', lab.srv, 'addr', 'add', 'fd00:99::1/64', 'dev', 'br0', 'nodad');
  const { home, leases6: lease6 } = applianceHome(lab);
  const server = startAppliance(lab, home, ['--dhcp6-mode', 'server', '--dns6', 'fd00:99::53', '--lease-time', '120', '--log-level', 'debug']);
  await server.waitForLog((l) => l['msg'] === 'sending router advertisements', 30_000);
  await server.waitForLog((l) => l['msg'] === 'dhcpv6 listening', 5_000);
  await linkLocal(c);

  const s = dhclient6Script(lab.dir, 'c');
  const common = ['-lf', path.join(lab.dir, 'c.leases'), '-pf', path.join(lab.dir, 'c.pid'), '-sf', s.script, 'eth0'];
  const d = lab.spawn(c, ['dhclient', '-6', '-1', '-d', '-v', ...common]);
  const bound = await waitForFile(s.events, /DHCLIENT6 BOUND6 ip6=(\S+) dns=(\S+) server=(\S+)/, 30_000);
  t.regex(bound[1]!, /^fd00:99::1[0-9a-f]{2}$/, 'an address from the range');
  t.is(bound[2], 'fd00:99::53');
  await server.waitForLog((l) => l['msg'] === 'dhcpv6 reply (bound)', 5_000);
  t.regex(readFileSync(lease6, 'utf8'), new RegExp(`"ip":"${bound[1]}","state":"bound"`));
  d.signal('SIGKILL');
  await d.exited;

  // Release (dhclient -r reads the lease file): the journal records it.
  const r = lab.spawn(c, ['dhclient', '-6', '-r', '-v', ...common]);
  await r.exited;
  await server.waitForLog((l) => l['msg'] === 'dhcpv6 reply (released)', 10_000);
  t.regex(readFileSync(lease6, 'utf8'), new RegExp(`"ip":"${bound[1]}","state":"released"`));

  // Stateless: Information-request -> Reply with the DNS server, no address.
  const si = lab.spawn(c, [
    'dhclient',
    '-6',
    '-S',
    '-1',
    '-d',
    '-v',
    '-lf',
    path.join(lab.dir, 's.leases'),
    '-pf',
    path.join(lab.dir, 's.pid'),
    '-sf',
    s.script,
    'eth0',
  ]);
  // (dhclient reports a stateless Reply as RENEW6, with no address)
  await waitForFile(s.events, /DHCLIENT6 (?:INFORM6|RENEW6) ip6= dns=fd00:99::53/, 30_000);
  await server.waitForLog((l) => l['msg'] === 'dhcpv6 information reply', 5_000);
  si.signal('SIGKILL');

  // The router advertisement (M and O flags, prefix autonomous): the kernel made a SLAAC address.
  const deadline = Date.now() + 20_000;
  let addrs = '';
  while (!/inet6 fd00:99::[0-9a-f:]+\/64 scope global dynamic/.test(addrs) && Date.now() < deadline) {
    execFileSync('ip', ['netns', 'exec', c, 'ip', 'link', 'set', 'eth0', 'up']);
    addrs = execFileSync('ip', ['-n', c, '-6', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' });
    await new Promise((res) => setTimeout(res, 250));
  }
  t.regex(addrs, /inet6 fd00:99::[0-9a-f:]+\/64 scope global dynamic/, 'no SLAAC address from the appliance RA');
  // Router lifetime 0: the client has no default route through the appliance.
  t.notRegex(execFileSync('ip', ['-n', c, '-6', 'route'], { encoding: 'utf8' }), /default/);
});
