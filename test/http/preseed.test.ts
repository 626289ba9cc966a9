import test from 'ava';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createMemoryStore } from '../../src/store/store.js';
import { auth, startHarness } from './helpers.js';

const MAC = '52:54:00:14:d1:01';

async function installerAssets(dir: string): Promise<void> {
  const { mkdir, writeFile } = await import('node:fs/promises');
  await mkdir(`${dir}/debian-installer/12/amd64`, { recursive: true });
  await writeFile(`${dir}/debian-installer/12/amd64/linux`, 'k');
  await writeFile(`${dir}/debian-installer/12/amd64/initrd.gz`, 'i');
}

test('the debian-installer profile boots the packaged installer with auto, priority and a per-machine preseed URL', async (t) => {
  const store = createMemoryStore(createDefaultDb());
  const h = await startHarness({ store });
  t.teardown(() => h.close());
  await installerAssets(h.assetsDir);
  await h.req('PUT', `/api/machines/${MAC}`, {
    headers: auth,
    body: { hostname: 'db-1', profile: 'debian-installer', vars: { ssh_authorized_keys: ['ssh-ed25519 AAAA me@x'], packages: 'htop' } },
  });
  const script = await h.req('GET', `/ipxe?mac=${MAC}&platform=pcbios`);
  t.regex(
    script.text,
    new RegExp(
      `^kernel http://10\\.0\\.0\\.1:${h.port}/assets/debian-installer/12/amd64/linux initrd=initrd\\.gz auto=true priority=critical url=http://10\\.0\\.0\\.1:${h.port}/preseed\\?mac=${MAC} `,
      'm',
    ),
  );
  t.regex(script.text, /console=ttyS0,115200n8/);

  const pre = await h.req('GET', `/preseed?mac=${MAC}`);
  t.is(pre.status, 200);
  t.regex(pre.text, /^d-i netcfg\/get_hostname string db-1$/m);
  t.regex(pre.text, /^d-i pkgsel\/include string curl htop$/m);
  t.regex(pre.text, /^d-i passwd\/user-password-crypted password !$/m);
  t.regex(pre.text, /echo 'ssh-ed25519 AAAA me@x' >> '\/target\/home\/debian\/.ssh\/authorized_keys'/);
  t.regex(pre.text, /late_command string .*true$/m);
  // Every line is a comment or a directive: nothing a value held started a line of its own.
  for (const line of pre.text.split('\n').filter(Boolean)) t.regex(line, /^(#|d-i |tasksel |popularity-contest )/, line);
  const ev = (await h.req('GET', `/api/events?mac=${MAC}`, { headers: auth })).json as Array<{ type: string; detail?: Record<string, unknown> }>;
  t.like(ev.find((e) => e.type === 'http-preseed')?.detail, { profile: 'debian-installer', template: 'debian.preseed.njk' });
});

test('a one-shot installer boot: the preseed carries the callback and stays the installer while provisioning', async (t) => {
  const store = createMemoryStore(createDefaultDb());
  const h = await startHarness({ store });
  t.teardown(() => h.close());
  await installerAssets(h.assetsDir);
  t.is((await h.req('POST', `/api/machines/${MAC}/boot`, { headers: auth, body: { profile: 'debian-installer', then: 'local-disk' } })).status, 200);
  h.dhcpSaw(MAC);
  await h.req('GET', `/ipxe?mac=${MAC}`);
  const token = (await store.getMachine(MAC))!.provisioning!.token!;
  const pre = await h.req('GET', `/preseed?mac=${MAC}`);
  t.regex(
    pre.text,
    new RegExp(`in-target curl -fsS -m 30 -X POST 'http://10\\.0\\.0\\.1:${h.port}/api/machines/${MAC}/callback\\?token=${token}' \\|\\| true$`, 'm'),
  );
});
