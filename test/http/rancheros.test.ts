import test from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createMemoryStore } from '../../src/store/store.js';
import { missingAssetMessage } from '../../src/http/routes/boot.js';
import { shQuote } from '../../src/http/microkernel.js';
import { addRancherAssets, auth, startHarness } from './helpers.js';

const run = promisify(execFile);
const MAC = '52:54:00:12:34:56';
const KEYS = ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 ops@example', 'ssh-rsa AAAAB3Nza "quoted" \\ x'];
const TARBALL = Buffer.from('fake docker image tarball\n'.repeat(100));
const SHA = createHash('sha256').update(TARBALL).digest('hex');

interface WriteFile {
  path: string;
  permissions: string;
  owner: string;
  content: string;
}

/** Default db with a microkernel on the rancheros profile and one configured machine. */
function microkernelStore(extraEnv: Record<string, string> = {}) {
  const db = createDefaultDb();
  const vars = (db.profiles[0]!.vars ??= {});
  vars.ssh_authorized_keys = [KEYS[0]!];
  vars.microkernel = { image: '/assets/microkernel/agent.tar', name: 'discovery', env: { ROLE: 'it\'s a "test" $HOME', ...extraEnv } };
  db.machines.push({ mac: MAC, hostname: 'node-1', vars: { ssh_authorized_keys: KEYS, password: 'S3cret-pass', autologin: null } });
  return createMemoryStore(db);
}

async function addTarball(dir: string, data = TARBALL): Promise<void> {
  await mkdir(path.join(dir, 'microkernel'), { recursive: true });
  await writeFile(path.join(dir, 'microkernel', 'agent.tar'), data);
}

test('default profile: RancherOS kernel line with optional password and autologin vars', async (t) => {
  const h = await startHarness({ fixedPort: 8080, store: microkernelStore() });
  t.teardown(() => h.close());
  await addRancherAssets(h.assetsDir);
  // The configured machine: password on, autologin switched off by its vars.
  const m = await h.req('GET', `/ipxe?mac=${MAC}&platform=pcbios`);
  const kernel = m.text.split('\n').find((l) => l.startsWith('kernel '))!;
  t.truthy(kernel);
  const args = kernel.split(' ');
  t.true(args.includes('rancher.password=S3cret-pass'));
  t.false(args.some((a) => a.startsWith('rancher.autologin')));
  t.true(args.includes('console=tty0'));
  t.true(args.includes('console=ttyS0,115200n8'));
  t.true(args.includes('printk.devkmsg=on'));
  t.true(args.includes(`rancher.cloud_init.datasources=[url:http://10.0.0.1:8080/cloud-config?mac=${MAC}]`));
  t.is(args[1], 'http://10.0.0.1:8080/assets/rancheros/v1.5.8/vmlinuz');
  // An unknown machine: profile default autologin, no password argument at all.
  const other = await h.req('GET', '/ipxe?mac=52:54:00:00:00:99&platform=pcbios');
  const otherArgs = other.text
    .split('\n')
    .find((l) => l.startsWith('kernel '))!
    .split(' ');
  t.true(otherArgs.includes('rancher.autologin=ttyS0'));
  t.false(otherArgs.some((a) => a.startsWith('rancher.password')));
});

test('a password that cannot go on the kernel line is refused at write time', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const r = await h.req('PUT', `/api/machines/${MAC}`, { body: { vars: { password: 'two words' } }, headers: auth });
  t.is(r.status, 422);
  t.is(r.json.error.field, 'vars.password');
  const mk = await h.req('PUT', `/api/machines/${MAC}`, { body: { vars: { microkernel: { image: '/assets/../etc/passwd' } } }, headers: auth });
  t.is(mk.status, 422);
  t.is(mk.json.error.field, 'vars.microkernel.image');
  const env = await h.req('PUT', `/api/machines/${MAC}`, {
    body: { vars: { microkernel: { image: '/assets/a.tar', env: { MACHINE_MAC: 'x' } } } },
    headers: auth,
  });
  t.is(env.status, 422);
  t.regex(env.json.error.message, /MACHINE_MAC is set by the appliance/);
  t.is((await h.req('GET', `/api/machines/${MAC}`, { headers: auth })).status, 404);
});

test('missing RancherOS assets: the console names the fetch command', async (t) => {
  const h = await startHarness({ fixedPort: 8080 });
  t.teardown(() => h.close());
  const r = await h.req('GET', `/ipxe?mac=${MAC}`);
  t.is(r.status, 200);
  const echo = r.text.split('\n').find((l) => l.startsWith('echo netboot-appliance: profile'))!;
  // The harness's assets dir is a temp dir, so the command carries --assets.
  t.is(
    echo,
    `echo netboot-appliance: profile rancheros: /assets/rancheros/v1.5.8/vmlinuz is missing on the appliance. Run: node bin/appliance fetch rancheros --assets ${h.assetsDir}`,
  );
  t.regex(r.text, /^sleep 20$/m);
  t.is(
    missingAssetMessage('rancheros', '/assets/rancheros/v1.5.8/initrd', 'assets'),
    'profile rancheros: /assets/rancheros/v1.5.8/initrd is missing on the appliance. Run: node bin/appliance fetch rancheros',
  );
  t.is(
    missingAssetMessage('r', '/assets/rancheros/v1.4.2/vmlinuz', path.resolve('assets')),
    'profile r: /assets/rancheros/v1.4.2/vmlinuz is missing on the appliance. Run: node bin/appliance fetch rancheros --version v1.4.2',
  );
  t.is(
    missingAssetMessage('x', '/assets/other/vmlinuz', 'assets'),
    'profile x: /assets/other/vmlinuz is missing on the appliance (put it under the assets directory)',
  );
});

