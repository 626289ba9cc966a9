/**
 * contrib/systemd/ under a live systemd: a Debian 12 VM (root filesystem from mmdebstrap with
 * systemd as PID 1, the Debian cloud kernel and initrd the lab boots, TCG) gets this checkout and
 * the host's node binary copied in. Inside, test/e2e/systemd-check.sh runs scripts/install-systemd
 * --interface eth0 and starts netboot-appliance-iface.socket and .service; from the host side of
 * the VM's tap (a network namespace this test makes) a PXE DISCOVER to 67 and EDK2's request to
 * 4011 must be answered through the sockets systemd opened (BindToDevice=eth0). The service must run
 * as netboot-appliance with CAP_NET_BIND_SERVICE only, `systemctl reload` must reach it as
 * SIGHUP without a restart, and after `kill -9` Restart=on-failure must bring it back on the same
 * sockets (a second DISCOVER answered by the new process).
 *
 * The root filesystem is cached in /var/cache/netboot-appliance/systemd-vm/ by its inputs (the
 * first run downloads ~40 MB from the Debian mirror); everything else is rebuilt per run.
 */
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { findTestKernel } from '../../src/lab/initrd.js';
import { QEMU_BINARY } from '../../src/lab/qemu.js';
import { answered, buildDisk, MAC1, MAC2, request, run, VM_ADDRESS } from './systemd-vm.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const HOST_ADDRESS = '10.98.211.1';

