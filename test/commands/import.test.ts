import test from 'ava';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BIN, ROOT } from '../helpers/appliance-process.js';

function cli(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 30_000 });
}

async function home(t: import('ava').ExecutionContext) {
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-import-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The shipped templates: the default database's profiles name them.
  await cp(path.join(ROOT, 'templates'), path.join(dir, 'templates'), { recursive: true });
  await mkdir(path.join(dir, 'data'));
  return { dir, db: path.join(dir, 'db.json'), templates: path.join(dir, 'templates'), data: path.join(dir, 'data') };
}

const put = async (file: string, text: string) => {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
};

test('import a matchbox data directory: profiles with their templates, groups with metadata; Go templates reported', async (t) => {
  const h = await home(t);
  await put(
    path.join(h.data, 'profiles', 'worker.json'),
    JSON.stringify({
      id: 'worker',
      name: 'Worker',
      boot: {
        kernel: '/assets/fcos/kernel',
        initrd: ['/assets/fcos/initramfs.img'],
        args: ['coreos.config.url=http://10.0.0.1:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}', 'coreos.first_boot=yes'],
      },
      ignition_id: 'worker.ign',
      generic_id: 'gen.tmpl',
    }),
  );
  await put(path.join(h.data, 'ignition', 'worker.ign'), '{"ignition":{"version":"3.3.0"}}');
  await put(path.join(h.data, 'generic', 'gen.tmpl'), 'mac={{.mac}}');
  await put(
    path.join(h.data, 'groups', 'workers.json'),
    JSON.stringify({ id: 'workers', profile: 'worker', selector: { mac: '52-54-00-00-00-01', os: 'installed' }, metadata: { role: 'worker' } }),
  );
  await put(path.join(h.data, 'groups', 'broken.json'), '{ nope');
  const r = cli(['import', h.data, '--db', h.db, '--templates', h.templates]);
  t.is(r.status, 1, r.stderr);
  const report = JSON.parse(r.stdout);
  t.is(report.layout, 'matchbox');
  t.true(report.written.includes('profile worker') && report.written.includes('group workers'));
  t.true(report.problems.some((p: string) => /gen\.tmpl: Go template syntax/.test(p)));
  t.true(report.problems.some((p: string) => /selector os=installed became a label selector/.test(p)));
  t.true(report.problems.some((p: string) => /broken\.json/.test(p)));
  const db = JSON.parse(await readFile(h.db, 'utf8'));
  t.like(
    db.profiles.find((p: { id: string }) => p.id === 'worker'),
    {
      kernel: '/assets/fcos/kernel',
      cmdline: 'coreos.config.url=http://10.0.0.1:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp} coreos.first_boot=yes',
      ignition: 'worker.ignition.njk',
    },
  );
  t.deepEqual(db.groups, [
    { id: 'workers', profile: 'worker', selector: { mac: '52:54:00:00:00:01', labels: { os: 'installed' } }, metadata: { role: 'worker' } },
  ]);
  t.regex(await readFile(path.join(h.templates, 'worker.ignition.njk'), 'utf8'), /^\{% raw %\}\{"ignition"/);
});

test('import a bootcfg data directory: default and per-MAC boot configs and cloud-configs', async (t) => {
  const h = await home(t);
  await put(
    path.join(h.data, 'boot', 'default'),
    JSON.stringify({
      kernel: '/assets/coreos/vmlinuz',
      initrd: ['/assets/coreos/initrd'],
      cmdline: { 'cloud-config-url': 'http://10.0.0.1:8080/cloud?uuid=${uuid}', 'coreos.autologin': '' },
    }),
  );
  await put(
    path.join(h.data, 'boot', 'mac', '52:54:00:00:00:02'),
    JSON.stringify({ kernel: '/assets/coreos/vmlinuz', cmdline: { 'coreos.autologin': '', x: 'y' } }),
  );
  await put(path.join(h.data, 'cloud', 'default'), '#cloud-config\nhostname: node\n');
  const r = cli(['import', h.data, '--db', h.db, '--templates', h.templates]);
  t.is(r.status, 0, r.stdout + r.stderr);
  const db = JSON.parse(await readFile(h.db, 'utf8'));
  t.is(db.defaultProfile, 'bootcfg-default');
  t.like(
    db.profiles.find((p: { id: string }) => p.id === 'bootcfg-default'),
    { cmdline: { 'cloud-config-url': 'http://10.0.0.1:8080/cloud?uuid=${uuid}', 'coreos.autologin': '' }, cloudConfig: 'bootcfg-default-default.cloud.njk' },
  );
  t.deepEqual(db.machines, [{ mac: '52:54:00:00:00:02', profile: 'bootcfg-mac-52-54-00-00-00-02' }]);
  t.is(cli(['import', path.join(h.dir, 'templates'), '--db', h.db]).status, 2);
});
