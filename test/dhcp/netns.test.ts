/**
 * Two-interface proof, in network namespaces this test creates and deletes (needs root and
 * iproute2). Topology:
 *
 *   netns CLA (a1, no address)  ---veth---  a0 10.99.0.1/24  [netns SRV]  b0 10.98.0.1/24  ---veth---  netns CLB (b1)
 *
 * SRV's default route points out of b0, so a limited broadcast sent from a 0.0.0.0 socket would
 * leave by B (measured). The server runs with --address 10.99.0.1 on the real ports 67/4011
 * through src/dhcp/run.ts, as the VM lab will run it.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodePacket, encodePacket } from '../../src/dhcp/packet.js';
import { fixture } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

interface ClientResult {
  sendError?: string;
  received: Array<{ from: string; fromPort: number; xid?: number; type?: number; file?: string; siaddr?: string; error?: string }>;
}

/** Run netns-client.ts inside `ns`; resolves with its JSON report. */
function runClient(ns: string, args: string[]): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', path.join(ROOT, 'test/dhcp/netns-client.ts'), ...args], { cwd: ROOT });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as ClientResult);
      } catch {
        reject(new Error(`client in ${ns} exited ${code}: ${err.slice(0, 500)} ${out.slice(0, 500)}`));
      }
    });
  });
}

function hexWithXid(name: string, xid: number, ciaddr?: string): string {
  const p = decodePacket(fixture(name));
  return encodePacket({ ...p, xid, ...(ciaddr !== undefined ? { ciaddr } : {}) }).toString('hex');
}

interface Lab {
  SRV: string;
  CLA: string;
  CLB: string;
  logs: Array<Record<string, unknown>>;
  ready: Record<string, unknown>;
  server: ChildProcess;
}

/**
 * Build the topology (deleted in teardown, also on failure) and start src/dhcp/run.ts in SRV,
 * optionally through a wrapper command (e.g. perl opening device-bound sockets).
 */
