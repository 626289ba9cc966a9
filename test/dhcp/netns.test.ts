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
import test from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodePacket, encodePacket } from '../../src/dhcp/packet.js';
import { fixture } from './helpers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const suffix = randomBytes(3).toString('hex');
const SRV = `nbsrv${suffix}`;
const CLA = `nbcla${suffix}`;
const CLB = `nbclb${suffix}`;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function deleteNamespaces(): void {
  for (const ns of [SRV, CLA, CLB]) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // not created (or already gone)
    }
  }
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

test.serial('two interfaces: a client on the configured subnet is answered through it; a client on the other interface gets nothing', async (t) => {
  t.is(process.getuid?.(), 0, 'namespace tests need root (ip netns)');
  t.teardown(deleteNamespaces);
  let server: ChildProcess | undefined;
  t.teardown(() => {
    server?.kill('SIGKILL');
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
  server = spawn(
    'ip',
    ['netns', 'exec', SRV, process.execPath, '--import', 'tsx', path.join(ROOT, 'src/dhcp/run.ts'), '--address', '10.99.0.1', '--http-port', '8080', '--log-level', 'debug'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  server.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    let buf = '';
    server!.stdout?.on('data', (d: Buffer) => {
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
    server!.on('exit', (code) => reject(new Error(`server exited ${code}: ${stderr.slice(0, 800)}`)));
    setTimeout(() => reject(new Error(`server not listening after 20 s: ${stderr.slice(0, 800)}`)), 20_000);
  });
  const ready = await listening;
  t.like(ready, { dhcpPort: 67, proxyPort: 4011, interface: 'a0', subnet: '10.99.0.0/24' });

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
  // A broadcast DISCOVER from 0.0.0.0 cannot be placed (no IP_PKTINFO), so B's DISCOVER was
  // answered too, and that reply left by A (where no client has that xid), never by B even
  // though the default route points there.
  t.true(
    a.received.every((r) => r.from === '10.99.0.1'),
    'every reply seen on A came from the configured address',
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
  t.truthy(logs.find((l) => l['xid'] === 0x0b0b0b0c && /(ciaddr|source) 10.98.0.2 is outside 10.99.0.0\/24/.test(String(l['reason']))), 'B request refused by admission');
  t.truthy(logs.find((l) => l['msg'] === 'proxydhcp ack' && l['xid'] === 0x0a0a0a0b && l['mac'] === '52:54:00:12:34:63'));

  server.kill('SIGTERM');
  await new Promise((resolve) => server!.once('exit', resolve));
  t.truthy(logs.find((l) => l['msg'] === 'proxydhcp stopped'), 'SIGTERM stops the server cleanly');
});
