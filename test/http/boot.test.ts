import test from 'ava';
import { mkdtemp, readFile, rm, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { createMemoryStore } from '../../src/store/store.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { addRancherAssets, FIXTURES, startHarness, TEMPLATES } from './helpers.js';

const MAC = '52:54:00:12:34:56';
const UUID = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';

/** Compare with a committed golden file; UPDATE_GOLDEN=1 rewrites it. */
async function golden(t: import('ava').ExecutionContext, name: string, actual: string): Promise<void> {
  const file = path.join(FIXTURES, name);
  if (process.env.UPDATE_GOLDEN === '1') await writeFile(file, actual);
  t.is(actual, await readFile(file, 'utf8'), `golden ${name} (UPDATE_GOLDEN=1 to rewrite after an intended change)`);
}

function seededStore() {
  const db = createDefaultDb();
  db.profiles.push(
    {
      id: 'multi',
      name: 'Two initrds, remote kernel',
      kernel: 'https://boot.example.org/linux/vmlinuz',
      initrd: ['/assets/multi/initrd', '/assets/multi/extra/initrd', 'http://10.0.0.9/fw.cpio'],
      cmdline: 'console=ttyS0 ip=dhcp url={{ base_url }}/cloud-config?mac={{ mac }} host={{ hostname }} role={{ vars.role }}',
      vars: { role: 'worker' },
    },
    { id: 'noassets', kernel: '/assets/none/vmlinuz', initrd: [], cmdline: '' },
  );
  db.machines.push({ mac: '52:54:00:00:00:02', hostname: 'node2', profile: 'multi', vars: { ssh_authorized_keys: ['ssh-ed25519 AAAAC3Nz user@host'] } });
  return createMemoryStore(db);
}

test('GET /boot.ipxe: fixed entry script (golden)', async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  const r = await h.req('GET', '/boot.ipxe');
  t.is(r.status, 200);
  t.regex(String(r.headers['content-type']), /^text\/plain/);
  t.true(r.text.startsWith('#!ipxe\n'));
  t.regex(r.text, /\$\{netX\/mac:hexhyp\}/);
  await golden(t, 'boot.ipxe', r.text);
});

test('GET /ipxe: default RancherOS profile, UEFI (golden) and BIOS', async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  await addRancherAssets(h.assetsDir);
  const efi = await h.req('GET', `/ipxe?mac=52-54-00-12-34-56&uuid=${UUID}&arch=x86_64&platform=efi`);
  t.is(efi.status, 200);
  t.regex(efi.text, /^kernel http:\/\/10\.0\.0\.1:8080\/assets\/rancheros\/v1\.5\.8\/vmlinuz initrd=initrd console=tty0 /m);
  t.regex(efi.text, /^initrd --name initrd http:\/\/10\.0\.0\.1:8080\/assets\/rancheros\/v1\.5\.8\/initrd /m);
  t.regex(efi.text, /rancher\.cloud_init\.datasources=\[url:http:\/\/10\.0\.0\.1:8080\/cloud-config\?mac=52:54:00:12:34:56\]/);
  await golden(t, 'rancheros-efi.ipxe', efi.text);
  const bios = await h.req('GET', '/ipxe?mac=52:54:00:12:34:56&arch=i386&platform=pcbios');
  t.is(bios.status, 200);
  await golden(t, 'rancheros-bios.ipxe', bios.text);
  const evs = h.events.list({ mac: MAC });
  t.deepEqual(
    evs.map((e) => e.type),
    ['http-script', 'http-script'],
  );
  t.is(evs[0]!.detail?.profile, 'rancheros');
});

