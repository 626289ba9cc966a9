import test from 'ava';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { goTemplateLiteral, metadataLines } from '../../src/http/routes/compat.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import type { Logger } from '../../src/log.js';
import { createMemoryStore } from '../../src/store/store.js';
import { captureLogger } from '../helpers/capture-logger.js';
import { addRancherAssets, auth, startHarness, TEMPLATES } from './helpers.js';

const MAC = '52:54:00:aa:00:01';
const UUID = '5a1e0003-7f3a-4c2b-9d1e-0123456789ab';

/**
 * Go text/template as far as a literal needs it: `{{"string"}}` actions print the string, and any
 * other action is what Pixiecore would fail to parse or run (here: throws).
 */
function goTextTemplate(text: string): string {
  return text.replace(/\{\{(.*?)\}\}/g, (_m, action: string) => {
    const literal = /^"([^"\\]*)"$/.exec(action);
    if (!literal) throw new Error(`Go template action {{${action}}} in ${JSON.stringify(text)}`);
    return literal[1]!;
  });
}

async function harness(t: import('ava').ExecutionContext, log?: Logger) {
  const templates = await mkdtemp(path.join(tmpdir(), 'netboot-compat-'));
  await cp(TEMPLATES, templates, { recursive: true });
  await writeFile(
    path.join(templates, 'node.ign'),
    '{"ignition":{"version":"3.3.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":[{{ vars.key | yaml }}]}]},"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,{{ hostname }}"}}]}}\n',
  );
  await writeFile(path.join(templates, 'node.generic'), 'mac={{ mac }} role={{ metadata.role }}\n');
  const store = createMemoryStore({
    ...createDefaultDb(),
    profiles: [
      ...createDefaultDb().profiles,
      {
        id: 'coreos',
        kernel: '/assets/rancheros/v1.5.8/vmlinuz',
        initrd: ['/assets/rancheros/v1.5.8/initrd'],
        cmdline: { 'coreos.config.url': 'http://{{ address }}:{{ port }}/ignition?uuid=${uuid}&mac=${mac:hexhyp}', 'coreos.autologin': '' },
        ignition: 'node.ign',
        generic: 'node.generic',
        vars: { key: 'ssh-ed25519 AAAA k@x' },
      },
    ],
    machines: [{ mac: MAC, uuid: UUID, hostname: 'node1', labels: { rack: 'r1' } }],
    groups: [{ id: 'workers', profile: 'coreos', selector: { uuid: UUID }, metadata: { role: 'worker', etcd: { name: 'node1' } } }],
  });
  const h = await startHarness({ store, templatesDir: templates, fixedPort: 8080, ...(log ? { log } : {}) });
  await addRancherAssets(h.assetsDir);
  t.teardown(async () => {
    await h.close();
    await rm(templates, { recursive: true, force: true });
  });
  return h;
}

test('/ipxe?uuid= alone selects the declared machine by UUID; iPXE settings reach the script unchanged', async (t) => {
  const h = await harness(t);
  const r = await h.req('GET', `/ipxe?uuid=${UUID}`);
  t.regex(r.text, /booting coreos on 52:54:00:aa:00:01/);
  t.regex(r.text, /coreos\.config\.url=http:\/\/10\.0\.0\.1:8080\/ignition\?uuid=\$\{uuid\}&mac=\$\{mac:hexhyp\} coreos\.autologin /);
});

test('/cloud (bootcfg) serves the cloud-config by uuid or mac', async (t) => {
  const h = await harness(t);
  for (const q of [`uuid=${UUID}`, `mac=${MAC}`]) {
    const r = await h.req('GET', `/cloud?${q}`);
    t.is(r.status, 200, q);
    t.true(r.text.startsWith('#cloud-config\n'), q);
    t.regex(r.text, /profile coreos/, q);
  }
});

