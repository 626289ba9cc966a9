import test from 'ava';
import { completeProvisioning, consumeNextBoot, keepSecrets, publicMachine, requestBoot } from '../../src/store/lifecycle.js';
import { parseDb, type Machine } from '../../src/store/schema.js';
import { selectProfile } from '../../src/store/select.js';

const MAC = '52:54:00:14:00:01';
const TOKEN = '0123456789abcdef0123456789abcdef';
const AT = '2026-12-01T12:00:00.000Z';

test('a one-shot boot is served once, starts provisioning, and the callback with the token ends it', (t) => {
  const base: Machine = { mac: MAC, state: 'discovered' };
  const once = requestBoot(base, { profile: 'installer', once: true, then: 'local-disk' }, AT, TOKEN);
  t.deepEqual(once.nextBoot, { profile: 'installer', setAt: AT, token: TOKEN });
  t.is(once.profile, 'local-disk');
  const db = parseDb({ profiles: [{ id: 'installer', kernel: '/assets/i/linux' }], machines: [once] });
  const boot = selectProfile(db, { mac: MAC, purpose: 'boot' });
  t.like(boot, { kind: 'profile', via: 'once', profile: { id: 'installer' } });

  const served = consumeNextBoot(once, AT);
  t.is(served.nextBoot, undefined);
  t.is(served.state, 'provisioning');
  t.deepEqual(served.provisioning, { profile: 'installer', since: AT, token: TOKEN });
  const db2 = parseDb({ profiles: [{ id: 'installer', kernel: '/assets/i/linux' }], machines: [served] });
  // The next netboot goes to the machine's own profile: the built-in local-disk.
  t.like(selectProfile(db2, { mac: MAC, purpose: 'boot' }), { kind: 'profile', via: 'machine-mac', profile: { id: 'local-disk' } });
  // The installer's configs still come from the one-shot profile.
  t.like(selectProfile(db2, { mac: MAC, purpose: 'config' }), { kind: 'profile', via: 'provisioning', profile: { id: 'installer' } });

  const soon = Date.parse(AT) + 60_000;
  t.throws(() => completeProvisioning(served, 'f'.repeat(32), 'provisioned', soon), { code: 'ERR_CALLBACK_TOKEN', message: /wrong callback token/ } as never);
  t.throws(() => completeProvisioning(served, undefined, 'provisioned', soon), { code: 'ERR_CALLBACK_TOKEN', message: /no callback token/ } as never);
  // The deadline counts from the boot that started the provisioning (default a day).
  t.throws(() => completeProvisioning(served, TOKEN, 'provisioned', Date.parse(AT) + 86_400_000), {
    code: 'ERR_CALLBACK_TOKEN',
    message: /expired at 2026-12-02T12:00:00\.000Z/,
  } as never);
  t.throws(() => completeProvisioning(served, TOKEN, 'provisioned', Date.parse(AT) + 7_200_000, 3600), { message: /--callback-token-seconds 3600/ } as never);
  t.is(completeProvisioning(served, TOKEN, 'provisioned', Date.parse(AT) + 3_000_000, 3600).state, 'provisioned');
  const done = completeProvisioning(served, TOKEN, 'provisioned', soon);
  t.is(done.state, 'provisioned');
  t.is(done.provisioning, undefined);
  // Single use: the token lived in the provisioning, which the callback ended.
  t.throws(() => completeProvisioning(done, TOKEN, 'provisioned', soon), {
    code: 'ERR_CALLBACK_TOKEN',
    message: /not provisioning \(state provisioned\)/,
  } as never);
});

test('a one-shot local-disk boot is consumed without provisioning; once: false sets the profile', (t) => {
  const m = requestBoot({ mac: MAC, state: 'provisioned' }, { profile: 'local-disk', once: true }, AT, TOKEN);
  t.is(m.nextBoot?.token, undefined);
  const served = consumeNextBoot(m, AT);
  t.is(served.state, 'provisioned');
  t.is(served.provisioning, undefined);
  const permanent = requestBoot(m, { profile: 'rescue', once: false }, AT, TOKEN);
  t.is(permanent.profile, 'rescue');
  t.is(permanent.nextBoot, undefined);
});

test('API reads hide the BMC password and the tokens; a PUT of what was read keeps them', (t) => {
  const m: Machine = {
    mac: MAC,
    bmc: { address: '10.0.0.9', user: 'admin', password: 'secret' },
    nextBoot: { profile: 'x', setAt: AT, token: TOKEN },
  };
  const shown = publicMachine(m);
  t.false(JSON.stringify(shown).includes('secret'));
  t.false(JSON.stringify(shown).includes(TOKEN));
  t.like(shown.bmc, { address: '10.0.0.9', passwordSet: true } as never);
  const back = keepSecrets(JSON.parse(JSON.stringify(shown)) as Record<string, unknown>, m);
  t.deepEqual(back['bmc'], { address: '10.0.0.9', user: 'admin', password: 'secret' });
  t.deepEqual(back['nextBoot'], { profile: 'x', setAt: AT, token: TOKEN });
  // A new BMC address does not inherit the old password.
  const moved = keepSecrets({ mac: MAC, bmc: { address: '10.0.0.10', user: 'admin' } }, m);
  t.deepEqual(moved['bmc'], { address: '10.0.0.10', user: 'admin' });
});
