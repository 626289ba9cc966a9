/**
 * DHCPv6 server mode is never the reason a link breaks, proven against programs nobody here
 * wrote, in namespaces this test makes and removes (random names; bin/appliance, built dist/):
 *  - dnsmasq as a stateful DHCPv6 server, then as a stateless one (Information-request only):
 *    `--dhcp6-mode server` exits 1 naming dnsmasq's address and DUID; `--force` starts with a
 *    warning; `auto` chooses proxy; beside a dnsmasq that hands PXE clients a boot-file URL even
 *    `--dhcp6-mode proxy` exits 1 (two PXE responders);
 *  - the appliance leasing alone, dnsmasq starts: the re-probe finds it, the appliance stops
 *    leasing (and its RAs); dnsmasq stops: after two quiet probes it leases again;
 *  - one host multicasting Solicits with 40 made-up DUIDs gets addresses for 8 of them (a
 *    warning names the cap), and ISC dhclient -6 on another host still gets an address.
 * Needs root, iproute2, dnsmasq, isc-dhcp-client.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ip, makeLab, ROOT, startDnsmasq, waitForFile, type Lab, type Proc } from '../dhcp/netns-lab.js';
import { applianceHome, dhclient6Script, linkLocal, startAppliance as appliance } from './netns-appliance.js';

function dnsmasq(lab: Lab, ns: string, range: string): Proc {
  return startDnsmasq(lab, ns, [`--dhcp-range=${range}`]);
}

/** SIGTERM (an appliance once it is ready); it must be gone within 10 s. */
async function stop(p: Proc, ready = true): Promise<void> {
  if (ready) await p.waitForLog((l) => l['msg'] === 'netboot appliance ready', 20_000);
  p.signal('SIGTERM');
  const gone = await Promise.race([p.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
  if (!gone) throw new Error(`still running 10 s after SIGTERM:\n${p.lines.slice(-20).join('\n')}`);
}

const fatal = (p: Proc) => p.logs.find((l) => l['level'] === 60);

test.serial('beside dnsmasq: refused, forced, auto proxy; steps down when it appears and back when it goes; one host cannot take the pool', async (t) => {
  t.timeout(150_000);
  const lab = makeLab(t, 2);
  const [other, client] = lab.clients as [string, string];
  ip('-n', lab.srv, 'addr', 'add', 'fd00:99::1/64', 'dev', 'br0', 'nodad');
  ip('-n', other, 'addr', 'add', 'fd00:99::2/64', 'dev', 'eth0', 'nodad');
  const { home, leases6: lease6 } = applianceHome(lab);
  await linkLocal(lab.srv, 'br0');
  const otherLl = await linkLocal(other, 'eth0');
  await linkLocal(client, 'eth0');

  // 1. dnsmasq leasing (stateful): server mode refuses, naming it.
  let d = dnsmasq(lab, other, 'fd00:99::500,fd00:99::5ff,64,1h');
  await d.waitFor(/DHCPv6, IP range fd00:99::500/, 10_000);
  const refused = appliance(lab, home, ['--dhcp6-mode', 'server']);
  t.is(await refused.exited, 1, refused.lines.slice(-10).join('\n'));
  t.like(fatal(refused), { code: 'ERR_DHCP6_OTHER_SERVER' });
  const msg = String(fatal(refused)?.['msg']);
  t.true(msg.startsWith(`another dhcpv6 server answers on br0: ${otherLl} (DUID `), msg);
  t.regex(msg, /, advertised fd00:99::5[0-9a-f]{2}\); run --dhcp6-mode proxy beside it, stop it, or pass --force$/);
  t.false(existsSync(lease6), 'a refused server wrote a lease file');
  t.false(
    refused.logs.some((l) => l['msg'] === 'dhcpv6 listening' || l['msg'] === 'sending router advertisements'),
    'nothing was served or advertised',
  );

  // --force: starts, with a warning naming it; auto: proxy beside it.
  const forced = appliance(lab, home, ['--dhcp6-mode', 'server', '--force']);
  await forced.waitForLog((l) => l['msg'] === 'dhcpv6 listening', 20_000);
  t.truthy(
    forced.logs.find(
      (l) => l['level'] === 40 && String(l['msg']).includes(`another dhcpv6 server answers on br0: ${otherLl}`) && /--force/.test(String(l['msg'])),
    ),
  );
  await stop(forced);
  const auto = appliance(lab, home, ['--dhcp6-mode', 'auto']);
  t.like(await auto.waitForLog((l) => String(l['msg']).startsWith('dhcpv6 mode auto chose'), 20_000), { mode: 'proxy' });
  await auto.waitForLog((l) => l['msg'] === 'dhcpv6 listening', 10_000);
  t.false(auto.logs.some((l) => l['msg'] === 'sending router advertisements'));
  await stop(auto);
  await stop(d, false);

  // dnsmasq handing PXE clients a boot-file URL: even proxy mode refuses (two PXE responders).
  d = startDnsmasq(lab, other, ['--dhcp-range=fd00:99::500,fd00:99::5ff,64,1h', '--dhcp-option=option6:bootfile-url,tftp://[fd00:99::2]/other.efi']);
  await d.waitFor(/DHCPv6, IP range fd00:99::500/, 10_000);
  const responder = appliance(lab, home, ['--dhcp6-mode', 'proxy']);
  t.is(await responder.exited, 1, responder.lines.slice(-10).join('\n'));
  t.like(fatal(responder), { code: 'ERR_DHCP6_OTHER_RESPONDER' });
  t.true(String(fatal(responder)?.['msg']).startsWith(`another dhcpv6 pxe responder answers on br0: ${otherLl}`), String(fatal(responder)?.['msg']));
  await stop(d, false);

  // 2. dnsmasq stateless (answers Information-requests only): refused too.
  d = dnsmasq(lab, other, '::,static');
  await d.waitFor(/DHCPv6, static leases only on ::/, 10_000);
  const stateless = appliance(lab, home, ['--dhcp6-mode', 'server']);
  t.is(await stateless.exited, 1, stateless.lines.slice(-10).join('\n'));
  t.like(fatal(stateless), { code: 'ERR_DHCP6_OTHER_SERVER' });
  await stop(d, false);

  // 3. Alone: leasing; dnsmasq appears: step down; it goes: lease again.
  const server = appliance(lab, home, ['--dhcp6-mode', 'server', '--dhcp-probe-interval', '2', '--log-level', 'debug']);
  await server.waitForLog((l) => l['msg'] === 'dhcpv6 listening', 20_000);
  await server.waitForLog((l) => l['msg'] === 'sending router advertisements', 10_000);
  d = dnsmasq(lab, other, 'fd00:99::500,fd00:99::5ff,64,1h');
  await d.waitFor(/DHCPv6, IP range fd00:99::500/, 10_000);
  const down = await server.waitForLog((l) => l['level'] === 50 && String(l['msg']).startsWith('another dhcpv6 server'), 20_000);
  t.regex(String(down['msg']), /^another dhcpv6 server now answers on br0: .*; stopped leasing addresses and sending router advertisements/);
  t.true(String(down['msg']).includes(otherLl));
  await stop(d, false);
  await server.waitForLog((l) => String(l['msg']).startsWith('no other dhcpv6 server answered two probes in a row'), 30_000);

  // 4. One host, 40 new DUIDs: 8 get addresses, a warning names the cap.
  const flood = lab.spawn(other, [process.execPath, '--import', 'tsx', path.join(ROOT, 'test/dhcp6/solicit-flood.ts'), 'eth0', '40', '2000']);
  t.is(await flood.exited, 0, flood.lines.join('\n'));
  const result = JSON.parse(flood.lines.at(-1)!) as { sent: number; advertised: number; withAddress: number };
  t.is(result.sent, 40);
  t.true(result.advertised >= 30, `every Solicit is answered, most with NoAddrsAvail: ${JSON.stringify(result)}`);
  t.is(result.withAddress, 8, JSON.stringify(result));
  const warn = server.logs.find((l) => l['level'] === 40 && String(l['msg']).startsWith('dhcpv6 lease budget'));
  t.like(warn, { cap: 'clients-per-host' });
  t.regex(String(warn?.['msg']), /--dhcp6-max-per-host/);

  // ISC dhclient -6 on another host still gets an address from the range.
  const { script, events } = dhclient6Script(lab.dir, 'c');
  lab.spawn(client, ['dhclient', '-6', '-1', '-d', '-v', '-lf', path.join(lab.dir, 'c.leases'), '-pf', path.join(lab.dir, 'c.pid'), '-sf', script, 'eth0']);
  const bound = await waitForFile(events, /DHCLIENT6 BOUND6 ip6=(\S+) /, 30_000);
  t.regex(bound[1]!, /^fd00:99::1[0-9a-f]{2}$/);
  await stop(server);
});