test('GET /ipxe: machine profile with several initrds and remote URLs (golden)', async (t) => {
  const h = await startHarness({ fixedPort: 8080, store: seededStore() });
  t.teardown(() => h.close());
  await writeFile(path.join(h.assetsDir, 'placeholder'), '');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(path.join(h.assetsDir, 'multi', 'extra'), { recursive: true });
  await writeFile(path.join(h.assetsDir, 'multi', 'initrd'), 'a');
  await writeFile(path.join(h.assetsDir, 'multi', 'extra', 'initrd'), 'b');
  const r = await h.req('GET', '/ipxe?mac=52:54:00:00:00:02&arch=x86_64&platform=efi');
  t.regex(r.text, /initrd=initrd initrd=1-initrd initrd=fw\.cpio/);
  t.regex(r.text, /host=node2 role=worker/);
  await golden(t, 'multi-efi.ipxe', r.text);
});

test('GET /ipxe: no profile, missing assets, broken template: a retry script, never a 500', async (t) => {
  const templatesDir = await mkdtemp(path.join(tmpdir(), 'netboot-tpl-'));
  t.teardown(() => rm(templatesDir, { recursive: true, force: true }));
  await cp(TEMPLATES, templatesDir, { recursive: true });
  const store = createMemoryStore({
    profiles: [
      { id: 'noassets', kernel: '/assets/none/vmlinuz', initrd: [], cmdline: '' },
      { id: 'badtpl', kernel: 'http://x/k', initrd: [], cmdline: '', ipxe: 'broken.ipxe.njk' },
    ],
  });
  await store.putMachine({ mac: '52:54:00:00:00:01', profile: 'noassets' });
  await store.putMachine({ mac: '52:54:00:00:00:03', profile: 'badtpl' });
  await writeFile(path.join(templatesDir, 'broken.ipxe.njk'), '#!ipxe\nkernel {{ no_such_value }}\n');
  const h = await startHarness({ fixedPort: 8080, store, templatesDir });
  t.teardown(() => h.close());

  // First, before any request teaches the event log which MAC uses 127.0.0.1.
  const nomac = await h.req('GET', '/ipxe');
  t.is(nomac.status, 200);
  t.regex(nomac.text, /cannot identify this machine/);
  t.regex(nomac.text, /chain --replace --autofree http:\/\/10\.0\.0\.1:8080\/boot\.ipxe/);

  const none = await h.req('GET', '/ipxe?mac=52:54:00:00:00:09&arch=x86_64');
  t.is(none.status, 200);
  t.regex(none.text, /^echo netboot-appliance: no machine record, group or default profile matches this machine$/m);
  t.regex(none.text, /^sleep \d+$/m);
  t.regex(none.text, /^chain --replace --autofree http:\/\/10\.0\.0\.1:8080\/ipxe\?mac=52-54-00-00-00-09&arch=x86_64$/m);
  await golden(t, 'retry-no-profile.ipxe', none.text);

  const missing = await h.req('GET', '/ipxe?mac=52:54:00:00:00:01');
  t.is(missing.status, 200);
  t.regex(missing.text, /echo netboot-appliance: profile noassets: \/assets\/none\/vmlinuz is missing on the appliance/);

  const broken = await h.req('GET', '/ipxe?mac=52:54:00:00:00:03');
  t.is(broken.status, 200);
  t.regex(broken.text, /echo netboot-appliance: template broken\.ipxe\.njk: \[Line 2, Column \d+\] attempted to output null or undefined value/);
  t.notRegex(broken.text, /netboot-tpl-/);
  t.notRegex(broken.text, /^kernel/m);

  t.is(h.events.list({ mac: '52:54:00:00:00:01' })[0]?.detail?.outcome, 'retry');
});

test('GET /ipxe: MAC learned from DHCP (events) when the query has none', async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  await addRancherAssets(h.assetsDir);
  h.events.record({ mac: MAC, type: 'dhcp-ack', ip: '127.0.0.1' });
  const r = await h.req('GET', '/ipxe');
  t.regex(r.text, /booting rancheros on 52:54:00:12:34:56/);
});