test('matchbox /ignition, /generic and /metadata: the profile templates and the group metadata', async (t) => {
  const h = await harness(t);
  const ign = await h.req('GET', `/ignition?uuid=${UUID}&mac=${MAC.replace(/:/g, '-')}`);
  t.is(ign.status, 200);
  t.regex(String(ign.headers['content-type']), /application\/json/);
  t.like(ign.json, { ignition: { version: '3.3.0' }, passwd: { users: [{ name: 'core', sshAuthorizedKeys: ['ssh-ed25519 AAAA k@x'] }] } });
  const gen = await h.req('GET', `/generic?mac=${MAC}&uuid=${UUID}`);
  t.is(gen.text, `mac=${MAC} role=worker\n`);
  const md = await h.req('GET', `/metadata?uuid=${UUID}`);
  t.is(md.text, `MAC=${MAC}\nUUID=${UUID}\nHOSTNAME=node1\nPROFILE=coreos\nRACK=r1\nROLE=worker\nETCD_NAME=node1\n`);
  // A profile without the kind is a 404 naming it; an unknown machine 404s too.
  const none = await h.req('GET', '/ignition?mac=52:54:00:00:00:99');
  t.is(none.status, 404);
  t.regex(none.json.error.message, /rancheros has no ignition template/);
  t.is(metadataLines({ a: 'x\ny=1' }), 'A=x y=1\n');
});

