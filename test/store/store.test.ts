import test from 'ava';
import { hasCode } from '../../src/errors.js';
import { createMemoryStore } from '../../src/store/store.js';
import { RANCHEROS_PROFILE } from '../../src/store/defaults.js';

const profile = { id: 'p1', kernel: '/assets/p1/vmlinuz', initrd: ['/assets/p1/initrd'], cmdline: { quiet: '' } };

test('put/get/list/delete profiles, created flag', async (t) => {
  const store = createMemoryStore();
  t.deepEqual(await store.putProfile(profile), { value: { ...profile }, created: true });
  t.false((await store.putProfile({ ...profile, name: 'renamed' })).created);
  t.is((await store.getProfile('p1'))?.name, 'renamed');
  t.is((await store.listProfiles()).length, 1);
  await store.deleteProfile('p1');
  t.is(await store.getProfile('p1'), undefined);
  await t.throwsAsync(store.deleteProfile('p1'), { code: 'ERR_PROFILE_NOT_FOUND' });
});

test('invalid profile is refused naming the field and changes nothing', async (t) => {
  const store = createMemoryStore();
  const err = await t.throwsAsync(store.putProfile({ ...profile, kernel: 'file:///etc/passwd' }));
  t.true(hasCode(err, 'ERR_VALIDATION'));
  t.regex(err!.message, /^kernel: /);
  t.deepEqual(await store.listProfiles(), []);
  const err2 = await t.throwsAsync(store.putProfile({ ...profile, bogus: 1 }));
  t.regex(err2!.message, /unknown field "bogus"/);
});

test('machines are keyed by canonical MAC and uuid is unique', async (t) => {
  const store = createMemoryStore();
  const r = await store.putMachine({ mac: '52-54-00-AA-BB-CC', uuid: 'AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE' });
  t.is(r.value.mac, '52:54:00:aa:bb:cc');
  t.is((await store.getMachine('52:54:00:AA:BB:CC'))?.uuid, 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee');
  t.truthy(await store.findMachineByUuid('AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE'));
  await t.throwsAsync(store.putMachine({ mac: '52:54:00:aa:bb:cd', uuid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee' }), { code: 'ERR_VALIDATION' });
  t.is((await store.listMachines()).length, 1);
  await store.deleteMachine('52:54:00:aa:bb:cc');
  await t.throwsAsync(store.deleteMachine('52:54:00:aa:bb:cc'), { code: 'ERR_MACHINE_NOT_FOUND' });
});

test('a profile in use cannot be deleted; default profile must exist', async (t) => {
  const store = createMemoryStore();
  await store.putProfile(profile);
  await store.putGroup({ id: 'g', profile: 'p1', selector: { arch: 'x86_64' } });
  const err = await t.throwsAsync(store.deleteProfile('p1'));
  t.true(hasCode(err, 'ERR_PROFILE_IN_USE'));
  t.regex(err!.message, /group g/);
  await t.throwsAsync(store.setDefaultProfileId('nope'), { code: 'ERR_PROFILE_NOT_FOUND' });
  await store.setDefaultProfileId('p1');
  t.is(await store.getDefaultProfileId(), 'p1');
  await store.deleteGroup('g');
  await t.throwsAsync(store.deleteProfile('p1'), { code: 'ERR_PROFILE_IN_USE' });
  await store.setDefaultProfileId(undefined);
  await store.deleteProfile('p1');
  t.deepEqual(await store.listProfiles(), []);
});

test('returned values are copies: mutating them does not change the store', async (t) => {
  const store = createMemoryStore({ profiles: [structuredClone(RANCHEROS_PROFILE)] });
  const p = await store.getProfile('rancheros');
  p!.kernel = '/assets/evil';
  t.is((await store.getProfile('rancheros'))?.kernel, RANCHEROS_PROFILE.kernel);
});

test('hostile values are refused at write time', async (t) => {
  const store = createMemoryStore();
  const hostile: [string, unknown][] = [
    ['cmdline string is free-form but kernel is not', { ...profile, kernel: '/assets/x\nshell' }],
    ['newline in a var', { ...profile, vars: { hostname: 'a\nb' } }],
    ['U+2028 in a var', { ...profile, vars: { k: 'a\u2028b' } }],
    ['$ in an initrd', { ...profile, initrd: ['/assets/${evil}'] }],
    ['.. in an asset path', { ...profile, kernel: '/assets/../../etc/shadow' }],
    ['template with slash', { ...profile, ipxe: '../../etc/passwd' }],
  ];
  for (const [name, value] of hostile) {
    await t.throwsAsync(store.putProfile(value), { code: 'ERR_VALIDATION' }, name);
  }
  await t.throwsAsync(store.putMachine({ mac: '52:54:00:00:00:01', hostname: 'a b' }), { code: 'ERR_VALIDATION' });
  await t.throwsAsync(store.putMachine({ mac: '52:54:00:00:00:01', hostname: 'x\n- evil' }), { code: 'ERR_VALIDATION' });
  t.deepEqual(await store.listProfiles(), []);
});

test('revision moves with every change and only then, so a poller copies the database only when it changed', async (t) => {
  const store = createMemoryStore();
  const start = store.revision!();
  await store.snapshot();
  t.is(store.revision!(), start, 'reading changes nothing');
  await store.putProfile({ id: 'p1', kernel: 'http://x/k', initrd: ['http://x/i'] });
  const afterPut = store.revision!();
  t.true(afterPut > start);
  await store.getProfile('p1');
  t.is(store.revision!(), afterPut);
  await store.patchMachine('52:54:00:00:00:01', { profile: 'p1' });
  t.true(store.revision!() > afterPut);
});
