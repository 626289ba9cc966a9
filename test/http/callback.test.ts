/**
 * The provisioning callback cannot be forged from the lab segment (callback-grant.ts): only
 * documents sent to the address DHCP saw for the machine carry its callback token; the callback
 * is then accepted from any address, once, until the deadline, and anything else is a 403 that
 * says why and changes nothing. The harness sends from 127.0.0.1 (the machine, which DHCP saw),
 * 127.0.0.2 (a stranger on the segment) and 127.0.0.3 (the installed OS on a static address).
 */
import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createMemoryStore } from '../../src/store/store.js';
import { auth, startHarness, type Harness } from './helpers.js';

const MAC = '52:54:00:14:cb:01';
const OTHER = '52:54:00:14:cb:02';
const STRANGER = '127.0.0.2';
const STATIC = '127.0.0.3';

async function harness(
  t: { teardown(fn: () => unknown): void },
  options: { bootBinding?: 'dhcp' | 'none'; callbackTokenSeconds?: number } = {},
): Promise<Harness> {
  const db = createDefaultDb();
  db.profiles.push(
    {
      id: 'installer',
      kernel: '/assets/k/vmlinuz',
      initrd: [],
      cmdline: { 'netboot.callback': '{{ callback_url? }}' },
      cloudConfig: 'cloud-config.yaml.njk',
      preseed: 'debian.preseed.njk',
    },
    { id: 'normal', kernel: '/assets/k/vmlinuz', initrd: [], cmdline: '' },
  );
  db.defaultProfile = 'normal';
  const h = await startHarness({ store: createMemoryStore(db), ...options });
  t.teardown(() => h.close());
  await mkdir(`${h.assetsDir}/k`, { recursive: true });
  await writeFile(`${h.assetsDir}/k/vmlinuz`, 'x');
  return h;
}

/** A one-shot install of `mac`; returns the callback token the appliance keeps for it. */
async function oneShot(h: Harness, mac: string): Promise<string> {
  const r = await h.req('POST', `/api/machines/${mac}/boot`, { headers: auth, body: { profile: 'installer', once: true, then: 'local-disk' } });
  if (r.status !== 200) throw new Error(r.text);
  return (await h.store.getMachine(mac))!.nextBoot!.token!;
}

/** Every document a stranger can ask for in the machine's name. */
const DOCUMENTS = (mac: string) => [`/ipxe?mac=${mac}`, `/preseed?mac=${mac}`, `/cloud-config?mac=${mac}`, `/cloud?mac=${mac}`, `/nocloud/${mac}/user-data`];

const callback = (h: Harness, mac: string, token: string | undefined, from?: string) =>
  h.req('POST', `/api/machines/${mac}/callback${token === undefined ? '' : `?token=${token}`}`, from ? { from } : {});

test('a stranger fetching the machine’s documents from another address gets no callback token and cannot end its provisioning', async (t) => {
  const h = await harness(t);
  const token = await oneShot(h, MAC);
  h.dhcpSaw(MAC);

  // Before the machine boots (one-shot pending) and while it provisions: nothing carries the token.
  for (const path of DOCUMENTS(MAC)) {
    const r = await h.req('GET', path, { from: STRANGER });
    t.is(r.status, 200, `${path}: ${r.text}`);
    t.false(r.text.includes(token), `${path} gave the stranger the callback token`);
    t.false(r.text.includes('/callback'), `${path}: ${r.text}`);
  }
  t.is((await h.store.getMachine(MAC))?.nextBoot?.profile, 'installer');
  const machineBoot = await h.req('GET', `/ipxe?mac=${MAC}`);
  t.true(machineBoot.text.includes(`netboot.callback=http://10.0.0.1:${h.port}/api/machines/${MAC}/callback?token=${token}`), machineBoot.text);
  t.is((await h.store.getMachine(MAC))?.state, 'provisioning');
  for (const path of DOCUMENTS(MAC)) t.false((await h.req('GET', path, { from: STRANGER })).text.includes(token), path);

  // What the stranger can send: nothing, a guess, the facts token of its own copy of the script.
  const strangersScript = await h.req('GET', `/ipxe?mac=${MAC}`, { from: STRANGER });
  const factsToken = /facts_token=([0-9a-f]{32})/.exec(strangersScript.text)?.[1];
  for (const guess of [undefined, '', '0'.repeat(32), factsToken]) {
    const r = await callback(h, MAC, guess, STRANGER);
    t.is(r.status, 403, r.text);
    t.is(r.json.error.code, 'ERR_CALLBACK_TOKEN');
    t.regex(r.json.error.message, /^callback for 52:54:00:14:cb:01 refused: (no callback token|wrong callback token)/);
  }
  const m = await h.store.getMachine(MAC);
  t.is(m?.state, 'provisioning');
  t.is(m?.provisioning?.token, token);
  t.false(h.events.list({ mac: MAC }).some((e) => e.type === 'state' && e.detail?.['to'] === 'provisioned'));

  // The timeline says who got the token and who did not, and why.
  const preseeds = h.events.list({ mac: MAC }).filter((e) => e.type === 'http-preseed');
  t.like(preseeds[0]?.detail, { callback: 'withheld', callbackWhy: `DHCP never saw ${MAC} at ${STRANGER}` });
});

