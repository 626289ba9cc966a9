import test from 'ava';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NetworkInterfaceInfo } from 'node:os';
import { detectAddress } from '../src/config-address.js';
import { loadConfig, OPTIONS, envName } from '../src/config.js';
import { mainHelp } from '../src/cli.js';
import { ConfigError } from '../src/errors.js';

function home(): string {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-config-'));
  for (const d of ['tftpboot', 'assets', 'templates', 'config']) mkdirSync(join(dir, d));
  return dir;
}

function iface(address: string, internal = false): NetworkInterfaceInfo {
  return { address, netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: `${address}/24` };
}

const oneNic = { lo: [iface('127.0.0.1', true)], eth0: [iface('10.0.0.5')] };

test('defaults resolve against the appliance home and the only address is detected', (t) => {
  const h = home();
  const c = loadConfig({ home: h, env: {}, interfaces: oneNic });
  t.is(c.address, '10.0.0.5');
  t.is(c.sources.address, 'detected');
  t.is(c.httpPort, 8080);
  t.is(c.tftpPort, 69);
  t.is(c.dhcpPort, 67);
  t.is(c.proxyPort, 4011);
  t.is(c.dhcpMode, 'auto');
  t.is(c.leaseTime, 3600);
  t.is(c.force, false);
  t.is(c.dhcpRange, undefined);
  t.is(c.tftpRoot, join(h, 'tftpboot'));
  t.is(c.db, join(h, 'config', 'db.json'));
  t.true(Object.isFrozen(c));
});

test('flags win over env, env over file, file over defaults', (t) => {
  const h = home();
  writeFileSync(join(h, 'config', 'appliance.json'), JSON.stringify({ httpPort: 1000, tftpPort: 1001, dhcpPort: 1002 }));
  const c = loadConfig({
    home: h,
    interfaces: oneNic,
    env: { APPLIANCE_TFTP_PORT: '2001', APPLIANCE_DHCP_PORT: '2002' },
    flags: { 'dhcp-port': '3002' },
  });
  t.is(c.httpPort, 1000);
  t.is(c.sources.httpPort, 'file');
  t.is(c.tftpPort, 2001);
  t.is(c.sources.tftpPort, 'env');
  t.is(c.dhcpPort, 3002);
  t.is(c.sources.dhcpPort, 'flag');
});

test('port 0 survives (ephemeral ports are allowed everywhere)', (t) => {
  const c = loadConfig({ home: home(), env: {}, interfaces: oneNic, flags: { 'http-port': '0', 'tftp-port': '0', 'dhcp-port': '0', 'proxy-port': '0' } });
  t.deepEqual([c.httpPort, c.tftpPort, c.dhcpPort, c.proxyPort], [0, 0, 0, 0]);
});

const bad: Array<[string, Parameters<typeof loadConfig>[0], RegExp]> = [
  ['bad port flag', { flags: { 'http-port': 'abc' } }, /--http-port: "abc" is not a port/],
  ['port out of range', { flags: { 'tftp-port': '70000' } }, /--tftp-port: "70000" is not a port/],
  ['bad env port', { env: { APPLIANCE_HTTP_PORT: '-1' } }, /APPLIANCE_HTTP_PORT: "-1" is not a port/],
  ['unknown env', { env: { APPLIANCE_HTTP_PROT: '1' } }, /unknown environment variable APPLIANCE_HTTP_PROT/],
  ['bad mode', { flags: { 'dhcp-mode': 'maybe' } }, /--dhcp-mode: "maybe" is not one of auto, proxy, server, off/],
  ['bad range', { flags: { 'dhcp-range': '10.0.0.9-10.0.0.1' } }, /--dhcp-range: dhcp range 10.0.0.9-10.0.0.1 ends before it starts/],
  ['bad dns', { flags: { dns: '1.1.1.1,nope' } }, /--dns: "nope" is not an IPv4 address/],
  ['bad bool', { env: { APPLIANCE_FORCE: 'maybe' } }, /APPLIANCE_FORCE: "maybe" is not true or false/],
  ['bad address', { flags: { address: '10.0.0' } }, /--address: "10.0.0" is not an IPv4 address/],
  ['missing dir', { flags: { 'tftp-root': '/nonexistent/tftp' } }, /--tftp-root: directory \/nonexistent\/tftp does not exist/],
  ['missing db dir', { flags: { db: '/nonexistent/x/db.json' } }, /directory \/nonexistent\/x for the database does not exist/],
  ['unknown interface', { flags: { interface: 'nope0' } }, /--interface nope0 does not exist/],
  ['blksize too small', { flags: { 'tftp-blksize-max': '8' } }, /--tftp-blksize-max: "8" is not a whole number from 512/],
];
for (const [name, inputs, message] of bad) {
  test(`refused: ${name}`, (t) => {
    const err = t.throws(() => loadConfig({ home: home(), env: {}, interfaces: oneNic, ...inputs }), { instanceOf: ConfigError, message });
    t.is(err?.code, 'ERR_CONFIG');
  });
}

