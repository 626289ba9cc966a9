/**
 * Facts authenticity (routes/facts.ts, boot-sessions.ts): only a report with the facts token of
 * the machine's own boot, from the address DHCP saw for it, drives fact selectors. The harness
 * sends from 127.0.0.1 (the machine, which DHCP saw) and from 127.0.0.2 (a stranger on the
 * segment).
 */
import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { createMemoryStore } from '../../src/store/store.js';
import { auth, startHarness, type Harness } from './helpers.js';

const VICTIM = '52:54:00:14:bb:01';
const OTHER = '52:54:00:14:bb:02';
const STRANGER = '127.0.0.2';
const EVIL = { dmi: { vendor: 'Evil Corp' }, cpu: { count: 64 } };
const REAL = { dmi: { vendor: 'QEMU' }, cpu: { count: 1 } };

function store() {
  return createMemoryStore({
    defaultProfile: 'normal',
    profiles: [
      { id: 'normal', kernel: '/assets/k/vmlinuz', cmdline: { 'netboot.facts_token': '{{ facts_token? }}' } },
      { id: 'wipe', kernel: '/assets/k/vmlinuz' },
    ],
    groups: [{ id: 'evil-wipes', profile: 'wipe', selector: { facts: ['dmi.vendor == "Evil Corp"'] } }],
  });
}

async function harness(t: { teardown(fn: () => unknown): void }): Promise<Harness> {
  const h = await startHarness({ store: store() });
  t.teardown(() => h.close());
  await mkdir(`${h.assetsDir}/k`, { recursive: true });
  await writeFile(`${h.assetsDir}/k/vmlinuz`, 'x');
  return h;
}

const tokenOf = (script: string): string => /netboot\.facts_token=([0-9a-f]{32})/.exec(script)?.[1] ?? '';
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const profileOf = async (h: Harness, mac: string, from?: string): Promise<string | undefined> =>
  /# netboot-appliance: profile (\S+)/.exec((await h.req('GET', `/ipxe?mac=${mac}`, from ? { from } : {})).text)?.[1];

test('a spoofed facts report for a victim MAC does not change its group: without a token, or with a token a stranger fetched', async (t) => {
  const h = await harness(t);
  h.dhcpSaw(VICTIM);
  t.is(await profileOf(h, VICTIM), 'normal');

  // Blind: no token at all. Stored as unverified, matches nothing.
  const blind = await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: EVIL, from: STRANGER });
  t.like(blind, { status: 200, json: { verified: false, outcome: 'updated' } });
  t.regex(blind.json.reason, /no facts token/);
  t.is(await profileOf(h, VICTIM), 'normal');

  // Harvest: the stranger asks for the victim's script and uses its token from its own address.
  const harvested = tokenOf((await h.req('GET', `/ipxe?mac=${VICTIM}`, { from: STRANGER })).text);
  t.regex(harvested, /^[0-9a-f]{32}$/);
  const spoof = await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: EVIL, from: STRANGER, headers: bearer(harvested) });
  t.like(spoof, { status: 200, json: { verified: false, reason: `DHCP never saw ${VICTIM} at ${STRANGER}` } });
  t.is(await profileOf(h, VICTIM), 'normal');
  const sel = await h.req('GET', `/api/machines/${VICTIM}/selection`, { headers: auth });
  t.like(sel.json, { profile: 'normal', via: 'default', facts: { verified: false } });
  t.like(
    sel.json.groups.find((g: { group: string }) => g.group === 'evil-wipes'),
    { score: -1 },
  );

  // The machine's own report is verified; a later unverified one never replaces it.
  const own = tokenOf((await h.req('GET', `/ipxe?mac=${VICTIM}`)).text);
  t.like(await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: REAL, headers: bearer(own) }), { status: 200, json: { verified: true } });
  const after = await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: EVIL, from: STRANGER });
  t.like(after, { status: 202, json: { outcome: 'kept', verified: false } });
  t.like((await h.req('GET', `/api/machines/${VICTIM}`, { headers: auth })).json, { facts: REAL, runtime: { factsVerified: true } });
  t.is(await profileOf(h, VICTIM), 'normal');
  const timeline = h.events.list({ mac: VICTIM }).filter((e) => e.type === 'facts');
  t.deepEqual(
    timeline.map((e) => e.detail?.['verified']),
    [false, false, true, false],
  );
});

test('the machine’s own verified facts do drive its group (the fact selector is real)', async (t) => {
  const h = await harness(t);
  h.dhcpSaw(VICTIM);
  const own = tokenOf((await h.req('GET', `/ipxe?mac=${VICTIM}`)).text);
  t.like(await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: EVIL, headers: bearer(own) }), { status: 200, json: { verified: true } });
  t.is(await profileOf(h, VICTIM), 'wipe');
});

test('a replayed token, a token of machine A for machine B and an unknown token are refused and change nothing', async (t) => {
  const h = await harness(t);
  h.dhcpSaw(VICTIM);
  h.dhcpSaw(OTHER, STRANGER);
  const victimToken = tokenOf((await h.req('GET', `/ipxe?mac=${VICTIM}`)).text);
  const otherToken = tokenOf((await h.req('GET', `/ipxe?mac=${OTHER}`, { from: STRANGER })).text);
  t.like(await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: REAL, headers: bearer(victimToken) }), { status: 200, json: { verified: true } });

  const replay = await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: EVIL, headers: bearer(victimToken) });
  t.like(replay, { status: 403, json: { error: { code: 'ERR_FACTS_TOKEN' } } });
  t.regex(replay.json.error.message, /already used/);
  const crossed = await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: EVIL, from: STRANGER, headers: bearer(otherToken) });
  t.like(crossed, { status: 403, json: { error: { code: 'ERR_FACTS_TOKEN' } } });
  t.regex(crossed.json.error.message, /belongs to another machine/);
  const unknown = await h.req('POST', `/api/machines/${VICTIM}/facts?token=${'f'.repeat(32)}`, { body: EVIL });
  t.like(unknown, { status: 403, json: { error: { code: 'ERR_FACTS_TOKEN' } } });
  t.like((await h.req('GET', `/api/machines/${VICTIM}`, { headers: auth })).json, { facts: REAL });
  t.is(await profileOf(h, VICTIM), 'normal');
  t.true(h.events.list({ mac: VICTIM }).some((e) => e.type === 'facts' && e.detail?.['outcome'] === 'refused'));
  // B's token still works for B, from B's address.
  t.like(await h.req('POST', `/api/machines/${OTHER}/facts`, { body: REAL, from: STRANGER, headers: bearer(otherToken) }), { json: { verified: true } });
});

test('the API token verifies facts (an operator importing an inventory); the read-only token does not', async (t) => {
  const h = await startHarness({ store: store(), apiReadToken: 'read-only-token-0123' });
  t.teardown(() => h.close());
  t.like(await h.req('POST', `/api/machines/${VICTIM}/facts`, { body: EVIL, headers: auth }), { status: 201, json: { verified: true } });
  t.is((await h.req('POST', `/api/machines/${OTHER}/facts`, { body: EVIL, headers: bearer('read-only-token-0123') })).status, 403);
});

test('records written before facts were verified are read back unverified (an upgrade trusts no old report)', async (t) => {
  const h = await harness(t);
  await h.state.putFacts(VICTIM, EVIL, '10.0.0.5', false);
  t.is(h.state.get(VICTIM)?.factsVerified, undefined);
  t.is(await profileOf(h, VICTIM), 'normal');
});
