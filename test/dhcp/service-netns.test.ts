/**
 * The segment-safety rules of the DHCP service (src/dhcp/service.ts), each proven in network
 * namespaces this test makes (netns-lab.ts) with clients nobody here wrote: busybox udhcpc, a
 * real dnsmasq, and a standard-library Python sender for the hostile packets
 * (tools/hostile-sender.py). The appliance's DHCP runs through src/dhcp/run.ts on the real
 * ports 67/4011, as the VM lab runs it. Needs root, iproute2, busybox, dnsmasq-base, python3.
 */
import test from 'ava';
import path from 'node:path';
import { ROOT, UDHCPC, ip, makeLab, startDnsmasq, stopServer, udhcpcScript, type Lab, type Proc } from './netns-lab.js';

const SENDER = path.join(ROOT, 'test/dhcp/tools/hostile-sender.py');

interface SenderReport {
  sent: number;
  replies: Array<{ xid: number; type: number; yiaddr: string; mac: string; server: string }>;
}

async function send(lab: Lab, ns: string, args: string[]): Promise<SenderReport> {
  const p = lab.spawn(ns, ['python3', SENDER, ...args]);
  const code = await p.exited;
  if (code !== 0) throw new Error(`hostile-sender exited ${code}:\n${p.lines.join('\n')}`);
  return JSON.parse(p.lines.at(-1) ?? '{}') as SenderReport;
}

/** dnsmasq without its ping before an OFFER: these tests want its answer at once. */
function dnsmasq(lab: Lab, ns: string, extra: string[]): Proc {
  return startDnsmasq(lab, ns, ['--no-ping', ...extra]);
}

const udhcpc = (lab: Lab, ns: string, extra: string[] = []): Proc =>
  lab.spawn(ns, [...UDHCPC, '-f', '-q', '-t', '4', '-T', '1', '-A', '1', '-s', udhcpcScript(lab.dir), '-i', 'eth0', ...extra]);
const BOUND = /UDHCPC bound ip=(\S+) .*serverid=(\S+)/;

test.serial(
  'one responder per segment: a second listener on this host, an appliance on another host, and dnsmasq in proxy mode are refused (exit 1, named) unless --force',
  async (t) => {
    const lab = makeLab(t, 2);
    const [other, dns] = lab.clients as [string, string];
    ip('-n', other, 'addr', 'add', '10.99.0.5/24', 'dev', 'eth0');
    ip('-n', dns, 'addr', 'add', '10.99.0.2/24', 'dev', 'eth0');
    const proxyArgs = ['--mode', 'proxy', '--probe-timeout', '1500'];

    const first = lab.server(proxyArgs);
    await first.waitForLog((l) => l['msg'] === 'proxydhcp listening', 20_000);

    // Same host: SO_REUSEADDR would let it share 67/4011; the port check names the holder.
    const second = lab.server(proxyArgs);
    t.is(await second.exited, 1);
    const shared = second.logs.find((l) => l['msg'] === 'dhcp failed to start');
    t.is(shared?.['code'], 'ERR_DHCP_PORT_SHARED');
    t.regex(String(shared?.['err']), new RegExp(`node \\(pid \\d+\\) on 0\\.0\\.0\\.0:67.*--force`));

    // Another host on the segment: its PXE probe is answered by the first appliance.
    const far = lab.spawn(other, [process.execPath, '--import', 'tsx', path.join(ROOT, 'src/dhcp/run.ts'), '--address', '10.99.0.5', ...proxyArgs]);
    t.is(await far.exited, 1);
    const responder = far.logs.find((l) => l['msg'] === 'dhcp failed to start');
    t.is(responder?.['code'], 'ERR_DHCP_OTHER_RESPONDER');
    t.regex(String(responder?.['err']), /another pxe responder \(10\.99\.0\.1\) already answers pxe clients on eth0.*--force/);
    await stopServer(t, first);

    // dnsmasq as a ProxyDHCP (the classic pairing) on the segment: refused, named.
    const proxy = dnsmasq(lab, dns, ['--dhcp-range=10.99.0.0,proxy', '--pxe-service=x86PC,Network boot,undionly.kpxe']);
    await proxy.waitFor(/DHCP, proxy on subnet 10\.99\.0\.0/, 10_000);
    const refused = lab.server(proxyArgs);
    t.is(await refused.exited, 1);
    t.like(
      refused.logs.find((l) => l['msg'] === 'dhcp failed to start'),
      { code: 'ERR_DHCP_OTHER_RESPONDER' },
    );
    t.regex(String(refused.logs.find((l) => l['msg'] === 'dhcp failed to start')?.['err']), /\(10\.99\.0\.2\)/);
    const forced = lab.server([...proxyArgs, '--force']);
    await forced.waitForLog((l) => l['msg'] === 'proxydhcp listening', 20_000);
    t.truthy(forced.logs.find((l) => l['level'] === 40 && /another pxe responder \(10\.99\.0\.2\).*starting anyway \(--force\)/.test(String(l['msg']))));
    await stopServer(t, forced);
  },
);