test('hostile query values never reach the script', async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  await addRancherAssets(h.assetsDir);
  // A MAC that does not validate is dropped (and none is known for 127.0.0.1 yet).
  const bad = await h.req('GET', `/ipxe?mac=${encodeURIComponent('52:54:00:12:34:56\nshell')}`);
  t.notRegex(bad.text, /^shell/m);
  t.regex(bad.text, /cannot identify this machine/);
  const evil = encodeURIComponent('x86_64\nshell');
  const r = await h.req(
    'GET',
    `/ipxe?mac=52:54:00:12:34:56&uuid=${encodeURIComponent('${net0/ip}')}&arch=${evil}&platform=${encodeURIComponent('efi || shell')}`,
  );
  t.is(r.status, 200);
  t.notRegex(r.text, /shell/);
  t.notRegex(r.text, /net0\/ip/);
  t.regex(r.text, /ipxe\?mac=52-54-00-12-34-56$/m);
});

test('hostile values never reach the script: refused at write time, and a value placed at boot that breaks a line becomes a retry message', (t) => {
  t.throws(() => createMemoryStore({ profiles: [{ id: 'evil', kernel: 'http://x/k', initrd: [], cmdline: { a: 'b\nshell', ok: '1' } }] }), {
    code: 'ERR_VALIDATION',
    message: /cmdline\.a/,
  });
  t.throws(() => createMemoryStore({ profiles: [{ id: 'evil2', kernel: 'http://x/k', initrd: [], cmdline: 'quiet ${net0/ip} || shell' }] }), {
    code: 'ERR_VALIDATION',
    message: /"\|\|"/,
  });
});

