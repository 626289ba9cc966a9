/**
 * Real firmware against our TFTP server, inside a network namespace this test creates and
 * deletes: OVMF's EDK2 PXE (tsize probe, ERROR 8, re-request with windowsize 4) fetching
 * snponly.efi, and SeaBIOS's iPXE option ROM fetching undionly.kpxe. dnsmasq only hands out
 * the address and boot file name (DHCP, `--port=0`: no DNS, no TFTP). Needs root, qemu, ovmf,
 * ipxe and dnsmasq-base; it fails (never skips) without them.
 */
import test from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildQemuArgs, OVMF_VARS, QEMU_BINARY } from '../../src/lab/qemu.js';
import type { LogLine } from './helpers.js';

const SERVER_SCRIPT = fileURLToPath(new URL('./netns-server.ts', import.meta.url));
const PROJECT = fileURLToPath(new URL('../..', import.meta.url));

interface Lab {
  ns: string;
  dir: string;
  children: ChildProcess[];
  logs: LogLine[];
  console: string[];
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe', timeout: 10_000 });
}

function createLab(bootFile: string): Lab {
  const ns = `tftpfw-${randomBytes(4).toString('hex')}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tftp-fw-'));
  const lab: Lab = { ns, dir, children: [], logs: [], console: [] };
  ip('netns', 'add', ns);
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  ip('-n', ns, 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap');
  ip('-n', ns, 'addr', 'add', '10.77.0.1/24', 'dev', 'tap0');
  ip('-n', ns, 'link', 'set', 'tap0', 'up');
  const dnsmasq = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      'dnsmasq',
      '--no-daemon',
      '--conf-file=/dev/null',
      '--port=0',
      '--interface=tap0',
      '--bind-interfaces',
      '--dhcp-range=10.77.0.100,10.77.0.150,1h',
      `--dhcp-boot=${bootFile},,10.77.0.1`,
      '--leasefile-ro',
      `--pid-file=${path.join(dir, 'dnsmasq.pid')}`,
    ],
    { stdio: 'ignore' },
  );
  lab.children.push(dnsmasq);
  const server = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import=tsx', SERVER_SCRIPT, path.join(dir, 'empty-root')], {
    cwd: PROJECT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  lab.children.push(server);
  let pending = '';
  server.stdout!.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) lab.logs.push(JSON.parse(line) as LogLine);
  });
  return lab;
}

function destroyLab(lab: Lab): void {
  for (const child of lab.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  try {
    ip('netns', 'del', lab.ns);
  } catch {
    // already gone
  }
  rmSync(lab.dir, { recursive: true, force: true });
}

async function waitForLog(lab: Lab, predicate: (l: LogLine) => boolean, ms: number): Promise<LogLine | undefined> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const hit = lab.logs.find(predicate);
    if (hit) return hit;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return undefined;
}

function startVm(lab: Lab, firmware: 'bios' | 'uefi'): void {
  // The lab's own QEMU command line (src/lab/qemu.ts): UEFI is EDK2's own PXE, not an iPXE ROM.
  const varsPath = path.join(lab.dir, 'OVMF_VARS.fd');
  if (firmware === 'uefi') copyFileSync(OVMF_VARS, varsPath);
  const args = buildQemuArgs({ firmware, tap: 'tap0', mac: '52:54:00:77:00:01', memoryMiB: 512, varsPath });
  const vm = spawn('ip', ['netns', 'exec', lab.ns, QEMU_BINARY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  vm.stdout!.on('data', (chunk: Buffer) => lab.console.push(chunk.toString('latin1')));
  lab.children.push(vm);
}

test.serial('OVMF (EDK2 PXE): tsize probe + ERROR 8, then snponly.efi with blksize 1468 and windowsize 4', async (t) => {
  const lab = createLab('snponly.efi');
  t.teardown(() => destroyLab(lab));
  t.truthy(await waitForLog(lab, (l) => l.msg === 'tftp listening', 30_000), 'server listening in the namespace');
  startVm(lab, 'uefi');
  const done = await waitForLog(lab, (l) => l.msg === 'tftp transfer complete', 90_000);
  t.truthy(done, `no transfer completed; console: ${lab.console.join('').slice(-500)}`);
  t.like(done, { file: 'snponly.efi', bytes: statSync('/usr/lib/ipxe/snponly.efi').size, blksize: 1468, windowsize: 4, source: '/usr/lib/ipxe' });
  t.true(lab.logs.some((l) => l.msg === 'tftp client ended option negotiation (size probe)' && l.level === 20));
  t.deepEqual(
    lab.logs.filter((l) => l.level >= 40),
    [],
  );
});

test.serial('SeaBIOS + iPXE ROM: undionly.kpxe', async (t) => {
  const lab = createLab('undionly.kpxe');
  t.teardown(() => destroyLab(lab));
  t.truthy(await waitForLog(lab, (l) => l.msg === 'tftp listening', 30_000), 'server listening in the namespace');
  startVm(lab, 'bios');
  const done = await waitForLog(lab, (l) => l.msg === 'tftp transfer complete', 90_000);
  t.truthy(done, `no transfer completed; console: ${lab.console.join('').slice(-500)}`);
  t.like(done, { file: 'undionly.kpxe', bytes: statSync('/usr/lib/ipxe/undionly.kpxe').size, source: '/usr/lib/ipxe' });
  t.deepEqual(
    lab.logs.filter((l) => l.level >= 40),
    [],
  );
});