test('the machine’s own preseed and cloud-config carry the token; its callback from another address later (a static address after install) ends the provisioning once', async (t) => {
  const h = await harness(t);
  const token = await oneShot(h, MAC);
  h.dhcpSaw(MAC);
  await h.req('GET', `/ipxe?mac=${MAC}`);
  const url = `http://10.0.0.1:${h.port}/api/machines/${MAC}/callback?token=${token}`;
  const preseed = await h.req('GET', `/preseed?mac=${MAC}`);
  t.regex(preseed.text, /^d-i preseed\/late_command string .*in-target curl -fsS -m 30 -X POST '([^']+)' \|\| true$/m);
  t.true(preseed.text.includes(`'${url}'`), preseed.text);
  const userData = await h.req('GET', `/nocloud/${MAC}/user-data`);
  t.true(userData.text.includes(url), userData.text);
  t.like(h.events.list({ mac: MAC }).find((e) => e.type === 'http-preseed')?.detail, { callback: 'granted' });

  // DHCP never saw 127.0.0.3 and the sightings may be long gone: the token alone counts.
  const done = await callback(h, MAC, token, STATIC);
  t.is(done.status, 200, done.text);
  t.like(done.json, { mac: MAC, state: 'provisioned' });
  const replay = await callback(h, MAC, token, STATIC);
  t.is(replay.status, 403);
  t.regex(replay.json.error.message, /not provisioning \(state provisioned\): its callback token was used already/);
  t.deepEqual(
    h.events
      .list({ mac: MAC })
      .filter((e) => e.type === 'state')
      .map((e) => [e.detail?.['to'], e.detail?.['by'], e.ip]),
    [
      ['provisioning', 'ipxe', '127.0.0.1'],
      ['provisioned', 'callback', STATIC],
    ],
  );
  // Provisioned: no document carries a callback any more, not even the machine's own.
  t.false((await h.req('GET', `/preseed?mac=${MAC}`)).text.includes('/callback'));
});