test.serial('auto mode on an interface that carries the default route picks proxy, with one line saying why and how to force server', async (t) => {
  const lab = makeLab(t, 1);
  const [client] = lab.clients as [string];
  ip('-n', lab.srv, 'route', 'add', 'default', 'via', '10.99.0.254', 'dev', 'br0');
  const auto = lab.server(['--mode', 'auto', '--range', '10.99.0.100-10.99.0.110', '--lease-file', path.join(lab.dir, 'leases.json')]);
  const chose = await auto.waitForLog((l) => String(l['msg']).startsWith('dhcp mode auto chose'), 20_000);
  t.is(chose['mode'], 'proxy');
  t.regex(
    String(chose['msg']),
    /no dhcp server answered within \d+ ms, but br0 carries this host's default route .*pass --dhcp-mode server to hand out addresses here/,
  );
  t.is(auto.logs.filter((l) => String(l['msg']).startsWith('dhcp mode auto chose')).length, 1);
  await auto.waitForLog((l) => l['msg'] === 'proxydhcp listening', 5000);
  // A plain client gets no address from it.
  const u = udhcpc(lab, client, ['-n']);
  t.is(await u.exited, 1, 'udhcpc got an address from a proxy');
  t.false(auto.logs.some((l) => l['msg'] === 'dhcp offer'));
  await stopServer(t, auto);
});

test.serial(
  'a server that sees dnsmasq appear steps down within two probe intervals; clients then get only dnsmasq addresses; it resumes when dnsmasq is gone',
  async (t) => {
    const lab = makeLab(t, 4);
    const [c1, dns, c3, c4] = lab.clients as [string, string, string, string];
    ip('-n', dns, 'addr', 'add', '10.99.0.2/24', 'dev', 'eth0');
    const intervalS = 3;
    const server = lab.server([
      '--range',
      '10.99.0.100-10.99.0.110',
      '--lease-file',
      path.join(lab.dir, 'leases.json'),
      '--probe-interval',
      String(intervalS),
      '--probe-timeout',
      '1000',
    ]);
    await server.waitForLog((l) => l['msg'] === 'dhcp server listening', 20_000);
    const ours = await udhcpc(lab, c1).waitFor(BOUND, 20_000);
    t.is(ours[2], '10.99.0.1');

    const upstream = dnsmasq(lab, dns, ['--dhcp-range=10.99.0.150,10.99.0.160,1h']);
    await upstream.waitFor(/DHCP, IP range 10\.99\.0\.150/, 10_000);
    const appeared = Date.now();
    const down = await server.waitForLog((l) => l['level'] === 50 && /stopped handing out addresses/.test(String(l['msg'])), 4 * intervalS * 1000);
    const took = Date.now() - appeared;
    t.true(took <= 2 * intervalS * 1000, `stepped down after ${took} ms`);
    t.deepEqual(down['servers'], ['10.99.0.2']);

    const offersBefore = server.logs.filter((l) => l['msg'] === 'dhcp offer').length;
    for (const ns of [c3, c4]) {
      const bound = await udhcpc(lab, ns).waitFor(BOUND, 20_000);
      t.is(bound[2], '10.99.0.2', `${ns} was served by us`);
      t.regex(bound[1]!, /^10\.99\.0\.1(5\d|60)$/);
    }
    t.is(server.logs.filter((l) => l['msg'] === 'dhcp offer').length, offersBefore, 'no offer after stepping down');

    upstream.signal('SIGTERM');
    await upstream.exited;
    await server.waitForLog((l) => /handing out addresses again/.test(String(l['msg'])), 6 * intervalS * 1000);
    const again = await udhcpc(lab, c3).waitFor(BOUND, 20_000);
    t.is(again[2], '10.99.0.1');
    await stopServer(t, server);
  },
);