test('an unknown key in the config file is refused, naming the key and the file', (t) => {
  const h = home();
  writeFileSync(join(h, 'config', 'appliance.json'), JSON.stringify({ httpport: 80 }));
  t.throws(() => loadConfig({ home: h, env: {}, interfaces: oneNic }), { instanceOf: ConfigError, message: /appliance\.json: unknown setting "httpport"/ });
});

test('a config file that is not JSON is refused', (t) => {
  const h = home();
  writeFileSync(join(h, 'config', 'appliance.json'), '{ nope');
  t.throws(() => loadConfig({ home: h, env: {}, interfaces: oneNic }), { instanceOf: ConfigError, message: /is not valid JSON/ });
});

test('a wrongly typed value in the file names the key', (t) => {
  const h = home();
  writeFileSync(join(h, 'config', 'appliance.json'), JSON.stringify({ httpPort: true }));
  t.throws(() => loadConfig({ home: h, env: {}, interfaces: oneNic }), { instanceOf: ConfigError, message: /httpPort: expected a port/ });
});

test('address detection refuses several candidates and lists them', (t) => {
  const interfaces = { lo: [iface('127.0.0.1', true)], eth0: [iface('10.0.0.5')], br0: [iface('10.99.0.1')] };
  t.throws(() => detectAddress(undefined, interfaces), { instanceOf: ConfigError, message: /10\.0\.0\.5 \(eth0\), 10\.99\.0\.1 \(br0\)/ });
  t.is(detectAddress('br0', interfaces), '10.99.0.1');
  t.throws(() => detectAddress(undefined, { lo: [iface('127.0.0.1', true)] }), { message: /pass --address/ });
});

test('fetch commands do not need an address', (t) => {
  const c = loadConfig({ home: home(), env: {}, interfaces: { lo: [iface('127.0.0.1', true)] }, addressOptional: true });
  t.is(c.address, '0.0.0.0');
});

test('help lists every option with its env name', (t) => {
  const text = mainHelp();
  for (const spec of OPTIONS) {
    t.true(text.includes(`--${spec.flag}`), spec.flag);
    t.true(text.includes(envName(spec)), envName(spec));
  }
});

test('server-mode settings parse: range, dns list, boolean force from env', (t) => {
  const c = loadConfig({
    home: home(),
    env: { APPLIANCE_FORCE: 'true' },
    interfaces: oneNic,
    flags: { 'dhcp-mode': 'server', 'dhcp-range': '10.0.0.100-10.0.0.150', dns: '10.0.0.1, 1.1.1.1', 'lease-time': '600' },
  });
  t.deepEqual(c.dhcpRange, { start: '10.0.0.100', end: '10.0.0.150' });
  t.deepEqual(c.dns, ['10.0.0.1', '1.1.1.1']);
  t.is(c.force, true);
  t.is(c.leaseTime, 600);
});

test('a command reads only its settings: unused ones are not validated, wherever they come from', (t) => {
  const h = home();
  writeFileSync(join(h, 'config', 'appliance.json'), JSON.stringify({ db: '/nonexistent/dir/db.json', httpPort: 'not a port' }));
  const c = loadConfig({ home: h, env: { APPLIANCE_TFTP_PORT: 'x' }, keys: ['assets', 'logLevel'] });
  t.is(c.assets, join(h, 'assets'));
  t.false('db' in c);
  // The same file fails a command that uses the db.
  t.throws(() => loadConfig({ home: h, env: {}, keys: ['db'] }), { instanceOf: ConfigError, message: /directory \/nonexistent\/dir/ });
  // Unknown names are refused everywhere, and a flag for an unused setting is unknown.
  t.throws(() => loadConfig({ home: h, env: { APPLIANCE_HTP_PORT: '1' }, keys: ['assets'] }), {
    instanceOf: ConfigError,
    message: /unknown environment variable APPLIANCE_HTP_PORT/,
  });
  t.throws(() => loadConfig({ home: h, env: {}, keys: ['assets'], flags: { 'http-port': '1' } }), {
    instanceOf: ConfigError,
    message: /unknown option --http-port/,
  });
});