test('RancherOS cloud-config with a microkernel, key by key', async (t) => {
  const h = await startHarness({ fixedPort: 8080, store: microkernelStore() });
  t.teardown(() => h.close());
  await addTarball(h.assetsDir);
  const r = await h.req('GET', `/cloud-config?mac=${MAC}`);
  t.is(r.status, 200);
  t.true(r.text.startsWith('#cloud-config\n'));
  const doc = parseYaml(r.text) as Record<string, unknown>;
  t.deepEqual(Object.keys(doc).sort(), ['hostname', 'rancher', 'ssh_authorized_keys', 'write_files']);
  t.is(doc.hostname, 'node-1');
  t.deepEqual(doc.ssh_authorized_keys, KEYS); // machine vars override the profile's key list
  t.deepEqual(doc.rancher, { console: 'default' });
  const files = doc.write_files as WriteFile[];
  t.deepEqual(
    files.map((f) => f.path),
    ['/etc/netboot-appliance', '/etc/rc.local'],
  );
  t.is(files[0]!.content, `server=http://10.0.0.1:8080\nmac=${MAC}\nprofile=rancheros\n`);
  const rc = files[1]!;
  t.is(rc.permissions, '0755');
  t.is(rc.owner, 'root');
  const lines = rc.content.split('\n');
  t.is(lines[0], '#!/bin/sh');
  t.true(lines.includes('wait-for-docker'));
  t.true(lines.indexOf('wait-for-docker') < lines.findIndex((l) => l.includes('docker load')));
  t.true(lines.includes(`IMAGE_URL='http://10.0.0.1:8080/assets/microkernel/agent.tar?mac=${MAC}'`));
  t.true(lines.includes(`IMAGE_SHA256='${SHA}'`));
  t.true(lines.includes(`IMAGE_REF=''`));
  t.true(lines.includes('if ! echo "$IMAGE_SHA256  $TARBALL" | sha256sum -c - >/dev/null 2>&1; then'));
  t.true(lines.includes('if ! out=$(docker load -i "$TARBALL"); then log "docker load failed"; rm -f "$TARBALL"; exit 1; fi'));
  t.true(lines.includes(`docker rm -f 'discovery' >/dev/null 2>&1 || true`));
  // FACTS_TOKEN: this cloud-config's boot session (boot-sessions.ts), bound to this MAC and address.
  const token = /-e 'FACTS_TOKEN=([0-9a-f]{32})'/.exec(rc.content)?.[1];
  t.truthy(token, rc.content);
  const runLine = `if docker run -d --name 'discovery' --privileged --net=host -v /proc:/host-proc:ro -v /dev:/host-dev:ro -v /sys:/host-sys:ro -e 'APPLIANCE_URL=http://10.0.0.1:8080' -e 'MACHINE_MAC=${MAC}' -e 'FACTS_TOKEN=${token}' -e ${shQuote(`ROLE=it's a "test" $HOME`)} "$ref" >/dev/null; then`;
  t.true(lines.includes(runLine), rc.content);
  t.notRegex(r.text, /^runcmd:/m);
  t.is(h.events.list({ mac: MAC }).at(-1)?.detail?.microkernel, '/assets/microkernel/agent.tar');
});

test('RancherOS cloud-config: microkernel tarball missing renders without it, with a warning comment', async (t) => {
  const h = await startHarness({ fixedPort: 8080, store: microkernelStore() });
  t.teardown(() => h.close());
  const r = await h.req('GET', `/cloud-config?mac=${MAC}`);
  t.is(r.status, 200);
  t.regex(
    r.text,
    /^# netboot-appliance WARNING: microkernel image \/assets\/microkernel\/agent\.tar is missing on the appliance; this machine boots without it/m,
  );
  const doc = parseYaml(r.text) as { write_files: WriteFile[]; hostname: string };
  t.deepEqual(
    doc.write_files.map((f) => f.path),
    ['/etc/netboot-appliance'],
  );
  t.is(doc.hostname, 'node-1');
  t.is(h.events.list({ mac: MAC }).at(-1)?.detail?.microkernel, 'missing /assets/microkernel/agent.tar');
  // A machine whose vars switch the microkernel off gets neither the script nor the warning.
  await h.store.putMachine({ mac: '52:54:00:00:00:02', vars: { microkernel: null } });
  const off = await h.req('GET', '/cloud-config?mac=52:54:00:00:00:02');
  t.notRegex(off.text, /WARNING|rc\.local/);
  t.is((parseYaml(off.text) as { hostname: string }).hostname, 'rancher-525400000002');
});

