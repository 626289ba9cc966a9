/**
 * One-shot boots cannot be taken by a stranger (one-shot.ts, boot-sessions.ts): only the
 * machine's own /ipxe request (from the address DHCP saw for its MAC) or its verified facts
 * consume the one-shot. The harness sends from 127.0.0.1 (the machine) and 127.0.0.2 (a stranger).
 */
import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { createMemoryStore } from '../../src/store/store.js';
import { auth, startHarness, type Harness } from './helpers.js';

const MAC = '52:54:00:14:cc:01';
const STRANGER = '127.0.0.2';

async function harness(t: { teardown(fn: () => unknown): void }, bootBinding?: 'dhcp' | 'none'): Promise<Harness> {
  const h = await startHarness({
    store: createMemoryStore({
      defaultProfile: 'normal',
      profiles: [
        { id: 'normal', kernel: '/assets/k/vmlinuz' },
        { id: 'installer', kernel: '/assets/k/vmlinuz', cmdline: { 'netboot.facts_token': '{{ facts_token? }}', 'netboot.callback': '{{ callback_url? }}' } },
      ],
    }),
    ...(bootBinding ? { bootBinding } : {}),
  });
  t.teardown(() => h.close());
  await mkdir(`${h.assetsDir}/k`, { recursive: true });
  await writeFile(`${h.assetsDir}/k/vmlinuz`, 'x');
  return h;
}

const profileIn = (script: string): string | undefined => /# netboot-appliance: profile (\S+)/.exec(script)?.[1];

test('a stranger asking first for the machine’s script gets the one-shot but consumes nothing; the machine still boots it', async (t) => {
  const h = await harness(t);
  t.is((await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'installer', once: true } })).status, 200);
  h.dhcpSaw(MAC);

  for (let i = 0; i < 3; i++) t.is(profileIn((await h.req('GET', `/ipxe?mac=${MAC}`, { from: STRANGER })).text), 'installer');
  t.is((await h.store.getMachine(MAC))?.nextBoot?.profile, 'installer', 'the stranger took the one-shot');
  const kept = h.events.list({ mac: MAC }).find((e) => e.type === 'http-script' && e.ip === STRANGER);
  t.like(kept?.detail, { oneShot: 'kept', oneShotWhy: `DHCP never saw ${MAC} at ${STRANGER}` });

  // The machine: its /ipxe request consumes it; the next boot is the ordinary selection.
  t.is(profileIn((await h.req('GET', `/ipxe?mac=${MAC}`)).text), 'installer');
  const m = await h.store.getMachine(MAC);
  t.is(m?.nextBoot, undefined);
  t.is(m?.state, 'provisioning');
  t.is(profileIn((await h.req('GET', `/ipxe?mac=${MAC}`)).text), 'normal');
  t.deepEqual(
    h.events
      .list({ mac: MAC })
      .filter((e) => e.type === 'state')
      .map((e) => [e.detail?.['to'], e.ip]),
    [['provisioning', '127.0.0.1']],
  );
});

test('a one-shot /ipxe could not attribute is settled by the verified facts of that boot', async (t) => {
  const h = await harness(t);
  await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'installer', once: true } });
  // The script went out before DHCP was seen at this address (e.g. the appliance restarted).
  const script = (await h.req('GET', `/ipxe?mac=${MAC}`)).text;
  t.truthy((await h.store.getMachine(MAC))?.nextBoot);
  h.dhcpSaw(MAC);
  const token = /netboot\.facts_token=([0-9a-f]{32})/.exec(script)?.[1];
  const r = await h.req('POST', `/api/machines/${MAC}/facts`, { headers: { authorization: `Bearer ${token}` }, body: { cpu: { count: 1 } } });
  t.like(r.json, { verified: true });
  t.is((await h.store.getMachine(MAC))?.nextBoot, undefined);
  t.is((await h.store.getMachine(MAC))?.state, 'provisioning');
});

test('a local-disk one-shot is kept for the machine too', async (t) => {
  const h = await harness(t);
  await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'local-disk', once: true } });
  h.dhcpSaw(MAC);
  t.regex((await h.req('GET', `/ipxe?mac=${MAC}`, { from: STRANGER })).text, /profile local-disk/);
  t.is((await h.store.getMachine(MAC))?.nextBoot?.profile, 'local-disk');
  t.regex((await h.req('GET', `/ipxe?mac=${MAC}`)).text, /profile local-disk/);
  t.is((await h.store.getMachine(MAC))?.nextBoot, undefined);
});

test('with --boot-binding none the first request naming the MAC consumes it (an appliance that sees no DHCP)', async (t) => {
  const h = await harness(t, 'none');
  await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'installer', once: true } });
  t.is(profileIn((await h.req('GET', `/ipxe?mac=${MAC}`, { from: STRANGER })).text), 'installer');
  t.is((await h.store.getMachine(MAC))?.nextBoot, undefined);
});

test('a one-shot served through the Pixiecore API is settled like /ipxe: consumed with --boot-binding none, kept (and said so) when the Pixiecore host is not the machine', async (t) => {
  const pixiecore = async (h: Harness) => /booting (\S+)/.exec(String((await h.req('GET', `/pixiecore/v1/boot/${MAC}`)).json?.message))?.[1];

  const none = await harness(t, 'none');
  await none.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'installer', once: true } });
  t.is(await pixiecore(none), 'installer');
  t.like(await none.store.getMachine(MAC), { state: 'provisioning', provisioning: { profile: 'installer' } });
  t.regex((await none.req('GET', `/cloud-config?mac=${MAC}`)).text, /profile installer/, 'its cloud-config follows the boot it took');
  t.is(await pixiecore(none), 'normal', 'the next boot does not repeat the one-shot');
  t.like(
    none.events.list({ mac: MAC }).find((e) => e.type === 'http-script'),
    { detail: { api: 'pixiecore', via: 'once', oneShot: 'consumed' } },
  );

  const dhcp = await harness(t);
  await dhcp.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'installer', once: true } });
  t.is(await pixiecore(dhcp), 'installer');
  t.truthy((await dhcp.store.getMachine(MAC))?.nextBoot, 'kept: DHCP never saw the machine at the Pixiecore host’s address');
  t.like(dhcp.events.list({ mac: MAC }).find((e) => e.type === 'http-script')?.detail, { api: 'pixiecore', oneShot: 'kept' });
});