test('the units under a live systemd: socket-activated 67 and 4011 answer, unprivileged with CAP_NET_BIND_SERVICE, reload is SIGHUP, kill -9 restarts on the same sockets', async (t) => {
  t.timeout(20 * 60_000);
  for (const tool of ['mmdebstrap', 'mkfs.ext4', QEMU_BINARY, 'ip', 'unshare']) {
    // Missing packages fail loudly (scripts/install installs them), never skip.
    t.is(spawnSync('sh', ['-c', `command -v ${tool}`]).status, 0, `${tool} is not installed (scripts/install)`);
  }
  const kernel = findTestKernel();
  const initrd = `/boot/initrd.img-${kernel.version}`;
  t.true(existsSync(initrd), `${initrd} is missing (linux-image-cloud-amd64)`);
  t.true(existsSync(join(ROOT, 'dist/src/cli.js')), 'dist/ is not built (npm ci builds it)');

  const work = mkdtempSync(join(tmpdir(), 'systemd-vm-'));
  const ns = `sdvm-${randomBytes(3).toString('hex')}`;
  let qemu: ChildProcess | undefined;
  t.teardown(() => {
    qemu?.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(work, { recursive: true, force: true });
  });
  const started = Date.now();
  const disk = buildDisk(work, kernel.version);
  t.log(`disk built in ${Math.round((Date.now() - started) / 1000)} s`);

  run('ip', ['netns', 'add', ns]);
  run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  run('ip', ['-n', ns, 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap']);
  run('ip', ['-n', ns, 'addr', 'add', `${HOST_ADDRESS}/24`, 'dev', 'tap0']);
  run('ip', ['-n', ns, 'link', 'set', 'tap0', 'up']);
  // A device route lets the 0.0.0.0 client broadcast out of the tap.
  run('ip', ['-n', ns, 'route', 'add', 'default', 'dev', 'tap0']);

  let serial = '';
  qemu = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      QEMU_BINARY,
      '-accel',
      'tcg', // KVM guests hang on this host (docs/NETBOOT-FACTS.md section 5)
      '-m',
      '1024',
      '-smp',
      '1',
      '-nodefaults',
      '-display',
      'none',
      '-serial',
      'stdio',
      '-no-reboot',
      '-kernel',
      kernel.path,
      '-initrd',
      initrd,
      '-append',
      'console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 init=/lib/systemd/systemd systemd.show_status=false systemd.firstboot=off',
      '-drive',
      `file=${disk},format=raw,if=virtio,cache=unsafe`,
      '-netdev',
      'tap,id=n0,ifname=tap0,script=no,downscript=no',
      '-device',
      'virtio-net-pci,netdev=n0,mac=52:54:00:5d:00:02',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((r) => qemu!.on('exit', (code) => r(code)));
  qemu.stdout!.on('data', (d: Buffer) => (serial += d.toString('latin1')));
  qemu.stderr!.on('data', (d: Buffer) => (serial += d.toString('latin1')));
  const marker = async (name: string, ms: number): Promise<string> => {
    const re = new RegExp(`=== SDVM (${name}[^\\n]*?) ===`);
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(serial);
      if (m) return m[1]!;
      const failed = /=== SDVM (FAIL[^\n]*) ===/.exec(serial);
      if (failed || Date.now() > deadline) throw new Error(`${failed ? failed[1] : `no SDVM ${name} within ${ms / 1000} s`}; console:\n${serial.slice(-6000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  const ready = await marker('READY', 8 * 60_000);
  t.log(`service ready ${Math.round((Date.now() - started) / 1000)} s after the start: ${ready}`);
  const sockets = await marker('SOCKETS', 1000);
  // systemd (PID 1) holds both sockets and passed them to node (fd 3 and 4).
  for (const port of [67, 4011]) {
    const line = sockets.split(';').find((l) => l.includes(`0.0.0.0%eth0:${port} `));
    t.truthy(line, `no socket bound to eth0 on ${port}: ${sockets}`);
    t.regex(line ?? '', /\("systemd",pid=1,fd=\d+\)/, `systemd does not hold ${port}`);
    t.regex(line ?? '', /\("node",pid=\d+,fd=\d+\)/, `node was not handed ${port}`);
  }
  t.regex(ready, /user=netboot-appliance /);
  // CAP_NET_BIND_SERVICE (bit 10) and nothing else, in every set; no new privileges.
  t.regex(ready, /CapEff=0000000000000400 /);
  t.regex(ready, /CapPrm=0000000000000400 /);
  t.regex(ready, /CapBnd=0000000000000400 /);
  t.regex(ready, /CapAmb=0000000000000400 /);
  t.regex(ready, /NoNewPrivs=1/);

  const offer = answered(ns, ['0.0.0.0', 68], '255.255.255.255', 67, request('edk2-ovmf-x64-discover.bin', MAC1), 2);
  t.truthy(offer, `no ProxyDHCP offer on 67 through the socket unit; console:\n${serial.slice(-3000)}`);
  // EDK2 sends its boot-server request from 4011 to 4011, with its address in ciaddr; the ACK names
  // the boot file (tftpboot/snponly.efi). The VM's check waits for this answer before it reloads
  // and kills the service (systemd-check.sh).
  const ack = answered(ns, [HOST_ADDRESS, 4011], VM_ADDRESS, 4011, request('edk2-ovmf-x64-request-4011.bin', MAC1, HOST_ADDRESS), 5);
  t.truthy(ack, `no ack on 4011 through the socket unit; console:\n${serial.slice(-3000)}`);
  t.is(ack?.file, 'snponly.efi', 'the 4011 ack names the boot file');

  const pid = /pid=(\d+)/.exec(ready)![1];
  t.is(await marker('RELOADED', 3 * 60_000), `RELOADED pid=${pid}`, 'systemctl reload is SIGHUP: same process');
  const restarted = await marker('RESTARTED', 6 * 60_000);
  t.log(restarted);
  t.regex(restarted, new RegExp(`^RESTARTED old=${pid} new=(?!${pid} )\\d+ restarts=1 state=active user=netboot-appliance .*CapEff=0000000000000400`));
  t.truthy(
    answered(ns, ['0.0.0.0', 68], '255.255.255.255', 67, request('edk2-ovmf-x64-discover.bin', MAC2), 2),
    'the restarted service does not answer on the socket-activated 67',
  );

  await marker('DONE', 5 * 60_000);
  const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 120_000).unref())]);
  t.is(code, 0, 'the VM powered off');
  t.log(
    // systemd's lines and the DHCP answers: the settings line alone is 2 KB and would hide them.
    `whole run ${Math.round((Date.now() - started) / 1000)} s; the service's journal, as the VM printed it:\n${serial
      .slice(serial.lastIndexOf('=== SDVM RESTARTED'))
      .split('\n')
      .filter((l) => !l.startsWith('{') || l.includes('"subsystem":"dhcp"') || l.includes('"level":50') || l.includes('"level":60'))
      .join('\n')
      .slice(0, 8000)}`,
  );
});
