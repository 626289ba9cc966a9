/**
 * The lab machinery without VMs: the initrd is a real newc archive, the topology is built
 * only inside fresh namespaces, and teardown leaves nothing behind, also after a crash.
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { gunzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { buildQemuArgs, startVm } from '../../src/lab/qemu.js';
import { buildTestInitrd, encodeCpioNewc, VIRTIO_NET_MODULES } from '../../src/lab/initrd.js';
import { createLab, reapStaleLabs } from '../../src/lab/netns.js';
import { assertLabPrerequisites, checkLabPrerequisites } from '../../src/lab/prereqs.js';
import { renderBootScript } from '../../src/lab/baseline.js';
import { startProcessBootServer } from '../../src/lab/process-server.js';
import { spawnManaged } from '../../src/lab/process.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test.before(() => {
  assertLabPrerequisites('both');
});

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}

/** True when `pid` runs; a zombie (killed, not yet reaped by its new parent) counts as dead. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

test('encodeCpioNewc output is read back by GNU cpio, device node and symlink included', (t) => {
  const archive = encodeCpioNewc([
    { name: 'dev', mode: 0o040755 },
    { name: 'dev/console', mode: 0o020600, rdevMajor: 5, rdevMinor: 1 },
    { name: 'bin/sh', mode: 0o120777, data: Buffer.from('busybox') },
    { name: 'init', mode: 0o100755, data: Buffer.from('#!/bin/sh\necho hi\n') },
  ]);
  t.is(archive.length % 4, 0);
  const listing = execFileSync('cpio', ['-itv', '--quiet'], { input: archive, encoding: 'utf8' });
  t.regex(listing, /^crw------- .* 5,\s+1 .* dev\/console$/m);
  t.regex(listing, /^lrwxrwxrwx .* bin\/sh -> busybox$/m);
  t.regex(listing, /^-rwxr-xr-x .* 18 .* init$/m);
});

test('the test initrd holds busybox, /init, the udhcpc script and every virtio-net module, uncompressed', (t) => {
  const initrd = buildTestInitrd();
  const listing = execFileSync('cpio', ['-it', '--quiet'], { input: gunzipSync(readFileSync(initrd.path)), encoding: 'utf8' }).split('\n');
  for (const f of [
    'init',
    'bin/busybox',
    'etc/udhcpc.script',
    'usr/bin/netboot-discover',
    'dev/console',
    ...VIRTIO_NET_MODULES.map((m) => `lib/modules/${m}.ko`),
  ]) {
    t.true(listing.includes(f), `${f} missing from the initrd`);
  }
  // Cached: the second build returns the same file without rebuilding it.
  t.deepEqual(buildTestInitrd(), { ...initrd, cached: true });
});

test('qemu args: UEFI disables the NIC option ROM so EDK2 PXE runs; BIOS keeps the iPXE ROM', (t) => {
  const bios = buildQemuArgs({ firmware: 'bios', tap: 'tap0', mac: '52:54:00:00:00:01', memoryMiB: 512 });
  const uefi = buildQemuArgs({
    firmware: 'uefi',
    tap: 'tap0',
    mac: '52:54:00:00:00:01',
    memoryMiB: 512,
    uuid: '8f9a2b3c-0000-4000-8000-000000000001',
    varsPath: '/tmp/v.fd',
  });
  t.true(bios.includes('tcg'));
  t.false(bios.some((a) => a.includes('pflash') || a.includes('romfile=')));
  t.true(uefi.some((a) => a.startsWith('virtio-net-pci,') && a.endsWith(',romfile=')));
  t.true(uefi.some((a) => a.includes('if=pflash') && a.includes('readonly=on')));
  t.deepEqual(uefi.slice(uefi.indexOf('-uuid'), uefi.indexOf('-uuid') + 2), ['-uuid', '8f9a2b3c-0000-4000-8000-000000000001']);
});

test('boot script passes initrd=NAME and the datasource URL (UEFI EFI-stub needs initrd=)', (t) => {
  const s = renderBootScript({ baseUrl: 'http://10.99.1.1:8080', cloudConfigUrl: 'http://10.99.1.1:8080/cloud-config' });
  t.regex(s, /^#!ipxe\n/);
  t.regex(
    s,
    /^kernel http:\/\/10\.99\.1\.1:8080\/vmlinuz initrd=initrd\.img rancher\.cloud_init\.datasources=\[url:http:\/\/10\.99\.1\.1:8080\/cloud-config\] console=ttyS0/m,
  );
  t.regex(s, /^initrd --name initrd\.img http:\/\/10\.99\.1\.1:8080\/initrd\.img$/m);
});

test('createLab builds the topology inside its namespaces and destroy removes all of it', async (t) => {
  const lab = await createLab();
  t.teardown(() => lab.destroy());
  t.regex(lab.netns, /^lab-[0-9a-f]{6}$/);
  t.true(namespaces().includes(lab.netns) && namespaces().includes(lab.upstreamNetns));
  const tap = await lab.addTap();
  const links = (await lab.exec('ip', ['-br', 'link'])).stdout;
  t.regex(links, new RegExp(`^${tap}\\s`, 'm'));
  t.regex((await lab.exec('ip', ['-br', 'addr', 'show', 'br0'])).stdout, new RegExp(`${lab.serverAddress.replace(/\./g, '\\.')}/24`));
  // The host namespace got no lab interface.
  t.notRegex(execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' }), new RegExp(`^(${tap}|br0|vup|vdhcp)[@\\s]`, 'm'));
  // The upstream DHCP server is reachable across the bridge (traffic stays in the lab).
  await t.notThrowsAsync(lab.exec('busybox', ['ping', '-c', '1', '-W', '3', lab.upstreamAddress]));
  const sleeper = lab.spawn('sleep', ['600']);
  await lab.destroy();
  await sleeper.exited;
  t.false(alive(sleeper.pid));
  t.false(namespaces().includes(lab.netns));
  t.false(namespaces().includes(lab.upstreamNetns));
});

test('a lab whose owner was SIGKILLed is reaped by the next createLab/reapStaleLabs', async (t) => {
  // A child process creates a lab and then dies without any chance to clean up.
  const script = `
    import { createLab } from ${JSON.stringify(new URL('../../src/lab/netns.ts', import.meta.url).href)};
    const lab = await createLab();
    const p = lab.spawn('sleep', ['600']);
    process.stdout.write(JSON.stringify({ netns: lab.netns, upstream: lab.upstreamNetns, pid: p.pid }) + '\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('child did not report its lab within 30 s')), 30_000);
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      if (buf.includes('\n')) {
        clearTimeout(timer);
        resolve(buf.split('\n')[0] ?? '');
      }
    });
  });
  const info = JSON.parse(line) as { netns: string; upstream: string; pid: number };
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  // SIGKILL runs no exit hook: only the reaper can remove the lab (a parallel test file's
  // createLab may reap it first, so who reaped it is not asserted).
  await reapStaleLabs();
  t.false(namespaces().includes(info.netns));
  t.false(namespaces().includes(info.upstream));
  // The process inside the namespace was killed with it.
  await new Promise((r) => setTimeout(r, 200));
  t.false(alive(info.pid));
});

test('startProcessBootServer resolves once the program serves inside the lab, and reports one that dies', async (t) => {
  const lab = await createLab({ upstreamDhcp: false });
  t.teardown(() => lab.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'lab-www-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'boot.ipxe'), '#!ipxe\n');
  const url = `http://${lab.serverAddress}:8080/boot.ipxe`;
  const server = await startProcessBootServer(lab, {
    name: 'static',
    cmd: 'busybox',
    args: ['httpd', '-f', '-vv', '-p', `${lab.serverAddress}:8080`, '-h', dir],
    readyUrl: url,
  });
  t.is((await lab.exec('busybox', ['wget', '-q', '-O', '-', url])).stdout, '#!ipxe\n');
  await server.stop();
  await t.throwsAsync(lab.exec('busybox', ['wget', '-q', '-O', '-', url]), { code: 'ERR_LAB_COMMAND' });
  await t.throwsAsync(startProcessBootServer(lab, { name: 'broken', cmd: 'sh', args: ['-c', 'echo cannot bind port 67 >&2; exit 3'], readyUrl: url }), {
    code: 'ERR_LAB_SERVER',
    message: /cannot bind port 67/,
  });
});

test('missing programs are named with the Debian package that provides them', (t) => {
  // Synchronous, so no other test of this file runs while PATH is emptied.
  const saved = process.env.PATH;
  process.env.PATH = '/nonexistent';
  let missing: ReturnType<typeof checkLabPrerequisites>;
  try {
    missing = checkLabPrerequisites('bios');
    t.throws(() => assertLabPrerequisites('uefi'), { code: 'ERR_LAB_PREREQ', message: /qemu-system-x86_64 \(apt-get install qemu-system-x86\)/ });
  } finally {
    process.env.PATH = saved;
  }
  t.deepEqual(missing.map((m) => m.fix).sort(), ['apt-get install dnsmasq-base', 'apt-get install iproute2', 'apt-get install qemu-system-x86']);
  t.deepEqual(checkLabPrerequisites('both'), []);
});

test('a program that cannot be started is a coded error, not an uncaught event', async (t) => {
  t.throws(() => spawnManaged('/nonexistent/program', []), { code: 'ERR_LAB_SPAWN' });
  // The child's asynchronous 'error' event must not crash the worker afterwards.
  await new Promise((r) => setTimeout(r, 200));
  t.pass();
});

test('attachInterface puts an outside interface on the lab bridge (a bare-metal NIC stand-in)', async (t) => {
  const lab = await createLab({ upstreamDhcp: false });
  t.teardown(() => lab.destroy());
  // The "outside" is a namespace this test creates, never the host's own.
  const outside = `fakehost-${lab.id}`;
  execFileSync('ip', ['netns', 'add', outside]);
  t.teardown(() => execFileSync('ip', ['netns', 'del', outside]));
  execFileSync('ip', ['-n', outside, 'link', 'add', 'nic0', 'type', 'veth', 'peer', 'name', 'metal0']);
  execFileSync('ip', ['-n', outside, 'addr', 'add', `${lab.network.replace(/\.0$/, '.50')}/24`, 'dev', 'metal0']);
  execFileSync('ip', ['-n', outside, 'link', 'set', 'metal0', 'up']);
  await lab.attachInterface('nic0', { fromNetns: outside });
  t.regex((await lab.exec('ip', ['-br', 'link', 'show', 'master', 'br0'])).stdout, /^nic0@/m);
  // The "machine" behind it reaches the boot server's address across the bridge.
  t.notThrows(() => execFileSync('ip', ['netns', 'exec', outside, 'busybox', 'ping', '-c', '1', '-W', '3', lab.serverAddress]));
  await t.throwsAsync(lab.attachInterface('bad name;'), { code: 'ERR_LAB_CONFIG' });
});

test('startVm refuses a bad mac, uuid or name with a coded error before starting anything', async (t) => {
  const lab = await createLab({ upstreamDhcp: false });
  t.teardown(() => lab.destroy());
  await t.throwsAsync(startVm(lab, { firmware: 'bios', mac: '52:54:00:zz:00:01' }), { code: 'ERR_LAB_CONFIG', message: /mac/ });
  await t.throwsAsync(startVm(lab, { firmware: 'uefi', uuid: 'not-a-uuid,id=x' }), { code: 'ERR_LAB_CONFIG', message: /uuid/ });
  await t.throwsAsync(startVm(lab, { firmware: 'bios', name: '../escape' }), { code: 'ERR_LAB_CONFIG', message: /name/ });
  // No tap was created for any of them.
  t.notRegex((await lab.exec('ip', ['-br', 'link'])).stdout, /^tap/m);
});
