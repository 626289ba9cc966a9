/**
 * Who is at which address (events.ts teachesAddress, app.ts record): the lab segment is
 * untrusted, so a stranger at 127.0.0.66 asking `/ipxe?mac=VICTIM` or posting facts for VICTIM
 * must move neither what `/api/lookups` tells the operator nor which machine the stranger's own
 * MAC-less requests are taken for. The victim's DHCP-seen address is 127.0.0.1.
 */
import test from 'ava';
import { auth, startHarness, type Harness } from './helpers.js';

const VICTIM = '52:54:00:15:bb:01';
const STRANGER = '127.0.0.66';

async function harness(t: { teardown(fn: () => unknown): void }, overrides: Parameters<typeof startHarness>[0] = {}): Promise<Harness> {
  const h = await startHarness(overrides);
  t.teardown(() => h.close());
  return h;
}

const lookup = async (h: Harness, q: string) => (await h.req('GET', `/api/lookups?q=${q}`, { headers: auth })).json as { ip?: string; mac?: string };

test("a stranger's /ipxe?mac=VICTIM and unverified facts leave lookups on the victim's DHCP-seen address", async (t) => {
  const h = await harness(t);
  h.dhcpSaw(VICTIM);
  t.is((await h.req('GET', `/ipxe?mac=${VICTIM}`, { from: STRANGER })).status, 200);
  const facts = await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: { dmi: { vendor: 'Evil' } }, from: STRANGER });
  t.like(facts.json, { verified: false });
  t.like(await lookup(h, VICTIM), { mac: VICTIM, ip: '127.0.0.1' });
  t.is(h.events.macForIp(STRANGER), undefined);
  t.is(h.events.lastIp(VICTIM), '127.0.0.1');
  // The timeline still says where the requests came from.
  const fromStranger = h.events.list({ mac: VICTIM }).filter((e) => e.ip === STRANGER);
  t.deepEqual(
    fromStranger.map((e) => e.type),
    ['http-script', 'facts'],
  );
  t.true(fromStranger.every((e) => e.addressTrusted === undefined));
});

test("the stranger's requests that name no MAC are not taken for the victim's", async (t) => {
  const h = await harness(t);
  h.dhcpSaw(VICTIM);
  await h.req('GET', `/ipxe?mac=${VICTIM}`, { from: STRANGER });
  const before = h.events.list({ mac: VICTIM }).length;
  const script = await h.req('GET', '/ipxe', { from: STRANGER });
  t.regex(script.text, /cannot identify this machine/);
  await h.req('GET', '/boot.ipxe', { from: STRANGER });
  t.is(h.events.list({ mac: VICTIM }).length, before);
});

test('the genuine flow (DHCP, then HTTP from that address) fills lookups; without DHCP (binding none) HTTP does', async (t) => {
  const h = await harness(t);
  h.dhcpSaw(VICTIM, '127.0.0.5');
  await h.req('GET', `/ipxe?mac=${VICTIM}`, { from: '127.0.0.5' });
  t.like(await lookup(h, VICTIM), { mac: VICTIM, ip: '127.0.0.5' });
  t.like(await lookup(h, '127.0.0.5'), { mac: VICTIM, ip: '127.0.0.5' });
  t.true(h.events.list({ mac: VICTIM }).some((e) => e.type === 'http-script' && e.addressTrusted === true));
  // A MAC-less request from the machine's own address is the machine's.
  await h.req('GET', '/boot.ipxe', { from: '127.0.0.5' });
  t.true(h.events.list({ mac: VICTIM }).some((e) => e.type === 'http-script' && e.detail?.['script'] === 'boot.ipxe'));

  const none = await harness(t, { bootBinding: 'none' });
  await none.req('GET', `/ipxe?mac=${VICTIM}`, { from: '127.0.0.7' });
  t.like(await lookup(none, VICTIM), { mac: VICTIM, ip: '127.0.0.7' });
});

test("the victim's runtime record keeps its DHCP-seen address: a lookup of the stranger's address does not answer the victim", async (t) => {
  const h = await harness(t);
  h.dhcpSaw(VICTIM);
  await h.req('GET', `/ipxe?mac=${VICTIM}`);
  await h.req('GET', `/ipxe?mac=${VICTIM}`, { from: STRANGER });
  await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: { dmi: { vendor: 'Evil' } }, from: STRANGER });
  await new Promise((r) => setTimeout(r, 50)); // the sightings are noted after the reply
  t.is(h.state.get(VICTIM)?.lastIp, '127.0.0.1');
  t.is((await h.req('GET', `/api/lookups?q=${STRANGER}`, { headers: auth })).status, 404);
});
