import test from 'ava';
import { createMemoryStore } from '../../src/store/store.js';
import type { Bmc } from '../../src/store/schema.js';
import type { IpmiStep, PowerController } from '../../src/power/ipmi.js';
import { stepName } from '../../src/power/ipmi.js';
import { auth, startHarness } from './helpers.js';

const MAC = '52:54:00:14:aa:01';

/** A BMC stand-in that records the steps (the real ipmitool is driven in test/power/). */
function fakePower(initial: 'on' | 'off' = 'on'): PowerController & { calls: string[]; bmcs: Bmc[] } {
  let state = initial;
  const calls: string[] = [];
  const bmcs: Bmc[] = [];
  return {
    calls,
    bmcs,
    async run(bmc: Bmc, step: IpmiStep) {
      calls.push(stepName(step));
      bmcs.push(bmc);
      if ('power' in step && (step.power === 'on' || step.power === 'cycle' || step.power === 'reset')) state = 'on';
      if ('power' in step && step.power === 'off') state = 'off';
      return { step: stepName(step), output: `Chassis Power is ${state}`, power: state };
    },
  };
}

function seeded() {
  return createMemoryStore({
    defaultProfile: 'rancheros',
    profiles: [
      { id: 'rancheros', kernel: '/assets/r/vmlinuz' },
      {
        id: 'discovery',
        kernel: '/assets/d/vmlinuz',
        initrd: ['/assets/d/initrd'],
        cmdline: { console: 'ttyS0', 'netboot.callback': '{{ callback_url? }}', 'netboot.facts_token': '{{ facts_token? }}' },
      },
    ],
    groups: [{ id: 'qemu-vms', profile: 'local-disk', selector: { facts: ['dmi.vendor == QEMU', 'cpu.count >= 1'] } }],
  });
}

async function withAssets(dir: string): Promise<void> {
  const { mkdir, writeFile } = await import('node:fs/promises');
  for (const f of ['r/vmlinuz', 'd/vmlinuz', 'd/initrd']) {
    await mkdir(`${dir}/${f.split('/')[0]}`, { recursive: true });
    await writeFile(`${dir}/${f}`, 'x');
  }
}

test('one-shot boot: the next /ipxe gets the profile with a callback URL, later ones go to the group matched by facts (local-disk)', async (t) => {
  const h = await startHarness({ store: seeded() });
  t.teardown(() => h.close());
  await withAssets(h.assetsDir);
  t.is((await h.req('POST', `/api/machines/${MAC}/boot`, { body: { profile: 'discovery' } })).status, 401);
  t.like(await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'nope' } }), { status: 404 });
  const r = await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'discovery', once: true } });
  t.is(r.status, 200, r.text);
  t.is(r.json.machine.nextBoot.profile, 'discovery');
  t.is(r.json.machine.nextBoot.token, undefined, 'the token is never shown');
  const token = (await h.store.getMachine(MAC))!.nextBoot!.token!;

  // The machine's own boot: DHCP saw it at the address its /ipxe request comes from.
  h.dhcpSaw(MAC);
  const first = await h.req('GET', `/ipxe?mac=${MAC}&platform=pcbios`);
  t.regex(first.text, /profile discovery .*selected by once/);
  const factsToken = /netboot\.facts_token=([0-9a-f]{32})/.exec(first.text)?.[1];
  t.truthy(factsToken, first.text);
  t.true(first.text.includes(`netboot.callback=http://10.0.0.1:${h.port}/api/machines/${MAC}/callback?token=${token}`), first.text);
  const m = await h.store.getMachine(MAC);
  t.is(m?.state, 'provisioning');
  t.is(m?.nextBoot, undefined);

  // Facts arrive (the microkernel); the next boot is decided by the fact-matched group.
  const reported = await h.req('POST', `/api/machines/${MAC}/facts`, {
    headers: { authorization: `Bearer ${factsToken}` },
    body: { dmi: { vendor: 'QEMU' }, cpu: { count: 2 } },
  });
  t.like(reported, { status: 200, json: { verified: true } });
  const second = await h.req('GET', `/ipxe?mac=${MAC}&platform=pcbios`);
  t.regex(second.text, /^#!ipxe\n# netboot-appliance: profile local-disk/);
  t.true(second.text.includes('sanboot --no-describe --drive 0x80'));
  t.true(second.text.includes('iseq ${platform} efi && goto netboot-efi'));
  // UEFI: a failure status, so the boot manager moves on to the disk instead of its menu.
  t.regex(second.text, /\n:netboot-efi\nexit 1\n$/);
  const events = (await h.req('GET', `/api/events?mac=${MAC}`, { headers: auth })).json as Array<{ type: string; detail?: Record<string, unknown> }>;
  t.deepEqual(
    events.filter((e) => e.type === 'state').map((e) => e.detail?.['to']),
    ['provisioning'],
  );
  const local = events.find((e) => e.detail?.['outcome'] === 'local-disk');
  t.like(local?.detail, { group: 'qemu-vms', why: ['facts: dmi.vendor == QEMU (got "QEMU")', 'facts: cpu.count >= 1 (got 2)'] });

  const sel = await h.req('GET', `/api/machines/${MAC}/selection`, { headers: auth });
  t.like(sel.json, { profile: 'local-disk', via: 'group', group: 'qemu-vms' });
  t.deepEqual(sel.json.reasons, ['facts: dmi.vendor == QEMU (got "QEMU")', 'facts: cpu.count >= 1 (got 2)']);

  // The callback: a wrong token changes nothing, the right one ends provisioning.
  t.is((await h.req('POST', `/api/machines/${MAC}/callback?token=${'0'.repeat(32)}`)).status, 403);
  t.is((await h.store.getMachine(MAC))?.state, 'provisioning');
  const done = await h.req('POST', `/api/machines/${MAC}/callback?token=${token}`);
  t.is(done.status, 200, done.text);
  t.is(done.json.state, 'provisioned');
  t.is((await h.req('POST', `/api/machines/${MAC}/callback?token=${token}`)).status, 403, 'a replay');
  const states = ((await h.req('GET', `/api/events?mac=${MAC}`, { headers: auth })).json as Array<{ type: string; detail?: Record<string, unknown> }>).filter(
    (e) => e.type === 'state',
  );
  t.deepEqual(
    states.map((e) => e.detail?.['to']),
    ['provisioning', 'provisioned'],
  );
});