test('a machine var that cannot be one kernel argument, placed through the default profile, is a legible retry script', async (t) => {
  const store = createMemoryStore({ defaultProfile: 'p', profiles: [{ id: 'p', kernel: 'http://x/k', initrd: [], cmdline: 'quiet note={{ vars.note }}' }] });
  // The machine names no profile, so its vars are checked only when the default places them.
  await store.putMachine({ mac: '52:54:00:00:00:01', vars: { note: 'two words || shell' } });
  const h = await startHarness({ fixedPort: 8080, store });
  t.teardown(() => h.close());
  const r = await h.req('GET', '/ipxe?mac=52:54:00:00:00:01');
  t.is(r.status, 200);
  t.notRegex(r.text, /^shell/m);
  t.notRegex(r.text, /^kernel/m);
  t.regex(r.text, /contains whitespace/);
  // Every line is one of the fixed retry-script commands.
  for (const line of r.text.trim().split('\n'))
    t.regex(
      line,
      /^(#!ipxe|# netboot-appliance|echo netboot-appliance: |sleep \d+$|chain --replace --autofree http:\/\/10\.0\.0\.1:8080\/ipxe\?mac=[0-9a-f-]+$)/,
      line,
    );
});

test('GET /cloud-config: valid YAML with the machine vars, hostile values quoted', async (t) => {
  const store = seededStore();
  const hostile = ['ssh-ed25519 AAAA x@y', 'a: b # not a comment', '"quoted" \\ back', '- list: [1, {x: 2}]', '{{ 7*7 }} ${uuid} || reboot', 'ünïcødé'];
  await store.putMachine({ mac: MAC, hostname: 'web-1', vars: { ssh_authorized_keys: hostile } });
  const h = await startHarness({ fixedPort: 8080, store });
  t.teardown(() => h.close());
  const r = await h.req('GET', `/cloud-config?mac=${MAC}`);
  t.is(r.status, 200);
  t.true(r.text.startsWith('#cloud-config\n'));
  const doc = parseYaml(r.text) as Record<string, unknown>;
  t.is(doc.hostname, 'web-1');
  t.deepEqual(doc.ssh_authorized_keys, hostile);
  t.deepEqual(Object.keys(doc).sort(), ['hostname', 'rancher', 'ssh_authorized_keys', 'write_files']);
  await golden(t, 'rancheros-cloud-config.yaml', r.text);
  t.is(h.events.list({ mac: MAC }).at(-1)?.type, 'http-cloud-config');

  const other = await h.req('GET', '/cloud-config?mac=52:54:00:00:00:02');
  t.is(other.status, 200);
  t.deepEqual((parseYaml(other.text) as { ssh_authorized_keys: string[] }).ssh_authorized_keys, ['ssh-ed25519 AAAAC3Nz user@host']);
});

test('GET /cloud-config: errors are coded', async (t) => {
  const templatesDir = await mkdtemp(path.join(tmpdir(), 'netboot-tpl-'));
  t.teardown(() => rm(templatesDir, { recursive: true, force: true }));
  await writeFile(path.join(templatesDir, 'bad.yaml.njk'), '#cloud-config\nhostname: {{ hostname }}\n  broken: [\n');
  await writeFile(path.join(templatesDir, 'nohead.yaml.njk'), 'hostname: x\n');
  const store = createMemoryStore({
    profiles: [
      { id: 'bad', kernel: 'http://x/k', cloudConfig: 'bad.yaml.njk' },
      { id: 'nohead', kernel: 'http://x/k', cloudConfig: 'nohead.yaml.njk' },
    ],
  });
  await store.putMachine({ mac: '52:54:00:00:00:01', profile: 'bad', hostname: 'h' });
  await store.putMachine({ mac: '52:54:00:00:00:02', profile: 'nohead' });
  const h = await startHarness({ store, templatesDir });
  t.teardown(() => h.close());
  const nomac = await h.req('GET', '/cloud-config');
  t.is(nomac.status, 400);
  t.is(nomac.json.error.code, 'ERR_MAC_REQUIRED');
  const nop = await h.req('GET', '/cloud-config?mac=52:54:00:00:00:09');
  t.is(nop.status, 404);
  t.is(nop.json.error.code, 'ERR_NO_PROFILE');
  const bad = await h.req('GET', '/cloud-config?mac=52:54:00:00:00:01');
  t.is(bad.status, 500);
  t.is(bad.json.error.code, 'ERR_CLOUD_CONFIG_INVALID');
  const nohead = await h.req('GET', '/cloud-config?mac=52:54:00:00:00:02');
  t.is(nohead.json.error.code, 'ERR_CLOUD_CONFIG_INVALID');
  t.regex(nohead.json.error.message, /#cloud-config/);
});

test("GET /cloud-config?mac= follows the UUID of the same machine's last /ipxe boot", async (t) => {
  const db = createDefaultDb();
  db.profiles.push({ id: 'by-uuid', kernel: 'http://10.0.0.9/vmlinuz', initrd: [], cmdline: '', cloudConfig: 'cloud-config.yaml.njk' });
  // The record's MAC is another NIC: only the UUID ties the booting VM to it.
  db.machines.push({ mac: '52:54:00:00:00:99', uuid: UUID, hostname: 'uuid-host', profile: 'by-uuid' });
  const h = await startHarness({ store: createMemoryStore(db), fixedPort: 8080 });
  t.teardown(() => h.close());
  const before = await h.req('GET', `/cloud-config?mac=${MAC}`);
  t.false(before.text.includes('uuid-host'), 'without a boot, the MAC alone selects the default');
  const script = await h.req('GET', `/ipxe?mac=${MAC}&uuid=${UUID}&arch=x86_64&platform=pcbios`);
  t.regex(script.text, /by-uuid/);
  const after = await h.req('GET', `/cloud-config?mac=${MAC}`);
  t.is(after.status, 200);
  t.is((parseYaml(after.text) as { hostname?: string }).hostname, 'uuid-host');
  t.like(
    h.events
      .list({ mac: MAC })
      .filter((e) => e.type === 'http-cloud-config')
      .at(-1)?.detail,
    { profile: 'by-uuid' },
  );
});