/** A PATH of busybox applets plus stub docker / wait-for-docker that log their arguments. */
async function stubPath(dir: string): Promise<string> {
  const bin = path.join(dir, 'bin');
  await mkdir(bin);
  const { stdout } = await run('busybox', ['--list']);
  for (const applet of stdout.split('\n').filter(Boolean)) await symlink('/bin/busybox', path.join(bin, applet));
  await writeFile(path.join(bin, 'wait-for-docker'), `#!/bin/busybox sh\necho wait-for-docker >> "${dir}/calls"\n`);
  await writeFile(
    path.join(bin, 'docker'),
    `#!/bin/busybox sh\necho "docker $*" >> "${dir}/calls"\nif [ "$1" = load ]; then sha256sum "$3" >> "${dir}/calls"; echo "Loaded image: netboot/discovery:1"; fi\n`,
  );
  await chmod(path.join(bin, 'wait-for-docker'), 0o755);
  await chmod(path.join(bin, 'docker'), 0o755);
  return bin;
}

test('the rendered rc.local runs under busybox: downloads from the appliance, checks sha256, loads and runs', async (t) => {
  const h = await startHarness({ store: microkernelStore(), address: '127.0.0.1' });
  t.teardown(() => h.close());
  await addTarball(h.assetsDir);
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-rclocal-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const bin = await stubPath(dir);
  const doc = parseYaml((await h.req('GET', `/cloud-config?mac=${MAC}`)).text) as { write_files: WriteFile[] };
  const script = path.join(dir, 'rc.local');
  await writeFile(script, doc.write_files[1]!.content);
  const env = { PATH: bin, NETBOOT_MK_DIR: path.join(dir, 'mk'), NETBOOT_MK_LOG: path.join(dir, 'log'), NETBOOT_KMSG: path.join(dir, 'kmsg') };
  await run('busybox', ['sh', script], { env, timeout: 60_000 });
  const calls = (await readFile(path.join(dir, 'calls'), 'utf8')).trim().split('\n');
  const mk = path.join(dir, 'mk', 'image.tar');
  const token = /FACTS_TOKEN=([0-9a-f]{32})/.exec(calls.at(-1) ?? '')?.[1];
  t.truthy(token, calls.at(-1));
  t.deepEqual(calls, [
    'wait-for-docker',
    `docker load -i ${mk}`,
    `${SHA}  ${mk}`,
    'docker rm -f discovery',
    `docker run -d --name discovery --privileged --net=host -v /proc:/host-proc:ro -v /dev:/host-dev:ro -v /sys:/host-sys:ro -e APPLIANCE_URL=http://127.0.0.1:${h.port} -e MACHINE_MAC=${MAC} -e FACTS_TOKEN=${token} -e ROLE=it's a "test" $HOME netboot/discovery:1`,
  ]);
  t.regex(await readFile(path.join(dir, 'log'), 'utf8'), /started discovery \(netboot\/discovery:1\)/);
  t.regex(await readFile(path.join(dir, 'kmsg'), 'utf8'), /netboot-microkernel: started discovery/);
  t.deepEqual(await readdir(path.join(dir, 'mk')), []); // the tarball is removed after loading
  t.true(h.events.list({ mac: MAC }).some((e) => e.type === 'http-asset' && e.detail?.file === '/assets/microkernel/agent.tar'));
});

test('the rendered rc.local refuses a tarball whose sha256 does not match', async (t) => {
  const h = await startHarness({ store: microkernelStore(), address: '127.0.0.1' });
  t.teardown(() => h.close());
  await addTarball(h.assetsDir);
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-rclocal-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const bin = await stubPath(dir);
  const doc = parseYaml((await h.req('GET', `/cloud-config?mac=${MAC}`)).text) as { write_files: WriteFile[] };
  // Swapped on the appliance after the cloud-config was rendered (or corrupted in transit).
  await addTarball(h.assetsDir, Buffer.from('something else'));
  const script = path.join(dir, 'rc.local');
  await writeFile(script, doc.write_files[1]!.content);
  const env = { PATH: bin, NETBOOT_MK_DIR: path.join(dir, 'mk'), NETBOOT_MK_LOG: path.join(dir, 'log'), NETBOOT_KMSG: path.join(dir, 'kmsg') };
  const err = await t.throwsAsync(run('busybox', ['sh', script], { env, timeout: 60_000 }));
  t.is((err as { code?: number }).code, 1);
  t.deepEqual((await readFile(path.join(dir, 'calls'), 'utf8')).trim().split('\n'), ['wait-for-docker']);
  t.regex(
    await readFile(path.join(dir, 'log'), 'utf8'),
    new RegExp(`sha256 of http://127\\.0\\.0\\.1:${h.port}/assets/microkernel/agent\\.tar\\?mac=${MAC} is not ${SHA}; refusing to load it`),
  );
  t.deepEqual(await readdir(path.join(dir, 'mk')), []);
});
