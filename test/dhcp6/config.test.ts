import test from 'ava';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';

function home(): string {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-config6-'));
  for (const d of ['tftpboot', 'assets', 'templates', 'config']) mkdirSync(join(dir, d));
  return dir;
}

const v4 = (address: string): NetworkInterfaceInfo => ({
  address,
  netmask: '255.255.255.0',
  family: 'IPv4',
  mac: '52:54:00:00:00:01',
  internal: false,
  cidr: `${address}/24`,
});
const v6 = (address: string): NetworkInterfaceInfo => ({
  address,
  netmask: 'ffff:ffff:ffff:ffff::',
  family: 'IPv6',
  mac: '52:54:00:00:00:01',
  internal: false,
  cidr: `${address}/64`,
  scopeid: 0,
});

test('DHCPv6 settings: off by default; with a mode the IPv6 address of --interface is detected; ranges and lists are checked', (t) => {
  const br0 = { br0: [v4('10.99.0.1'), v6('fe80::1'), v6('fd00:99:0:0::1')] };
  const off = loadConfig({ home: home(), env: {}, interfaces: br0, flags: { interface: 'br0' } });
  t.is(off.dhcp6Mode, 'off');
  t.is(off.address6, undefined);
  t.is(off.routerAdvertisements, 'auto');
  const on = loadConfig({
    home: home(),
    env: {},
    interfaces: br0,
    flags: { interface: 'br0', 'dhcp6-mode': 'server', 'dhcp6-range': 'fd00:99::100-fd00:99::1ff', dns6: 'fd00:99::53, FD00:99::54' },
  });
  t.is(on.address6, 'fd00:99::1');
  t.is(on.sources['address6'], 'detected');
  t.deepEqual(on.dhcp6Range, { start: 'fd00:99::100', end: 'fd00:99::1ff' });
  t.deepEqual(on.dns6, ['fd00:99::53', 'fd00:99::54']);
  t.is(on.dhcp6Port, 547);
  t.throws(
    () => loadConfig({ home: home(), env: {}, interfaces: { br0: [v4('10.99.0.1'), v6('fe80::1')] }, flags: { interface: 'br0', 'dhcp6-mode': 'proxy' } }),
    {
      message: /has no global or unique-local IPv6 address; assign one .* or pass --address6/,
    },
  );
  t.throws(
    () =>
      loadConfig({
        home: home(),
        env: {},
        interfaces: { br0: [v4('10.99.0.1'), v6('fd00::1'), v6('fd00::2')] },
        flags: { interface: 'br0', 'dhcp6-mode': 'proxy' },
      }),
    {
      message: /several IPv6 addresses \(fd00::1, fd00::2\); pass --address6/,
    },
  );
  t.throws(() => loadConfig({ home: home(), env: {}, interfaces: br0, flags: { address6: '10.0.0.1' } }), {
    message: /--address6: "10.0.0.1" is not an IPv6 address/,
  });
  t.throws(() => loadConfig({ home: home(), env: {}, interfaces: br0, flags: { 'dhcp6-range': 'fd00::9-fd00::1' } }), { message: /ends before it starts/ });
  t.throws(() => loadConfig({ home: home(), env: {}, interfaces: br0, flags: { 'dhcp6-mode': 'relay' } }), { message: /not one of off, proxy, server/ });
});
