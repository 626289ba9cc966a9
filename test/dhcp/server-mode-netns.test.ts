/**
 * The DHCP server mode against real clients nobody here wrote (busybox udhcpc, ISC dhclient) and
 * a real other server (dnsmasq), in network namespaces this test creates and deletes. Needs root,
 * iproute2, busybox or udhcpc, isc-dhcp-client and dnsmasq-base. Topology per test:
 *
 *   netns SRV: bridge br0 10.99.0.1/24  --veth--  netns C1 (eth0)
 *                                       --veth--  netns C2 (eth0)  ...
 *
 * The server runs on the real ports 67/4011 through src/dhcp/run.ts.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadLeaseFileSync } from '../../src/dhcp/lease-file.js';
import { decodePacket, encodePacket } from '../../src/dhcp/packet.js';
import { fixture } from './helpers.js';
import { ROOT, UDHCPC, dhclientScript, ip, makeLab, startDnsmasq, stopServer, udhcpcScript, waitForFile } from './netns-lab.js';

test.serial('udhcpc and dhclient obtain, renew and release leases; no duplicates; a restart keeps leases', async (t) => {
  const lab = makeLab(t, 3);
  const [c1, c2, c3] = lab.clients as [string, string, string];
  const leaseFile = path.join(lab.dir, 'leases.json');
  // Three addresses only: if the leases were lost on restart, the third client would get .100.
  const serverArgs = [
    '--range',
    '10.99.0.100-10.99.0.102',
    '--lease-file',
    leaseFile,
    '--lease-time',
    '10',
    '--router',
    '10.99.0.1',
    '--dns',
    '10.99.0.53',
    '--domain',
    'lab.test',
    '--log-level',
    'debug',
  ];
  let server = lab.server(serverArgs);
  await server.waitForLog((l) => l['msg'] === 'dhcp server listening', 20_000);
  const uscript = udhcpcScript(lab.dir);

  // udhcpc (busybox) in C1.
  const u1 = lab.spawn(c1, [...UDHCPC, '-f', '-t', '5', '-T', '1', '-A', '1', '-s', uscript, '-i', 'eth0']);
  const bound1 = await u1.waitFor(/UDHCPC bound ip=(\S+) mask=(\S+) router=(\S+) dns=(\S+) domain=(\S+) lease=(\d+) serverid=(\S+)/, 20_000);
  const ip1 = bound1[1]!;
  t.deepEqual(bound1.slice(2), ['24', '10.99.0.1', '10.99.0.53', 'lab.test', '10', '10.99.0.1']);

  // dhclient (ISC) in C2: obtains a lease and renews it by unicast at T1 (5 s).
  const dh = dhclientScript(lab.dir, 'c2');
  const dhArgs = ['-lf', path.join(lab.dir, 'c2.leases'), '-pf', path.join(lab.dir, 'c2.pid'), '-sf', dh.script, 'eth0'];
  const d2 = lab.spawn(c2, ['dhclient', '-1', '-d', '-v', ...dhArgs]);
  const bound2 = await waitForFile(
    dh.events,
    /DHCLIENT BOUND ip=(\S+) mask=255.255.255.0 router=10.99.0.1 dns=10.99.0.53 domain=lab.test lease=10 server=10.99.0.1/,
    20_000,
  );
  const ip2 = bound2[1]!;
  t.not(ip1, ip2, 'two clients never share an address');
  await waitForFile(dh.events, new RegExp(`DHCLIENT RENEW ip=${ip2.replace(/\./g, '\\.')} `), 15_000);
  await server.waitForLog((l) => l['msg'] === 'dhcp ack' && l['ip'] === ip2 && l['to'] === `${ip2}:68`, 5000);
  t.truthy(
    d2.lines.find((l) => /DHCPREQUEST for .* to 10\.99\.0\.1 port 67/.test(l)),
    'dhclient renewed by unicast to us',
  );

  // udhcpc renew on SIGUSR1 (unicast REQUEST from its address).
  const mark = u1.lines.length;
  u1.signal('SIGUSR1');
  await u1.waitFor(new RegExp(`UDHCPC renew ip=${ip1.replace(/\./g, '\\.')} `), 10_000, mark);
  await server.waitForLog((l) => l['msg'] === 'dhcp ack' && l['ip'] === ip1 && l['to'] === `${ip1}:68`, 5000);

  // Restart the server: leases come back from the file.
  await stopServer(t, server);
  const onDisk = loadLeaseFileSync(leaseFile);
  t.deepEqual(
    onDisk.leases
      .filter((l) => l.state === 'bound')
      .map((l) => l.ip)
      .sort(),
    [ip1, ip2].sort(),
  );
  server = lab.server(serverArgs);
  await server.waitForLog((l) => l['msg'] === 'dhcp server listening', 20_000);
  // A new client in C3 gets the third address, not one of the remembered ones.
  const u3 = lab.spawn(c3, [...UDHCPC, '-f', '-q', '-t', '5', '-T', '1', '-A', '1', '-s', uscript, '-i', 'eth0']);
  const bound3 = await u3.waitFor(/UDHCPC bound ip=(\S+)/, 20_000);
  t.false([ip1, ip2].includes(bound3[1]!), `third client got ${bound3[1]}, not ${ip1} or ${ip2}`);
  // C1 starts afresh (a reboot: its udhcpc forgets everything) and gets its address back.
  u1.signal('SIGKILL');
  await u1.exited;
  const u1b = lab.spawn(c1, [...UDHCPC, '-f', '-t', '5', '-T', '1', '-A', '1', '-s', uscript, '-i', 'eth0']);
  t.is((await u1b.waitFor(/UDHCPC bound ip=(\S+)/, 20_000))[1], ip1, 'same client, same address after the restart');

  // Release: udhcpc on SIGUSR2, dhclient -r.
  u1b.signal('SIGUSR2');
  await server.waitForLog((l) => l['msg'] === 'dhcp release' && l['ip'] === ip1, 10_000);
  const rel = lab.spawn(c2, ['dhclient', '-r', '-v', ...dhArgs]);
  await rel.exited;
  await server.waitForLog((l) => l['msg'] === 'dhcp release' && l['ip'] === ip2, 10_000);
  await stopServer(t, server);
  const after = loadLeaseFileSync(leaseFile);
  t.like(
    after.leases.find((l) => l.ip === ip1),
    { state: 'released' },
  );
  t.like(
    after.leases.find((l) => l.ip === ip2),
    { state: 'released' },
  );
  t.false(
    server.logs.some((l) => (l['level'] as number) >= 50),
    'no error logged',
  );
});

test.serial('probe and auto mode beside dnsmasq; server mode refuses to start next to it unless --force', async (t) => {
  const lab = makeLab(t, 2);
  const [dns, client] = lab.clients as [string, string];
  ip('-n', dns, 'addr', 'add', '10.99.0.2/24', 'dev', 'eth0');
  const leaseFile = path.join(lab.dir, 'leases.json');
  const modeArgs = ['--range', '10.99.0.100-10.99.0.110', '--lease-file', leaseFile];

  // Nobody else: the probe finds nothing.
  const none = lab.server(['--mode', 'probe']);
  t.is(await none.exited, 0);
  t.like(
    none.logs.find((l) => l['msg'] === 'dhcp probe result'),
    { found: false },
  );

  const dnsmasq = startDnsmasq(lab, dns, ['--dhcp-range=10.99.0.150,10.99.0.160,1h']);
  await dnsmasq.waitFor(/DHCP, IP range 10\.99\.0\.150/, 10_000);

  // dnsmasq pings a candidate address for 3 s before its first OFFER: the default 5 s probe.
  const found = lab.server(['--mode', 'probe', '--probe-timeout', '5000']);
  t.is(await found.exited, 0);
  const result = found.logs.find((l) => l['msg'] === 'dhcp probe result') as { found: boolean; servers: Array<{ serverId: string; offered: string }> };
  t.true(result.found, `dnsmasq said:\n${dnsmasq.lines.join('\n')}\nprobe:\n${found.lines.join('\n')}`);
  t.is(result.servers[0]?.serverId, '10.99.0.2');
  t.regex(result.servers[0]?.offered ?? '', /^10\.99\.0\.1(5\d|60)$/);

  const refused = lab.server(['--mode', 'server', '--probe-timeout', '5000', ...modeArgs]);
  t.is(await refused.exited, 1);
  t.like(
    refused.logs.find((l) => l['msg'] === 'dhcp failed to start'),
    { code: 'ERR_DHCP_OTHER_SERVER' },
  );
  t.false(existsSync(leaseFile), 'nothing was served');

  const auto = lab.server(['--mode', 'auto', '--probe-timeout', '5000', ...modeArgs]);
  t.like(await auto.waitForLog((l) => String(l['msg']).startsWith('dhcp mode auto chose'), 10_000), { mode: 'proxy' });
  await auto.waitForLog((l) => l['msg'] === 'proxydhcp listening', 10_000);
  await stopServer(t, auto);

  const forced = lab.server(['--mode', 'server', '--force', '--probe-timeout', '5000', ...modeArgs]);
  await forced.waitForLog((l) => l['msg'] === 'dhcp server listening', 10_000);
  t.truthy(forced.logs.find((l) => l['level'] === 40 && /starting anyway/.test(String(l['msg']))));
  await stopServer(t, forced);

  // dnsmasq gone: auto mode serves addresses itself, and a real client gets one from our range.
  dnsmasq.signal('SIGTERM');
  await dnsmasq.exited;
  const alone = lab.server(['--mode', 'auto', ...modeArgs]);
  t.like(await alone.waitForLog((l) => String(l['msg']).startsWith('dhcp mode auto chose'), 10_000), { mode: 'server' });
  await alone.waitForLog((l) => l['msg'] === 'dhcp server listening', 10_000);
  const u = lab.spawn(client, [...UDHCPC, '-f', '-q', '-t', '5', '-T', '1', '-A', '1', '-s', udhcpcScript(lab.dir), '-i', 'eth0']);
  const bound = await u.waitFor(/UDHCPC bound ip=(\S+) .*serverid=(\S+)/, 20_000);
  t.is(bound[2], '10.99.0.1');
  t.regex(bound[1]!, /^10\.99\.0\.1(0\d|10)$/);

  // Captured EDK2 PXE DISCOVER from the same segment: the OFFER names the TFTP boot file itself.
  ip('-n', client, 'route', 'add', 'default', 'dev', 'eth0');
  const pxe = decodePacket(fixture('edk2-ovmf-x64-discover'));
  const hex = encodePacket({ ...pxe, xid: 0x0e0e0e0e }).toString('hex');
  const probe = lab.spawn(client, [
    process.execPath,
    '--import',
    'tsx',
    path.join(ROOT, 'test/dhcp/netns-client.ts'),
    '0.0.0.0',
    '68',
    '255.255.255.255',
    '67',
    '2500',
    hex,
  ]);
  await probe.exited;
  const report = JSON.parse(probe.lines.at(-1) ?? '{}') as { received?: Array<Record<string, unknown>> };
  t.like(
    report.received?.find((r) => r['xid'] === 0x0e0e0e0e),
    { from: '10.99.0.1', fromPort: 67, type: 2, file: 'snponly.efi', siaddr: '10.99.0.1' },
  );
  const offerLog = await alone.waitForLog((l) => l['msg'] === 'dhcp offer' && l['xid'] === 0x0e0e0e0e, 2000);
  t.like(offerLog, { mac: '52:54:00:12:34:63', arch: 'efi-x64', client: 'pxe', file: 'snponly.efi' });
  t.regex(String(offerLog['ip']), /^10\.99\.0\.1(0\d|10)$/);
  await stopServer(t, alone);
});

test.serial(
  'REBINDING: when the server that granted a lease is gone, udhcpc broadcasts and the server now on the segment ACKs from the lease file',
  async (t) => {
    const lab = makeLab(t, 1);
    const [c1] = lab.clients as [string];
    const leaseFile = path.join(lab.dir, 'leases.json');
    const args = ['--range', '10.99.0.100-10.99.0.110', '--lease-file', leaseFile, '--log-level', 'debug'];
    const first = lab.server(args);
    await first.waitForLog((l) => l['msg'] === 'dhcp server listening', 20_000);
    const u = lab.spawn(c1, [...UDHCPC, '-f', '-t', '5', '-T', '1', '-A', '1', '-s', udhcpcScript(lab.dir), '-i', 'eth0']);
    const addr = (await u.waitFor(/UDHCPC bound ip=(\S+) .*serverid=10\.99\.0\.1/, 20_000))[1]!;
    await stopServer(t, first);
    // The appliance comes back under another address: unicast renewals to 10.99.0.1 go nowhere.
    ip('-n', lab.srv, 'addr', 'del', '10.99.0.1/24', 'dev', 'br0');
    ip('-n', lab.srv, 'addr', 'add', '10.99.0.2/24', 'dev', 'br0');
    const second = lab.server([...args, '--address', '10.99.0.2']);
    await second.waitForLog((l) => l['msg'] === 'dhcp server listening', 20_000);
    // SIGUSR1: RENEWING now; three unicast renewals (-T 1) time out, then udhcpc enters REBINDING
    // and broadcasts the REQUEST with ciaddr set (RFC 2131 section 4.4.5).
    const mark = u.lines.length;
    u.signal('SIGUSR1');
    await u.waitFor(new RegExp(`UDHCPC renew ip=${addr.replace(/\./g, '\\.')} .*serverid=10\\.99\\.0\\.2`), 20_000, mark);
    const said = u.lines.slice(mark);
    t.true(
      said.some((l) => /sending renew to server 10\.99\.0\.1/.test(l)),
      'renewing by unicast first',
    );
    t.true(
      said.some((l) => /broadcasting renew/.test(l)),
      `then rebinding by broadcast: ${said.join(' | ')}`,
    );
    const ack = await second.waitForLog((l) => l['msg'] === 'dhcp ack' && l['ip'] === addr, 2000);
    t.like(ack, { to: `${addr}:68` }, 'the ACK to a rebinding client goes to ciaddr');
    t.false(
      second.logs.some((l) => l['msg'] === 'dhcp offer'),
      'no new DISCOVER: the lease was rebound, not started over',
    );
    await stopServer(t, second);
  },
);