test('Pixiecore API: GET /pixiecore/v1/boot/:mac answers kernel, initrd and cmdline; 404 tells Pixiecore to ignore', async (t) => {
  const h = await harness(t);
  const r = await h.req('GET', `/pixiecore/v1/boot/${MAC}`);
  t.is(r.status, 200);
  // By MAC: the declared machine carries the UUID its group selects.
  t.deepEqual(Object.keys(r.json).sort(), ['cmdline', 'initrd', 'kernel', 'message']);
  t.is(r.json.kernel, 'http://10.0.0.1:8080/assets/rancheros/v1.5.8/vmlinuz');
  t.deepEqual(r.json.initrd, ['http://10.0.0.1:8080/assets/rancheros/v1.5.8/initrd']);
  t.is(r.json.cmdline, 'coreos.config.url=http://10.0.0.1:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp} coreos.autologin');
  t.notRegex(r.json.cmdline, /\{\{/);
  // Pixiecore runs the cmdline through Go text/template: an operator's `{{` that is no
  // placeholder of ours reaches the kernel as written, not as a Go action Pixiecore fails on.
  const OTHER = '52:54:00:aa:00:02';
  t.is(
    (
      await h.req('PUT', '/api/profiles/braces', {
        headers: auth,
        body: { kernel: '/assets/rancheros/v1.5.8/vmlinuz', cmdline: 'a={{x-y}} b={{{ c={{ address }}' },
      })
    ).status,
    201,
  );
  t.is((await h.req('PUT', `/api/machines/${OTHER}`, { headers: auth, body: { profile: 'braces' } })).status, 201);
  const braces = (await h.req('GET', `/pixiecore/v1/boot/${OTHER}`)).json.cmdline as string;
  t.is(goTextTemplate(braces), 'a={{x-y}} b={{{ c=10.0.0.1');
  t.is(goTemplateLiteral('{{{{'), '{{"{{"}}{{"{{"}}');
  t.is((await h.req('GET', '/pixiecore/v1/boot/not-a-mac')).status, 400);
  await rm(path.join(h.assetsDir, 'rancheros'), { recursive: true });
  t.is((await h.req('GET', `/pixiecore/v1/boot/${MAC}`)).status, 404);
});

test('no request from the network produces a 500 or a stack trace in the log: /boot/%zz, {{ constructor }}, a 1,000-deep facts body', async (t) => {
  const { log, lines } = captureLogger();
  const h = await harness(t, log);
  for (const p of [
    '/boot/%zz',
    '/assets/%zz',
    '/ipxe?mac=%zz',
    `/ipxe?mac=${MAC}&arch=${encodeURIComponent('{{ constructor }}')}`,
    `/ignition?uuid=${encodeURIComponent('{{ constructor }}')}`,
    '/metadata?mac={{constructor}}',
    '/pixiecore/v1/boot/%zz',
    '/pixiecore/v1/boot/__proto__',
    '/cloud?mac=__proto__',
    '/nocloud/%zz/user-data',
    '/api/machines/%zz',
  ]) {
    const r = await h.req('GET', p);
    t.true(r.status < 500, `${p}: ${r.status}`);
  }
  const deep = { raw: `${'{"a":'.repeat(1000)}1${'}'.repeat(1000)}`, headers: { 'content-type': 'application/json' } };
  const facts = await h.req('POST', `/api/machines/${MAC}/facts`, deep);
  t.is(facts.status, 422);
  t.is((await h.req('PUT', '/api/profiles/deep', { ...deep, headers: { ...deep.headers, ...auth } })).status, 422);
  // Nothing above is the appliance's failure: no error line, no stack in any line.
  t.deepEqual(
    lines.filter((l) => Number(l['level']) >= 50),
    [],
  );
  t.false(
    lines.some((l) => /\n\s+at /.test(JSON.stringify(l).replace(/\\n/g, '\n'))),
    'a stack trace was logged',
  );
});

test('fact selectors choose the profile of /ignition, /generic, /metadata, /cloud-config, /preseed and the Pixiecore API, with verified facts only', async (t) => {
  const h = await harness(t);
  const FACTS_MAC = '52:54:00:aa:00:77';
  await h.req('PUT', '/api/groups/big-iron', {
    headers: auth,
    body: { profile: 'coreos', selector: { facts: ['dmi.vendor == Acme', 'cpu.count >= 8'] }, metadata: { role: 'storage' } },
  });
  const profileOf = async (): Promise<Record<string, string | undefined>> => ({
    metadata: /^PROFILE=(.*)$/m.exec((await h.req('GET', `/metadata?mac=${FACTS_MAC}`)).text)?.[1],
    generic: (await h.req('GET', `/generic?mac=${FACTS_MAC}`)).status === 200 ? 'coreos' : 'none',
    ignition: (await h.req('GET', `/ignition?mac=${FACTS_MAC}`)).status === 200 ? 'coreos' : 'none',
    cloudConfig: /profile (\S+)\)/.exec((await h.req('GET', `/cloud-config?mac=${FACTS_MAC}`)).text)?.[1],
    pixiecore: /booting (\S+)/.exec(String((await h.req('GET', `/pixiecore/v1/boot/${FACTS_MAC}`)).json?.message))?.[1],
  });
  const everywhere = (profile: string) => ({
    metadata: profile,
    generic: profile === 'coreos' ? 'coreos' : 'none',
    ignition: profile === 'coreos' ? 'coreos' : 'none',
    cloudConfig: profile,
    pixiecore: profile,
  });
  t.deepEqual(await profileOf(), everywhere('rancheros'), 'no facts: the default profile');

  // Unverified facts (no token) are stored but match no fact selector.
  const facts = { dmi: { vendor: 'Acme' }, cpu: { count: 16 } };
  t.like(await h.req('POST', `/api/machines/${FACTS_MAC}/facts`, { body: facts }), { json: { verified: false } });
  t.deepEqual(await profileOf(), everywhere('rancheros'), 'unverified facts chose a profile');

  // Verified (here with the API token, as an operator importing an inventory): the group's profile everywhere.
  t.like(await h.req('POST', `/api/machines/${FACTS_MAC}/facts`, { headers: auth, body: facts }), { json: { verified: true } });
  t.deepEqual(await profileOf(), everywhere('coreos'));
  t.regex((await h.req('GET', `/generic?mac=${FACTS_MAC}`)).text, /role=storage/);
  t.regex((await h.req('GET', `/preseed?mac=${FACTS_MAC}`)).text, /profile coreos/);
});

test('/ignition, /generic and /metadata follow the boot the machine took, as /cloud does: a pending one-shot does not change them, the provisioning it started does, until the callback', async (t) => {
  const h = await harness(t);
  t.is(
    (
      await h.req('PUT', '/api/profiles/installer', {
        headers: auth,
        body: {
          kernel: '/assets/rancheros/v1.5.8/vmlinuz',
          initrd: ['/assets/rancheros/v1.5.8/initrd'],
          cmdline: { 'netboot.callback': '{{ callback_url? }}' },
          ignition: 'node.ign',
          generic: 'node.ign',
          vars: { key: 'ssh-ed25519 INSTALL i@x' },
        },
      })
    ).status,
    201,
  );
  const documents = async () => ({
    ignition: (await h.req('GET', `/ignition?mac=${MAC}`)).json?.passwd?.users?.[0]?.sshAuthorizedKeys?.[0],
    // coreos renders node.generic with its group's metadata; installer renders node.ign as its generic template.
    generic: ((text) => (text === `mac=${MAC} role=worker\n` ? 'coreos' : text.includes('INSTALL') ? 'installer' : text))(
      (await h.req('GET', `/generic?mac=${MAC}`)).text,
    ),
    metadata: /^PROFILE=(.*)$/m.exec((await h.req('GET', `/metadata?mac=${MAC}`)).text)?.[1],
    cloud: /profile (\S+)\)/.exec((await h.req('GET', `/cloud?mac=${MAC}`)).text)?.[1],
  });
  const coreos = { ignition: 'ssh-ed25519 AAAA k@x', generic: 'coreos', metadata: 'coreos', cloud: 'coreos' };
  const installer = { ignition: 'ssh-ed25519 INSTALL i@x', generic: 'installer', metadata: 'installer', cloud: 'installer' };
  t.deepEqual(await documents(), coreos);

  t.is((await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'installer', once: true } })).status, 200);
  t.deepEqual(await documents(), coreos, 'pending: the machine has not booted the one-shot yet');

  // The machine's own boot takes it (DHCP saw it at this address): its documents follow.
  h.dhcpSaw(MAC);
  const script = await h.req('GET', `/ipxe?mac=${MAC}`);
  t.regex(script.text, /booting installer/);
  t.is((await h.store.getMachine(MAC))?.state, 'provisioning');
  t.deepEqual(await documents(), installer);

  // The installed OS calls back: provisioned, back to its ordinary selection everywhere.
  const token = /callback\?token=([0-9a-f]+)/.exec(script.text)?.[1];
  t.truthy(token);
  t.is((await h.req('POST', `/api/machines/${MAC}/callback?token=${token}`)).status, 200);
  t.deepEqual(await documents(), coreos);
});

test("a one-shot's /generic, /ignition and /metadata get the machine's group metadata (`{{ metadata.role }}` renders; the group did not choose the profile)", async (t) => {
  const h = await harness(t);
  const put = await h.req('PUT', '/api/profiles/rescue', {
    headers: auth,
    body: { kernel: '/assets/rancheros/v1.5.8/vmlinuz', initrd: ['/assets/rancheros/v1.5.8/initrd'], generic: 'node.generic', ignition: 'node.generic' },
  });
  t.is(put.status, 201);
  t.is((await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'rescue', once: true } })).status, 200);
  h.dhcpSaw(MAC);
  t.regex((await h.req('GET', `/ipxe?mac=${MAC}`)).text, /booting rescue/);
  const generic = await h.req('GET', `/generic?mac=${MAC}`);
  t.is(generic.status, 200, generic.text);
  t.is(generic.text, `mac=${MAC} role=worker\n`);
  t.is((await h.req('GET', `/ignition?mac=${MAC}`)).text, `mac=${MAC} role=worker\n`);
  const md = (await h.req('GET', `/metadata?mac=${MAC}`)).text;
  t.regex(md, /^PROFILE=rescue$/m);
  t.regex(md, /^ROLE=worker$/m);
});
