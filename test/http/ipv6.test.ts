/**
 * Scripts fetched over IPv6 send the client on over IPv6: the same app, listening on [::1] too
 * (as the appliance listens on --address6), renders [address6] as the host of every URL and of
 * the `address` placeholder; over IPv4 nothing changes.
 */
import test from 'ava';
import http from 'node:http';
import { startHarness } from './helpers.js';

function get(host: string, port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host, port, path, agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(text));
      })
      .on('error', reject);
  });
}

test('over IPv6 the entry and profile scripts carry http://[address6]:PORT; over IPv4 the IPv4 address', async (t) => {
  const h = await startHarness({ address6: 'fd00:126::1' });
  t.teardown(() => h.close());
  const server6 = http.createServer(h.app.callback());
  await new Promise<void>((r) => server6.listen(h.port, '::1', r));
  t.teardown(() => new Promise<void>((r) => server6.close(() => r())));

  const v6 = await get('::1', h.port, '/boot.ipxe');
  t.true(v6.includes(`chain --replace --autofree http://[fd00:126::1]:${h.port}/ipxe?mac=`), v6);
  t.true(v6.includes('goto netboot-chain'), 'an IPv6 client is not sent to DHCPv4 first');
  t.false(v6.includes('isset ${netX/ip} &&'));
  const profile = await get('::1', h.port, '/ipxe?mac=52-54-00-16-06-02');
  t.regex(profile, /http:\/\/\[fd00:126::1\]:\d+\//);
  t.notRegex(profile, /10\.0\.0\.1/);

  const v4 = await get('127.0.0.1', h.port, '/boot.ipxe');
  t.true(v4.includes(`http://10.0.0.1:${h.port}/ipxe?mac=`));
  t.true(v4.includes('isset ${netX/ip} && goto netboot-chain ||'));
});
