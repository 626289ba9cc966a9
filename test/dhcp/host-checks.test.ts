/** Pure parsers behind the service's host checks: `ss` output (port-holders.ts) and /proc/net/route (default-route.ts). */
import test from 'ava';
import { conflictingHolders, parseSsOutput } from '../../src/dhcp/port-holders.js';
import { parseDefaultRouteInterfaces } from '../../src/dhcp/default-route.js';

// `ss -H -u -a -n -e -p` captured on Debian 12 (iproute2 6.1): a device-bound dnsmasq, a wildcard one, ours.
const SS = `UNCONN 0      0      0.0.0.0%virbr0:67   0.0.0.0:* users:(("dnsmasq",pid=812,fd=3)) ino:27763 sk:1001 cgroup:unreachable:1 <->
UNCONN 0      0         0.0.0.0:4011 0.0.0.0:* users:(("perl",pid=25040,fd=4)) ino:27764 sk:1002 cgroup:unreachable:1 <->
UNCONN 0      0       10.99.0.1:67   0.0.0.0:* users:(("node",pid=900,fd=21)) ino:30001 sk:1003 <->
UNCONN 0      0      192.168.1.5:67  0.0.0.0:* ino:30002 sk:1004 <->
UNCONN 0      0         0.0.0.0:68   0.0.0.0:* ino:30003 sk:1005 <->`;

test('parseSsOutput reads address, device, port, inode and owner', (t) => {
  const lines = parseSsOutput(SS);
  t.is(lines.length, 5);
  t.like(lines[0], { address: '0.0.0.0', device: 'virbr0', port: 67, inode: 27763, process: 'dnsmasq', pid: 812 });
  t.like(lines[3], { address: '192.168.1.5', port: 67, inode: 30002 });
  t.is(lines[3]?.process, undefined);
});

test('conflictingHolders: only foreign sockets that hear our segment on our ports', (t) => {
  const lines = parseSsOutput(SS);
  const own = new Set([30001]);
  // Not confined: the virbr0 socket hears only virbr0, 192.168.1.5 is not our address, 68 is not our port.
  t.deepEqual(
    conflictingHolders(lines, own, [67, 4011], '10.99.0.1', 'br0').map((h) => h.owner),
    ['perl (pid 25040)'],
  );
  // On virbr0 itself libvirt's dnsmasq is a conflict.
  t.deepEqual(
    conflictingHolders(lines, own, [67, 4011], '192.168.122.1', 'virbr0').map((h) => `${h.owner}:${h.port}`),
    ['dnsmasq (pid 812):67', 'perl (pid 25040):4011'],
  );
  t.deepEqual(conflictingHolders(lines, new Set([27763, 27764, 30001]), [67, 4011], '10.99.0.1', 'br0'), []);
});

test('parseDefaultRouteInterfaces: up default routes only', (t) => {
  const route = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
br0\t0063000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wg0\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0`;
  t.deepEqual(parseDefaultRouteInterfaces(route), ['eth0']);
  t.deepEqual(parseDefaultRouteInterfaces(''), []);
});