async function startLab(t: ExecutionContext, wrap?: (runArgs: string[]) => string[], command?: string[]): Promise<Lab> {
  t.is(process.getuid?.(), 0, 'namespace tests need root (ip netns)');
  const suffix = randomBytes(3).toString('hex');
  const SRV = `nbsrv${suffix}`;
  const CLA = `nbcla${suffix}`;
  const CLB = `nbclb${suffix}`;
  let server: ChildProcess | undefined;
  t.teardown(() => {
    server?.kill('SIGKILL');
    for (const ns of [SRV, CLA, CLB]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // not created (or already gone)
      }
    }
  });
  for (const ns of [SRV, CLA, CLB]) ip('netns', 'add', ns);
  ip('link', 'add', 'a0', 'netns', SRV, 'type', 'veth', 'peer', 'name', 'a1', 'netns', CLA);
  ip('link', 'add', 'b0', 'netns', SRV, 'type', 'veth', 'peer', 'name', 'b1', 'netns', CLB);
  ip('-n', SRV, 'link', 'set', 'lo', 'up');
  ip('-n', SRV, 'addr', 'add', '10.99.0.1/24', 'dev', 'a0');
  ip('-n', SRV, 'addr', 'add', '10.98.0.1/24', 'dev', 'b0');
  ip('-n', SRV, 'link', 'set', 'a0', 'up');
  ip('-n', SRV, 'link', 'set', 'b0', 'up');
  // The trap: the default route leaves by the unconfigured interface B.
  ip('-n', SRV, 'route', 'add', 'default', 'via', '10.98.0.2');
  for (const [ns, dev] of [
    [CLA, 'a1'],
    [CLB, 'b1'],
  ] as const) {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', dev, 'up');
    // Clients start without an address, like firmware; a device route lets them broadcast.
    ip('-n', ns, 'route', 'add', 'default', 'dev', dev);
  }

  const logs: Array<Record<string, unknown>> = [];
  const runArgs = command ?? [
    process.execPath,
    '--import',
    'tsx',
    path.join(ROOT, 'src/dhcp/run.ts'),
    '--address',
    '10.99.0.1',
    '--http-port',
    '8080',
    '--log-level',
    'debug',
  ];
  server = spawn('ip', ['netns', 'exec', SRV, ...(wrap ? wrap(runArgs) : runArgs)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const child = server;
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry['msg'] === 'proxydhcp listening') resolve(entry);
        } catch {
          // not a log line
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited ${code}: ${stderr.slice(0, 800)}`)));
    setTimeout(() => reject(new Error(`server not listening after 60 s: ${stderr.slice(0, 800)}`)), 60_000);
  });
  return { SRV, CLA, CLB, logs, ready, server: child };
}

async function stopLab(t: ExecutionContext, lab: Lab): Promise<void> {
  const exited = new Promise((resolve) => lab.server.once('exit', resolve));
  lab.server.kill('SIGTERM');
  await exited;
  t.truthy(
    lab.logs.find((l) => l['msg'] === 'dhcp stopped'),
    'SIGTERM stops the server cleanly',
  );
}

test.serial('two interfaces: a client on the configured subnet is answered through it; a client on the other interface gets nothing', async (t) => {
  const lab = await startLab(t);
  const { CLA, CLB, logs } = lab;
  t.like(lab.ready, { dhcpPort: 67, proxyPort: 4011, interface: 'a0', subnet: '10.99.0.0/24' });

  // Phase 1: both clients broadcast a DISCOVER from 0.0.0.0:68 at the same time.
  const xidA = 0x0a0a0a0a;
  const xidB = 0x0b0b0b0b;
  const [a, b] = await Promise.all([
    runClient(CLA, ['0.0.0.0', '68', '255.255.255.255', '67', '2500', hexWithXid('edk2-ovmf-x64-discover', xidA)]),
    runClient(CLB, ['0.0.0.0', '68', '255.255.255.255', '67', '2500', hexWithXid('edk2-ovmf-x64-discover', xidB)]),
  ]);
  t.is(a.sendError, undefined);
  t.is(b.sendError, undefined);
  const offerA = a.received.find((r) => r.xid === xidA);
  t.truthy(offerA, `client A got its offer: ${JSON.stringify(a.received)}`);
  t.like(offerA, { from: '10.99.0.1', fromPort: 67, type: 2, siaddr: '10.99.0.1' });
  t.deepEqual(b.received, [], 'nothing at all reaches the interface that is not configured');
  // A broadcast DISCOVER from 0.0.0.0 cannot be placed by a 0.0.0.0 socket (no IP_PKTINFO), so
  // B's DISCOVER is answered too; that reply leaves by A (where no client has that xid), never
  // by B, although the default route points there.
  t.true(
    a.received.every((r) => r.from === '10.99.0.1'),
    'every reply seen on A came from the configured address',
  );
  t.truthy(
    logs.find((l) => String(l['msg']).startsWith('proxydhcp offer') && l['xid'] === xidB),
    'documented limitation: B discover was answered (through A)',
  );

  // Phase 2: clients with addresses talk to 4011 by unicast.
  ip('-n', CLA, 'addr', 'add', '10.99.0.2/24', 'dev', 'a1');
  ip('-n', CLB, 'addr', 'add', '10.98.0.2/24', 'dev', 'b1');
  const [a2, b2] = await Promise.all([
    // EDK2 sends its boot-server request from 4011 to 4011.
    runClient(CLA, ['10.99.0.2', '4011', '10.99.0.1', '4011', '2000', hexWithXid('edk2-ovmf-x64-request-4011', 0x0a0a0a0b, '10.99.0.2')]),
    // A client on B asks our B address directly: refused, it is not our network.
    runClient(CLB, ['10.98.0.2', '4011', '10.98.0.1', '4011', '2000', hexWithXid('edk2-ovmf-x64-request-4011', 0x0b0b0b0c, '10.98.0.2')]),
  ]);
  const ack = a2.received.find((r) => r.xid === 0x0a0a0a0b);
  t.like(ack, { from: '10.99.0.1', fromPort: 4011, type: 5, file: 'snponly.efi' });
  t.deepEqual(b2.received, []);
  t.truthy(
    logs.find((l) => l['xid'] === 0x0b0b0b0c && /(ciaddr|source) 10.98.0.2 is outside 10.99.0.0\/24/.test(String(l['reason']))),
    'B request refused by admission',
  );
  t.truthy(logs.find((l) => l['msg'] === 'proxydhcp ack' && l['xid'] === 0x0a0a0a0b && l['mac'] === '52:54:00:12:34:63'));
  await stopLab(t, lab);
});

/**
 * perl-base (Essential in Debian) opens 0.0.0.0:67 and 0.0.0.0:4011 with SO_BINDTODEVICE a0
 * and execs the server with them as fds 3 and 4: what a systemd .socket unit with
 * BindToDevice= does.
 */
const PERL_BIND_DEVICE = `
use Socket; use Fcntl;
my @fds;
for my $port (67, 4011) {
  socket(my $s, PF_INET, SOCK_DGRAM, 0) or die "socket: $!";
  setsockopt($s, SOL_SOCKET, Socket::SO_BINDTODEVICE(), "a0") or die "bindtodevice: $!";
  setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die;
  setsockopt($s, SOL_SOCKET, SO_BROADCAST, 1) or die;
  bind($s, sockaddr_in($port, INADDR_ANY)) or die "bind $port: $!";
  fcntl($s, F_SETFD, 0) or die;
  push @fds, $s;
}
exec @ARGV, "--dhcp-fd", fileno($fds[0]), "--proxy-fd", fileno($fds[1]) or die "exec: $!";
`;

test.serial('strict mode: sockets bound to the interface (SO_BINDTODEVICE descriptors) do not even hear the other interface', async (t) => {
  const lab = await startLab(t, (runArgs) => ['perl', '-e', PERL_BIND_DEVICE, ...runArgs]);
  const { CLA, CLB, logs } = lab;
  t.like(lab.ready, { dhcpPort: 67, proxyPort: 4011, subnet: '10.99.0.0/24' });
  const xidA = 0x1a1a1a1a;
  const xidB = 0x1b1b1b1b;
  const [a, b] = await Promise.all([
    runClient(CLA, ['0.0.0.0', '68', '255.255.255.255', '67', '2500', hexWithXid('edk2-ovmf-x64-discover', xidA)]),
    runClient(CLB, ['0.0.0.0', '68', '255.255.255.255', '67', '2500', hexWithXid('edk2-ovmf-x64-discover', xidB)]),
  ]);
  t.like(
    a.received.find((r) => r.xid === xidA),
    { from: '10.99.0.1', fromPort: 67, type: 2 },
  );
  t.deepEqual(b.received, []);
  t.false(
    a.received.some((r) => r.xid === xidB),
    'no reply for B anywhere',
  );
  t.false(
    logs.some((l) => l['xid'] === xidB),
    'B discover never reached the server',
  );
  ip('-n', CLA, 'addr', 'add', '10.99.0.2/24', 'dev', 'a1');
  const a2 = await runClient(CLA, ['10.99.0.2', '4011', '10.99.0.1', '4011', '2000', hexWithXid('edk2-ovmf-x64-request-4011', 0x1a1a1a1b, '10.99.0.2')]);
  t.like(
    a2.received.find((r) => r.xid === 0x1a1a1a1b),
    { from: '10.99.0.1', fromPort: 4011, type: 5, file: 'snponly.efi' },
  );
  await stopLab(t, lab);
});

/** The real entry point in the two-interface lab; `extra` are more flags. */
async function startAppliance(t: ExecutionContext, extra: string[]): Promise<Lab> {
  const dir = await mkdtemp(path.join(tmpdir(), 'netboot-strict-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // bin/appliance runs the build (npm test builds).
  const command = [
    process.execPath,
    path.join(ROOT, 'bin/appliance'),
    '--interface',
    'a0',
    '--address',
    '10.99.0.1',
    '--dhcp-mode',
    'proxy',
    '--http-port',
    '0',
    '--tftp-port',
    '0',
    '--db',
    path.join(dir, 'db.json'),
    '--log-level',
    'debug',
    ...extra,
  ];
  return startLab(t, undefined, command);
}

test.serial('the appliance with --interface is confined to it by default (scripts/bind-device) and never hears the other interface', async (t) => {
  const lab = await startAppliance(t, []);
  const { CLA, CLB, logs } = lab;
  t.truthy(logs.find((l) => /^confining dhcp to a0: running under scripts\/bind-device/.test(String(l['msg']))));
  t.like(lab.ready, { dhcpPort: 67, proxyPort: 4011, strict: true });
  // scripts/bind-device forces 4 MiB receive buffers past net.core.rmem_max (getsockopt reports double).
  t.true(Number(lab.ready['recvBuffer']) >= 4 * 1024 * 1024, `receive buffer ${String(lab.ready['recvBuffer'])}`);
  const xidA = 0x2a2a2a2a;
  const xidB = 0x2b2b2b2b;
  const [a, b] = await Promise.all([
    runClient(CLA, ['0.0.0.0', '68', '255.255.255.255', '67', '2500', hexWithXid('edk2-ovmf-x64-discover', xidA)]),
    runClient(CLB, ['0.0.0.0', '68', '255.255.255.255', '67', '2500', hexWithXid('edk2-ovmf-x64-discover', xidB)]),
  ]);
  t.like(
    a.received.find((r) => r.xid === xidA),
    { from: '10.99.0.1', fromPort: 67, type: 2 },
  );
  t.deepEqual(b.received, []);
  t.false(
    logs.some((l) => l['xid'] === xidB),
    'B discover never reached the appliance',
  );
  t.truthy(logs.find((l) => l['msg'] === 'proxydhcp offer without boot file: client continues on the pxe port' && l['xid'] === xidA));
  const exited = new Promise<number | null>((resolve) => lab.server.once('exit', (code) => resolve(code)));
  lab.server.kill('SIGTERM');
  t.is(await exited, 0, 'SIGTERM (forwarded to the confined child) stops the appliance cleanly');
  t.truthy(logs.find((l) => l['msg'] === 'stopped'));
});

test.serial('--no-strict-interface opts out: the appliance then hears the other interface (and only its reply routing protects it)', async (t) => {
  const lab = await startAppliance(t, ['--no-strict-interface']);
  const { CLB, logs } = lab;
  t.false(logs.some((l) => /^confining dhcp/.test(String(l['msg']))));
  t.like(lab.ready, { strict: false });
  const xidB = 0x2c2c2c2c;
  const b = await runClient(CLB, ['0.0.0.0', '68', '255.255.255.255', '67', '2500', hexWithXid('edk2-ovmf-x64-discover', xidB)]);
  t.deepEqual(b.received, [], 'replies still leave by a0 only');
  t.true(
    logs.some((l) => l['xid'] === xidB),
    'without confinement the DISCOVER from the other interface is heard',
  );
  const exited = new Promise<number | null>((resolve) => lab.server.once('exit', (code) => resolve(code)));
  lab.server.kill('SIGTERM');
  t.is(await exited, 0);
});