test('the cloud-config of a provisioning machine comes from its one-shot profile', async (t) => {
  const store = seeded();
  const h = await startHarness({ store });
  t.teardown(() => h.close());
  await withAssets(h.assetsDir);
  await store.putProfile({ id: 'discovery', kernel: '/assets/d/vmlinuz', cloudConfig: 'cloud-config.yaml.njk' });
  await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'discovery' } });
  h.dhcpSaw(MAC);
  await h.req('GET', `/ipxe?mac=${MAC}`);
  const cc = await h.req('GET', `/cloud-config?mac=${MAC}`);
  t.regex(cc.text, /profile discovery/);
});

test('fact selectors are validated at write time, naming the position', async (t) => {
  const h = await startHarness({ store: seeded() });
  t.teardown(() => h.close());
  const bad = await h.req('PUT', '/api/groups/big', { headers: auth, body: { profile: 'rancheros', selector: { facts: ['memory.totalKiB >= lots'] } } });
  t.is(bad.status, 422);
  t.regex(bad.json.error.message, /selector\.facts\.0: fact selector "memory.totalKiB >= lots": >= needs a number/);
  t.is(
    (await h.req('PUT', '/api/groups/big', { headers: auth, body: { profile: 'rancheros', selector: { facts: ['memory.totalKiB >= 64Gi', 'disks.# >= 2'] } } }))
      .status,
    201,
  );
  const sel = await h.req('GET', `/api/machines/${MAC}/selection`, { headers: auth });
  t.like(sel.json, { profile: 'rancheros', via: 'default' });
  t.like(
    sel.json.groups.find((g: { group: string }) => g.group === 'big'),
    { score: -1, failed: 'facts: memory.totalKiB >= 64Gi (no such fact)' },
  );
});

test('power through the BMC: bootdev, actions, reboot in the one-shot call; the password never in reads', async (t) => {
  const power = fakePower('off');
  const h = await startHarness({ store: seeded(), power });
  t.teardown(() => h.close());
  t.is((await h.req('POST', `/api/machines/${MAC}/power`, { headers: auth, body: { action: 'status' } })).status, 404);
  await h.req('PUT', `/api/machines/${MAC}`, { headers: auth, body: {} });
  const nobmc = await h.req('POST', `/api/machines/${MAC}/power`, { headers: auth, body: { action: 'status' } });
  t.is(nobmc.status, 409);
  t.is(nobmc.json.error.code, 'ERR_NO_BMC');
  const put = await h.req('PUT', `/api/machines/${MAC}`, { headers: auth, body: { bmc: { address: '10.0.0.250', user: 'ipmiusr', password: 'hunter2' } } });
  t.is(put.status, 200);
  t.false(put.text.includes('hunter2'));
  for (const path of [`/api/machines/${MAC}`, '/api/machines', `/api/lookups?q=${MAC}`]) t.false((await h.req('GET', path)).text.includes('hunter2'), path);
  // A GET-then-PUT round trip keeps the password.
  const read = (await h.req('GET', `/api/machines/${MAC}`, { headers: auth })).json;
  await h.req('PUT', `/api/machines/${MAC}`, { headers: auth, body: { ...read, hostname: 'node-14' } });
  t.is((await h.store.getMachine(MAC))?.bmc?.password, 'hunter2');

  t.is((await h.req('POST', `/api/machines/${MAC}/power`, { body: { action: 'on' } })).status, 401);
  t.is((await h.req('POST', `/api/machines/${MAC}/power`, { headers: auth, body: { action: 'explode' } })).status, 422);
  const status = await h.req('POST', `/api/machines/${MAC}/power`, { headers: auth, body: { action: 'status' } });
  t.like(status.json, { mac: MAC, bmc: '10.0.0.250:623', power: 'off' });
  const boot = await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'discovery', power: 'reboot' } });
  t.is(boot.status, 200, boot.text);
  // The RackHD flow in one call: PXE next, then on (it was off).
  t.deepEqual(power.calls, ['chassis power status', 'chassis bootdev pxe', 'chassis power status', 'chassis power on']);
  t.is(power.bmcs.at(-1)?.password, 'hunter2');
  const events = (await h.req('GET', `/api/events?mac=${MAC}`, { headers: auth })).json as Array<{ type: string; detail?: Record<string, unknown> }>;
  t.deepEqual(events.find((e) => e.type === 'power')?.detail?.['steps'], ['chassis bootdev pxe', 'chassis power status', 'chassis power on']);
});
