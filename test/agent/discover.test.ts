import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createMemoryStore } from '../../src/store/store.js';
import { startApplianceHttp } from '../helpers/appliance-http.js';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../agent/discover.sh', import.meta.url));
const HOST_PATH = process.env.PATH ?? '/usr/bin:/bin';

/** A directory of busybox applets only: the agent then runs as in the VM's busybox initrd. */
async function busyboxPath(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-bb-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { stdout } = await run('busybox', ['--list']);
  for (const applet of stdout.split('\n').filter(Boolean)) await symlink('/bin/busybox', path.join(dir, applet));
  return dir;
}

async function put(root: string, rel: string, content: string): Promise<void> {
  await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await writeFile(path.join(root, rel), content);
}

/** Fake /proc and /sys with awkward values (quotes, backslashes, tabs, non-ASCII, control chars). */
async function fakeHost(t: ExecutionContext): Promise<{ proc: string; sys: string; dev: string }> {
  const root = await mkdtemp(path.join(tmpdir(), 'netboot-fakehost-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const proc = path.join(root, 'proc');
  const sys = path.join(root, 'sys');
  const dev = path.join(root, 'dev');
  await mkdir(dev, { recursive: true });
  await put(proc, 'sys/kernel/osrelease', '4.14.138-rancher\n');
  await put(proc, 'sys/kernel/hostname', 'rancher\n');
  await put(
    proc,
    'cpuinfo',
    'processor\t: 0\nmodel name\t: Intel(R) Xeon(R) "Gold" 6130 \\ CPU\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) "Gold" 6130 \\ CPU\n',
  );
  await put(proc, 'meminfo', 'MemTotal:        2048000 kB\nMemFree:          100000 kB\n');
  await put(sys, 'class/dmi/id/product_uuid', 'AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE\n');
  await put(sys, 'class/dmi/id/sys_vendor', 'Ven"dor\\ Inc.\t(tab)\n');
  await put(sys, 'class/dmi/id/product_name', 'Prodüct \u0001ctl $(reboot) `x`\n');
  await put(sys, 'class/dmi/id/product_serial', 'SN-0001\n');
  for (const [name, mac, state, physical] of [
    ['lo', '00:00:00:00:00:00', 'unknown', false],
    ['eth0', '52:54:00:AB:CD:EF', 'up', true],
    ['docker0', '02:42:ac:11:00:01', 'down', false],
  ] as const) {
    await put(sys, `class/net/${name}/address`, `${mac}\n`);
    await put(sys, `class/net/${name}/operstate`, `${state}\n`);
    await put(sys, `class/net/${name}/mtu`, '1500\n');
    if (physical) await mkdir(path.join(sys, `class/net/${name}/device`), { recursive: true });
  }
  await put(sys, 'block/sda/size', '41943040\n');
  await put(sys, 'block/sda/device/model', 'QEMU HARDDISK   \n');
  await put(sys, 'block/sda/device/serial', 'QM00001\n');
  await put(sys, 'block/sda/queue/rotational', '1\n');
  await put(sys, 'block/loop0/size', '0\n');
  return { proc, sys, dev };
}

const MAC = '52:54:00:ab:cd:ef';

test('busybox sh with fake /proc and /sys: exact facts, escaped, posted with wget; unknown MAC registered', async (t) => {
  const app = await startApplianceHttp(t);
  // DHCP saw the machine at 127.0.0.1: the runtime record takes that address from its report.
  app.events.record({ type: 'dhcp-ack', mac: MAC, ip: '127.0.0.1' });
  const bb = await busyboxPath(t);
  const host = await fakeHost(t);
  const r = await run('busybox', ['sh', SCRIPT], {
    env: { PATH: bb, APPLIANCE_URL: app.url, HOST_PROC: host.proc, HOST_SYS: host.sys, HOST_DEV: host.dev, DISCOVER_TOOLS: 'none' },
    timeout: 60_000,
  });
  t.regex(r.stderr, new RegExp(`facts for ${MAC} posted`));
  // Registered in the state store, never in the operator's records.
  t.is(await app.store.getMachine(MAC), undefined);
  const m = app.state.get(MAC);
  t.is(m?.discovered, true);
  t.is(m?.lastIp, '127.0.0.1');
  t.deepEqual(await app.state.getFacts(MAC), {
    agent: { name: 'netboot-discover', version: '1', tools: 'none' },
    mac: MAC,
    hostname: 'rancher',
    uuid: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
    kernel: { release: '4.14.138-rancher', arch: (await run('uname', ['-m'])).stdout.trim() },
    dmi: { vendor: 'Ven"dor\\ Inc. (tab)', product: 'Prodüct ctl $(reboot) `x`', serial: 'SN-0001', boardVendor: null, board: null, biosVersion: null },
    cpu: { model: 'Intel(R) Xeon(R) "Gold" 6130 \\ CPU', count: 2 },
    memory: { totalKiB: 2048000 },
    nics: [
      { name: 'docker0', mac: '02:42:ac:11:00:01', state: 'down', mtu: 1500, physical: false, ipv4: [] },
      { name: 'eth0', mac: MAC, state: 'up', mtu: 1500, physical: true, ipv4: [] },
    ],
    disks: [{ name: 'sda', sizeBytes: 41943040 * 512, model: 'QEMU HARDDISK', serial: 'QM00001', rotational: true }],
  });
});

test('busybox sh against the real /proc and /sys (busybox ip, wget): plausible facts for an existing machine', async (t) => {
  const store = createMemoryStore(createDefaultDb());
  await store.putMachine({ mac: '52:54:00:00:00:42', hostname: 'keep-me', profile: 'rancheros', state: 'ready' });
  const app = await startApplianceHttp(t, { store });
  const bb = await busyboxPath(t);
  await run('busybox', ['sh', SCRIPT], {
    env: { PATH: bb, APPLIANCE_URL: app.url, MACHINE_MAC: '52:54:00:00:00:42', HOST_PROC: '/proc', HOST_SYS: '/sys', HOST_DEV: '/dev' },
    timeout: 60_000,
  });
  const m = await store.getMachine('52:54:00:00:00:42');
  t.like(m, { hostname: 'keep-me', profile: 'rancheros', state: 'ready' });
  t.is(app.state.get('52:54:00:00:00:42')?.discovered, false);
  const f = (await app.state.getFacts('52:54:00:00:00:42')) as any;
  t.is(f.mac, '52:54:00:00:00:42');
  t.is(f.kernel.release, release());
  t.is(f.cpu.count, cpus().length);
  t.true(Math.abs(f.memory.totalKiB - totalmem() / 1024) < 1024);
  const sysNics = (await readdir('/sys/class/net')).filter((n) => n !== 'lo').sort();
  t.deepEqual(f.nics.map((n: { name: string }) => n.name).sort(), sysNics);
  for (const n of f.nics) t.true(n.mac === null || /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(n.mac), JSON.stringify(n));
  for (const d of f.disks) t.true(Number.isInteger(d.sizeBytes), JSON.stringify(d));
});

test('host tools (lscpu, lsblk, ip, curl) against the real system: posted and valid', async (t) => {
  const app = await startApplianceHttp(t);
  // Not in a container: /host-proc does not exist here, so the defaults must be /proc, /sys.
  const r = await run('sh', [SCRIPT], { env: { PATH: HOST_PATH, APPLIANCE_URL: app.url, MACHINE_MAC: MAC }, timeout: 60_000 });
  t.regex(r.stderr, /posted/);
  const f = (await app.state.getFacts(MAC)) as any;
  t.is(f.agent.tools, 'auto');
  t.is(f.cpu.count, cpus().length);
  t.is(f.kernel.release, release());
  t.true(typeof f.cpu.model === 'string' && f.cpu.model.length > 0);
});

test('--print, usage errors and an unreachable appliance', async (t) => {
  const bb = await busyboxPath(t);
  const host = await fakeHost(t);
  const env = { PATH: bb, HOST_PROC: host.proc, HOST_SYS: host.sys, HOST_DEV: host.dev, DISCOVER_TOOLS: 'none' };
  const printed = await run('busybox', ['sh', SCRIPT, '--print'], { env });
  t.is(JSON.parse(printed.stdout).memory.totalKiB, 2048000);
  const noUrl = await t.throwsAsync(run('busybox', ['sh', SCRIPT], { env }));
  t.is((noUrl as { code?: number }).code, 2);
  t.regex((noUrl as { stderr?: string }).stderr ?? '', /APPLIANCE_URL is not set/);
  const badArg = await t.throwsAsync(run('busybox', ['sh', SCRIPT, '--nope'], { env }));
  t.is((badArg as { code?: number }).code, 2);
  // A port nothing listens on (bound then closed): bounded retries, then exit 1.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const unreachable = await t.throwsAsync(
    run('busybox', ['sh', SCRIPT], {
      env: { ...env, APPLIANCE_URL: `http://127.0.0.1:${port}`, DISCOVER_ATTEMPTS: '2', DISCOVER_RETRY_SECONDS: '0' },
      timeout: 60_000,
    }),
  );
  t.is((unreachable as { code?: number }).code, 1);
  t.regex((unreachable as { stderr?: string }).stderr ?? '', /after 2 attempts/);
});