test('a callback with another machine’s token, for an unknown machine, after a new one-shot or after the deadline is refused and changes nothing', async (t) => {
  const h = await harness(t);
  const mine = await oneShot(h, MAC);
  const theirs = await oneShot(h, OTHER);
  h.dhcpSaw(MAC);
  h.dhcpSaw(OTHER, '127.0.0.4');
  await h.req('GET', `/ipxe?mac=${MAC}`);
  await h.req('GET', `/ipxe?mac=${OTHER}`, { from: '127.0.0.4' });
  t.is((await h.store.getMachine(OTHER))?.state, 'provisioning');

  const wrongMac = await callback(h, MAC, theirs);
  t.is(wrongMac.status, 403);
  t.regex(wrongMac.json.error.message, /wrong callback token/);
  const unknown = await callback(h, '52:54:00:14:cb:99', mine);
  t.is(unknown.status, 403);
  t.regex(unknown.json.error.message, /no machine 52:54:00:14:cb:99 is declared/);

  // A new provisioning of the same machine (a new one-shot, booted) replaces its token.
  const fresh = await oneShot(h, OTHER);
  t.not(fresh, theirs);
  await h.req('GET', `/ipxe?mac=${OTHER}`, { from: '127.0.0.4' });
  t.is((await h.store.getMachine(OTHER))?.provisioning?.token, fresh);
  const stale = await callback(h, OTHER, theirs, '127.0.0.4');
  t.is(stale.status, 403);
  t.regex(stale.json.error.message, /wrong callback token/);

  // The deadline counts from the boot that started the provisioning (here: two days ago).
  const old = new Date(Date.now() - 2 * 86_400_000).toISOString();
  await h.store.updateMachine(MAC, (m) => ({ ...m, provisioning: { ...m.provisioning!, since: old } }));
  const expired = await callback(h, MAC, mine);
  t.is(expired.status, 403);
  t.regex(expired.json.error.message, /the callback token expired at .*--callback-token-seconds 86400/);
  t.false((await h.req('GET', `/preseed?mac=${MAC}`)).text.includes(mine), 'an expired token is not handed out either');
  const last = h.events.list({ mac: MAC }).findLast((e) => e.type === 'http-preseed');
  t.is(last?.detail?.['callback'], 'withheld');
  t.regex(String(last?.detail?.['callbackWhy']), /callback token expired at/);

  for (const mac of [MAC, OTHER]) t.is((await h.store.getMachine(mac))?.state, 'provisioning', mac);
  t.is(h.events.list().filter((e) => e.type === 'state' && e.detail?.['by'] === 'callback').length, 0);
});

test('--boot-binding none: every document for the MAC carries the callback token (the weaker, documented mode)', async (t) => {
  const h = await harness(t, { bootBinding: 'none' });
  const token = await oneShot(h, MAC);
  await h.req('GET', `/ipxe?mac=${MAC}`, { from: STRANGER });
  t.true((await h.req('GET', `/preseed?mac=${MAC}`, { from: STRANGER })).text.includes(token));
  t.is((await callback(h, MAC, token, STRANGER)).status, 200);
});

test('a refused callback of a declared machine is in its timeline with the reason and the requester; a flood is recorded once per minute and cannot evict other events', async (t) => {
  const h = await harness(t);
  const token = await oneShot(h, MAC);
  h.dhcpSaw(MAC);
  await h.req('GET', `/ipxe?mac=${MAC}`);
  const before = h.events.list({ mac: MAC }).length;
  const lastIp = h.events.lastIp(MAC);

  t.is((await callback(h, MAC, 'f'.repeat(32), STRANGER)).status, 403);
  const refused = h.events.list({ mac: MAC }).filter((e) => e.type === 'callback-refused');
  t.is(refused.length, 1);
  t.like(refused[0], { mac: MAC, detail: { from: STRANGER } });
  t.regex(String(refused[0]?.detail?.['reason']), /wrong callback token/);
  t.is(refused[0]?.ip, undefined, 'the stranger’s address is not taken as the machine’s');
  t.is(h.events.lastIp(MAC), lastIp);

  // A flood: more refusals than the machine's history holds, for it and for made-up MACs.
  for (let i = 0; i < 60; i++) {
    await callback(h, MAC, undefined, STRANGER);
    await callback(h, `52:54:00:15:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, token, STRANGER);
  }
  const after = h.events.list({ mac: MAC });
  t.is(after.filter((e) => e.type === 'callback-refused').length, 1, 'throttled: one per machine per minute');
  t.is(after.length, before + 1, 'every earlier event of the machine is still there');
  t.is(h.events.list({ mac: '52:54:00:15:00:01' }).length, 0, 'an undeclared MAC gets no timeline');
  t.is(h.events.list({ limit: 10_000 }).filter((e) => e.type === 'callback-refused').length, 1);

  // The machine's own callback still works, and is a state event as before.
  t.is((await callback(h, MAC, token, STATIC)).status, 200);
  t.is((await h.store.getMachine(MAC))?.state, 'provisioned');
});
