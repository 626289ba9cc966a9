/**
 * The lease journal survives kill -9: every lease the server acknowledged is in the file when
 * the process is killed in the middle of a stream of exchanges (RFC 2131 section 4.3.2: the
 * binding is on stable storage before the ACK goes out).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadLeaseFile } from '../../src/dhcp/lease-file.js';
import { lease, udpClient } from './loopback-client.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lease-server-child.ts');

test('kill -9 in the middle of 8 concurrent DORA streams: no acknowledged lease is lost, the restart serves them again', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lease-journal-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const leaseFile = path.join(dir, 'leases.json');
  const client = await udpClient();
  t.teardown(() => client.close());

  const start = async () => {
    const child = spawn(process.execPath, ['--import=tsx', CHILD, leaseFile, String(client.port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const line = out.split('\n')[0];
        if (out.includes('\n') && line) resolve((JSON.parse(line) as { dhcpPort: number }).dhcpPort);
      });
      child.once('exit', (code) => reject(new Error(`lease server exited with ${code} before listening`)));
    });
    return { child, port };
  };

  const first = await start();
  const exited = new Promise<NodeJS.Signals | null>((resolve) => first.child.once('exit', (_code, signal) => resolve(signal)));
  const acked = new Map<string, string>();
  let next = 0;
  let killed = false;
  const worker = async (w: number): Promise<void> => {
    while (!killed) {
      const n = next++;
      const mac = `52:54:00:${w.toString(16).padStart(2, '0')}:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
      try {
        const { ack } = await lease(client, first.port, mac, 0x10000 + n * 2);
        acked.set(mac, ack.yiaddr);
      } catch {
        return; // no reply: the server is gone
      }
      if (acked.size >= 150 && !killed) {
        killed = true;
        first.child.kill('SIGKILL');
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
  t.is(await exited, 'SIGKILL');
  t.true(acked.size >= 150, `${acked.size} acks before the kill`);

  const onDisk = await loadLeaseFile(leaseFile);
  const bound = new Map(onDisk.leases.filter((l) => l.state === 'bound').map((l) => [l.mac, l.ip]));
  const lost = [...acked].filter(([mac, ip]) => bound.get(mac) !== ip);
  t.deepEqual(lost, [], 'acknowledged leases missing from the journal');

  // A restart reads the journal: a client asking again gets the same address.
  const second = await start();
  t.teardown(() => {
    second.child.kill('SIGKILL');
  });
  const [mac, ip] = [...acked][0]!;
  const again = await lease(client, second.port, mac, 0x900000);
  t.is(again.ack.yiaddr, ip);
});
