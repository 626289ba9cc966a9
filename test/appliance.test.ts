import test from 'ava';
import dgram from 'node:dgram';
import net from 'node:net';
import { createAppliance, defaultDhcpRange } from '../src/appliance.js';
import { ConfigError } from '../src/errors.js';
import { createSilentLogger } from '../src/log.js';
import { loopbackApplianceConfig } from './helpers/appliance-config.js';

const config = loopbackApplianceConfig;

test('default dhcp range is the upper half of the subnet', (t) => {
  t.deepEqual(defaultDhcpRange('10.99.0.1', 24), { start: '10.99.0.128', end: '10.99.0.254' });
  t.deepEqual(defaultDhcpRange('192.168.4.10', 22), { start: '192.168.6.0', end: '192.168.7.254' });
  t.throws(() => defaultDhcpRange('10.0.0.1', 30), { instanceOf: ConfigError, message: /pass --dhcp-range/ });
  t.throws(() => defaultDhcpRange('10.0.0.1', undefined), { instanceOf: ConfigError, message: /not on this host/ });
});

test('start binds every service on ephemeral ports; stop frees them', async (t) => {
  const appliance = createAppliance(config(), { log: createSilentLogger() });
  const ports = await appliance.start();
  t.teardown(() => appliance.stop());
  for (const [name, port] of Object.entries(ports)) t.true(port > 0, name);
  const health = await fetch(`http://127.0.0.1:${ports.http}/healthz`);
  t.is(health.status, 200);
  t.like(await health.json(), { status: 'ok', factsIndex: { machines: 0, skipped: 0 } });
  // The DHCP side's facts index is wired into /metrics.
  t.regex(await (await fetch(`http://127.0.0.1:${ports.http}/metrics`)).text(), /\nnetboot_facts_index_machines 0\n/);
  await appliance.stop();
  // Every port is free again: rebinding them succeeds.
  await new Promise<void>((resolve, reject) => {
    const s = net
      .createServer()
      .once('error', reject)
      .listen(ports.http, '0.0.0.0', () => s.close(() => resolve()));
  });
  for (const port of [ports.tftp, ports.dhcp, ports.proxy]) {
    await new Promise<void>((resolve, reject) => {
      const s = dgram.createSocket('udp4').once('error', reject);
      s.bind(port, '0.0.0.0', () => s.close(() => resolve()));
    });
  }
});

test('a failed bind rejects start and closes what was already open', async (t) => {
  const blocker = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => blocker.bind(0, '0.0.0.0', () => resolve()));
  let blocked = true;
  t.teardown(() => {
    if (blocked) blocker.close();
  });
  const busy = blocker.address().port;
  const appliance = createAppliance(config({ 'tftp-port': String(busy), 'http-port': '0' }), { log: createSilentLogger() });
  const err = await t.throwsAsync(appliance.start(), { message: new RegExp(`${busy}`) });
  t.regex((err as { code?: string }).code ?? '', /BIND/);
  // The HTTP server that had started is closed again: a second start on the same config works
  // once the port is free.
  await new Promise<void>((r) => blocker.close(() => r()));
  blocked = false;
  const ports = await appliance.start();
  t.is(ports.tftp, busy);
  await appliance.stop();
});

/** True when a TFTP request to address:port gets any answer within a second. */
function tftpAnswers(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const done = (answered: boolean): void => {
      clearTimeout(timer);
      s.close();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), 1000);
    s.on('message', () => done(true));
    s.on('error', () => done(false));
    // RRQ for a missing file: error 1 comes back when something listens there.
    s.send(Buffer.from('\0\x01missing\0octet\0', 'latin1'), port, address);
  });
}

test('HTTP and TFTP listen on the advertised address only; --http-address / --tftp-address 0.0.0.0 widen it; a foreign address is a clear bind error', async (t) => {
  // 127.0.0.2 is another local address (all of 127/8 is loopback on Linux).
  const narrow = createAppliance(config(), { log: createSilentLogger() });
  const a = await narrow.start();
  t.teardown(() => narrow.stop());
  t.is((await fetch(`http://127.0.0.1:${a.http}/healthz`)).status, 200);
  await t.throwsAsync(fetch(`http://127.0.0.2:${a.http}/healthz`));
  t.true(await tftpAnswers('127.0.0.1', a.tftp));
  t.false(await tftpAnswers('127.0.0.2', a.tftp));
  await narrow.stop();

  const wide = createAppliance(config({ 'http-address': '0.0.0.0', 'tftp-address': '0.0.0.0' }), { log: createSilentLogger() });
  const b = await wide.start();
  t.teardown(() => wide.stop());
  t.is((await fetch(`http://127.0.0.2:${b.http}/healthz`)).status, 200);
  t.true(await tftpAnswers('127.0.0.2', b.tftp));
  await wide.stop();

  // 192.0.2.1 (TEST-NET-1) is on no interface here: advertising it with the default bind fails with the fix.
  const foreign = createAppliance(config({ address: '192.0.2.1', 'dhcp-mode': 'off' }), { log: createSilentLogger() });
  const err = await t.throwsAsync(foreign.start());
  t.is((err as { code?: string }).code, 'ERR_BIND');
  t.regex(err!.message, /--http-address/);
});

test('--discovery off and --api-read-token reach the running appliance: unknown machines are not registered, the read token reads and cannot write', async (t) => {
  const token = 'api-token-0123456789abcdef';
  const readToken = 'read-token-0123456789abcdef';
  const appliance = createAppliance(config({ discovery: 'off', 'api-token': token, 'api-read-token': readToken, 'dhcp-mode': 'off' }), {
    log: createSilentLogger(),
  });
  const { http } = await appliance.start();
  t.teardown(() => appliance.stop());
  const api = (p: string, bearer: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${http}${p}`, { ...init, headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' } });
  t.like(await (await api('/api/discovery', readToken)).json(), { enabled: false });
  t.is((await fetch(`http://127.0.0.1:${http}/ipxe?mac=02:00:00:00:00:01`)).status, 200);
  const facts = await fetch(`http://127.0.0.1:${http}/api/machines/02:00:00:00:00:02/facts`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ cpu: { count: 1 } }),
  });
  t.is(facts.status, 403);
  t.deepEqual(await (await api('/api/machines', readToken)).json(), []);
  t.is((await api('/api/discovery', readToken, { method: 'PUT', body: JSON.stringify({ enabled: true }) })).status, 403);
  t.is((await api('/api/discovery', token, { method: 'PUT', body: JSON.stringify({ enabled: true }) })).status, 200);
  t.is((await fetch(`http://127.0.0.1:${http}/api/machines`)).status, 401);
});