test.serial(
  'reservations belong to their MAC: a spoofed client id neither takes nor blocks it, a client id change keeps it, a claim from another MAC is NAKed and logged',
  async (t) => {
    const lab = makeLab(t, 2);
    const [victim, attacker] = lab.clients as [string, string];
    const mac = '52:54:00:aa:00:01';
    ip('-n', victim, 'link', 'set', 'eth0', 'address', mac);
    const server = lab.server([
      '--range',
      '10.99.0.100-10.99.0.110',
      '--lease-file',
      path.join(lab.dir, 'leases.json'),
      '--reservation',
      `${mac}=10.99.0.50=victim`,
      '--log-level',
      'debug',
    ]);
    await server.waitForLog((l) => l['msg'] === 'dhcp server listening', 20_000);

    // The attack that used to work: the victim's chaddr with a made-up client id, asking for its address.
    await send(lab, attacker, ['initreboot', '1', '1', `mac=${mac}`, 'clientid=ff00c0ffee00c0ffee', 'ip=10.99.0.50']);
    const first = await udhcpc(lab, victim).waitFor(BOUND, 20_000);
    t.deepEqual([first[1], first[2]], ['10.99.0.50', '10.99.0.1']);
    // The victim's own client changes its client id (firmware 01+MAC, then a DUID): still its address.
    const duid = await udhcpc(lab, victim, ['-x', '0x3d:ff000000010001000130c8a6a2525400aa0001']).waitFor(BOUND, 20_000);
    t.is(duid[1], '10.99.0.50');
    t.false(
      server.logs.some((l) => l['msg'] === 'dhcp nak' && l['mac'] === mac),
      'the victim was NAKed',
    );

    // Another MAC claims the reserved address: NAK, and a warn line naming both MACs.
    const claim = await send(lab, attacker, ['initreboot', '1', '1.5', 'mac=02:00:00:00:00:66', 'ip=10.99.0.50']);
    t.deepEqual(
      claim.replies.map((r) => r.type),
      [6],
      'a NAK and nothing else',
    );
    const warn = await server.waitForLog((l) => l['level'] === 40 && /reserved for/.test(String(l['msg'])), 5000);
    t.like(warn, { mac: '02:00:00:00:00:66', reservedFor: mac, ip: '10.99.0.50' });
    t.regex(String(warn['msg']), /10\.99\.0\.50 is reserved for 52:54:00:aa:00:01, refused to 02:00:00:00:00:66/);
    await stopServer(t, server);
  },
);

test.serial(
  'starvation is bounded: 120 INIT-REBOOTs with made-up MACs take at most the per-minute budget, one log line says so, the reserved machine still gets its address; a full pool is logged once',
  async (t) => {
    const lab = makeLab(t, 2);
    const [victim, attacker] = lab.clients as [string, string];
    const mac = '52:54:00:aa:00:02';
    ip('-n', victim, 'link', 'set', 'eth0', 'address', mac);
    const leaseFile = path.join(lab.dir, 'leases.json');
    const budget = 20;
    let server = lab.server([
      '--range',
      '10.99.0.100-10.99.0.226',
      '--lease-file',
      leaseFile,
      '--reservation',
      `${mac}=10.99.0.50`,
      '--new-leases-per-minute',
      String(budget),
    ]);
    await server.waitForLog((l) => l['msg'] === 'dhcp server listening', 20_000);
    const flood = await send(lab, attacker, ['initreboot', '120', '2', 'first=10.99.0.100']);
    const acks = flood.replies.filter((r) => r.type === 5);
    t.true(acks.length <= budget && acks.length >= budget - 2, `${acks.length} ACKs for ${flood.sent} made-up clients`);
    const spent = server.logs.filter((l) => /new-lease budget spent/.test(String(l['msg'])));
    t.is(spent.length, 1, 'one line per interval, not one per packet');
    t.is((await udhcpc(lab, victim).waitFor(BOUND, 20_000))[1], '10.99.0.50', 'the reserved machine is served');
    await stopServer(t, server);

    // A five-address pool under DISCOVERs from made-up MACs: five offers, then one warn line with counts.
    server = lab.server([
      '--range',
      '10.99.0.100-10.99.0.104',
      '--lease-file',
      path.join(lab.dir, 'small.json'),
      '--reservation',
      `${mac}=10.99.0.50`,
      '--new-leases-per-minute',
      '0',
    ]);
    await server.waitForLog((l) => l['msg'] === 'dhcp server listening', 20_000);
    const discovers = await send(lab, attacker, ['discover', '40', '2']);
    t.is(discovers.replies.filter((r) => r.type === 2).length, 5);
    const exhausted = server.logs.filter((l) => /dhcp pool exhausted/.test(String(l['msg'])));
    t.is(exhausted.length, 1);
    t.like(exhausted[0], { size: 5, offered: 5, reserved: 1 });
    t.is((await udhcpc(lab, victim).waitFor(BOUND, 20_000))[1], '10.99.0.50', 'a full pool never blocks a reserved machine');
    await stopServer(t, server);
  },
);
