/**
 * The boot file a whole appliance names at DHCP time follows fact-selected groups (appliance.ts
 * wiring store/facts-index.ts into boot/loader.ts): a real appliance on 127.0.0.1 with every
 * port 0, the captured EDK2 4011 REQUEST (test/fixtures/dhcp) sent with other MACs, and facts
 * reported over HTTP the way the discovery agent reports them. Only the machine's own verified
 * report changes its boot file; a spoofed one changes nothing, and other machines are unaffected.
 */
import test from 'ava';
import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createAppliance } from '../src/appliance.js';
import { decodePacket, encodePacket } from '../src/dhcp/packet.js';
import { createSilentLogger } from '../src/log.js';
import { udpClient } from './dhcp/loopback-client.js';
import { loopbackApplianceConfig } from './helpers/appliance-config.js';
import { fixture } from './dhcp/helpers.js';
import { waitFor } from './store/helpers.js';

const TOKEN = 'appliance-dhcp-facts-test-token';
const MACHINE = '52:54:00:14:dd:01';
const VICTIM = '52:54:00:14:dd:02';
const BYSTANDER = '52:54:00:14:dd:03';
const LATER = '52:54:00:14:dd:04';
/** Loopback addresses standing for each machine's lease (all of 127/8 is local on Linux). */
const ADDRESS: Record<string, string> = { [MACHINE]: '127.0.0.171', [VICTIM]: '127.0.0.172', [BYSTANDER]: '127.0.0.173', [LATER]: '127.0.0.174' };
const STRANGER = '127.0.0.180';
const DELL = { dmi: { vendor: 'Dell Inc.', product: 'PowerEdge R650' }, cpu: { count: 8 } };

async function startAppliance(t: { teardown(fn: () => unknown): void }) {
  const config = loopbackApplianceConfig({ 'api-token': TOKEN });
  mkdirSync(join(config.assets, 'k'));
  writeFileSync(join(config.assets, 'k', 'vmlinuz'), 'kernel');
  writeFileSync(
    config.db,
    JSON.stringify({
      defaultProfile: 'plain',
      profiles: [
        { id: 'plain', kernel: '/assets/k/vmlinuz', cmdline: { 'netboot.facts_token': '{{ facts_token? }}' } },
        { id: 'installer', kernel: '/assets/k/vmlinuz' },
      ],
      groups: [{ id: 'dell-secure', profile: 'installer', selector: { facts: ['dmi.vendor == "Dell Inc."'] }, bootloader: 'grub', secureBoot: true }],
    }),
  );
  const appliance = createAppliance(config, { log: createSilentLogger() });
  const ports = await appliance.start();
  t.teardown(() => appliance.stop());
  const client = await udpClient();
  t.teardown(() => client.close());
  let xid = 0x14dd0000;
  /** The file the 4011 ACK names for `mac` (captured EDK2 request, that MAC, its lease address). */
  const bootFile = async (mac: string): Promise<string> => {
    const packet = decodePacket(fixture('edk2-ovmf-x64-request-4011'));
    const chaddr = Buffer.alloc(16);
    Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
    const id = ++xid;
    await client.send(encodePacket({ ...packet, xid: id, chaddr, ciaddr: ADDRESS[mac]! }), ports.proxy);
    return (await client.next(id)).file;
  };
  const request = (method: string, path: string, options: { from?: string; body?: unknown; token?: string } = {}) =>
    new Promise<{ status: number; text: string; json: Record<string, unknown> | undefined }>((resolve, reject) => {
      const body = options.body === undefined ? undefined : JSON.stringify(options.body);
      const r = http.request(
        {
          host: '127.0.0.1',
          port: ports.http,
          path,
          method,
          agent: false,
          ...(options.from ? { localAddress: options.from } : {}),
          headers: {
            ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}),
            ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: Record<string, unknown> | undefined;
            try {
              json = JSON.parse(text) as Record<string, unknown>;
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, text, json });
          });
        },
      );
      r.on('error', reject);
      r.setTimeout(10_000, () => r.destroy(new Error('request timed out')));
      if (body !== undefined) r.write(body);
      r.end();
    });
  /** The facts token of the boot script `mac` fetches from `from`. */
  const factsToken = async (mac: string, from: string): Promise<string> => {
    const script = await request('GET', `/ipxe?mac=${mac}`, { from });
    return /netboot\.facts_token=([0-9a-f]{32})/.exec(script.text)?.[1] ?? '';
  };
  return { bootFile, request, factsToken };
}

test('after its verified facts report, the next PXE answer for that MAC names the fact-selected group’s loader; spoofed reports and other machines are unaffected', async (t) => {
  const { bootFile, request, factsToken } = await startAppliance(t);
  for (const mac of [MACHINE, VICTIM, BYSTANDER]) t.is(await bootFile(mac), 'snponly.efi', mac);

  // A stranger reports Dell facts for the victim: without a token, and with the token of the
  // victim's script it fetched itself. Both are stored unverified and change nothing.
  const blind = await request('POST', `/api/machines/${VICTIM}/facts`, { body: DELL, from: STRANGER });
  t.like(blind, { status: 201, json: { verified: false } });
  const harvested = await factsToken(VICTIM, STRANGER);
  t.regex(harvested, /^[0-9a-f]{32}$/);
  t.like(await request('POST', `/api/machines/${VICTIM}/facts`, { body: DELL, from: STRANGER, token: harvested }), { json: { verified: false } });
  t.is(await bootFile(VICTIM), 'snponly.efi', 'unverified facts never choose the boot file');

  // The machine's own boot: DHCP saw it at its address, its script's token, its report.
  const own = await factsToken(MACHINE, ADDRESS[MACHINE]!);
  const report = await request('POST', `/api/machines/${MACHINE}/facts`, { body: DELL, from: ADDRESS[MACHINE]!, token: own });
  t.like(report, { status: 200, json: { verified: true } });
  t.is(await bootFile(MACHINE), 'shimx64.efi', 'dell-secure: grub with secure boot, so the signed shim');
  t.is(await bootFile(VICTIM), 'snponly.efi');
  t.is(await bootFile(BYSTANDER), 'snponly.efi');

  // The script side agrees: the same group.
  const selection = await request('GET', `/api/machines/${MACHINE}/selection`, { token: TOKEN });
  t.like(selection.json, { profile: 'installer', via: 'group', group: 'dell-secure' });

  // Its state deleted, the facts go with it: back to the default boot file.
  t.is((await request('DELETE', `/api/machines/${MACHINE}`, { token: TOKEN })).status, 204);
  t.is(await bootFile(MACHINE), 'snponly.efi');
});

test('a fact-selecting group added while running applies at DHCP time to facts verified before it existed', async (t) => {
  const { bootFile, request } = await startAppliance(t);
  // Verified by the operator's API token (an inventory import), before any group reads cpu.count.
  t.like(await request('POST', `/api/machines/${LATER}/facts`, { body: { cpu: { count: 64 } }, token: TOKEN }), { json: { verified: true } });
  t.is(await bootFile(LATER), 'snponly.efi');
  const put = await request('PUT', '/api/groups/many-cores', {
    token: TOKEN,
    body: { id: 'many-cores', profile: 'installer', selector: { facts: ['cpu.count >= 32'] }, bootloader: 'grub' },
  });
  t.true(put.status === 200 || put.status === 201, put.text);
  // DHCP reads the database each second, and the facts the new selector reads with it.
  let file = '';
  t.true(await waitFor(async () => (file = await bootFile(LATER)) === 'grubx64.efi', 5000), `got ${file}`);
  t.is(await bootFile(BYSTANDER), 'snponly.efi');
});
