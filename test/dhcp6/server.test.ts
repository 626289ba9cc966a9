/**
 * The DHCPv6 sockets on loopback ([::1], ports 0): captured OVMF and iPXE messages in, replies
 * out to the sender's address and port; leases journalled and read back after a restart;
 * garbage dropped without stopping the server.
 */
import test from 'ava';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEventLog } from '../../src/events.js';
import { createDhcp6Server, type Dhcp6ServerOptions } from '../../src/dhcp6/server.js';
import { decodeIaNa, decodeMessage, encodeIaNa, encodeMessage, findOption, Msg6, Opt6, type Message6 } from '../../src/dhcp6/packet.js';
import { loopbackOptions, SERVER_DUID } from './helpers.js';

const fixture = (f: string) => readFileSync(join(import.meta.dirname, '..', 'fixtures', 'dhcp6', f));

function options(extra: Partial<Dhcp6ServerOptions>): Dhcp6ServerOptions {
  return loopbackOptions({ leaseSeconds: 600, ...extra });
}

async function client(t: { teardown(fn: () => void): void }) {
  const s = dgram.createSocket('udp6');
  await new Promise<void>((r) => s.bind(0, '::1', () => r()));
  t.teardown(() => s.close());
  const inbox: Message6[] = [];
  const waiters: Array<() => void> = [];
  s.on('message', (m) => {
    inbox.push(decodeMessage(m));
    waiters.splice(0).forEach((w) => w());
  });
  return {
    send: (buf: Buffer, port: number) => new Promise<void>((r) => s.send(buf, port, '::1', () => r())),
    async next(ms = 3000): Promise<Message6> {
      const deadline = Date.now() + ms;
      while (inbox.length === 0) {
        if (Date.now() > deadline) throw new Error('no dhcpv6 reply');
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return inbox.shift()!;
    },
    inbox,
  };
}

test('server mode over UDP: OVMF PXE Solicit -> Advertise, Request -> Reply; the lease survives a restart (journal)', async (t) => {
  const leaseFile = join(mkdtempSync(join(tmpdir(), 'dhcp6-')), 'leases6.json');
  const events = createEventLog();
  const server = createDhcp6Server(options({ leaseFile, leaseSync: 'none', events }));
  const { port } = await server.start();
  t.teardown(() => server.stop());
  const c = await client(t);
  // Garbage first: dropped, the server keeps serving.
  for (const junk of [Buffer.alloc(0), Buffer.from([12, 1, 2, 3]), Buffer.from('ffffffffffff', 'hex')]) await c.send(junk, port);
  await c.send(fixture('edk2-ovmf-x64-pxe-solicit.bin'), port);
  const adv = await c.next();
  t.is(adv.type, Msg6.ADVERTISE);
  t.is(findOption(adv.options, Opt6.BOOTFILE_URL)?.data.toString(), 'tftp://[fd00:126::1]/snponly.efi');
  const ia = decodeIaNa(findOption(adv.options, Opt6.IA_NA)!.data);
  const address = ia.addresses[0]!.address;
  // The captured Request names dnsmasq's DUID: rebuild it for us (same client, same IA).
  const captured = decodeMessage(fixture('edk2-ovmf-x64-pxe-request.bin'));
  const request: Message6 = {
    ...captured,
    options: captured.options.map((o) =>
      o.code === Opt6.SERVER_ID
        ? { code: Opt6.SERVER_ID, data: SERVER_DUID }
        : o.code === Opt6.IA_NA
          ? encodeIaNa({ iaid: ia.iaid, t1: 0, t2: 0, addresses: [{ address, preferredLifetime: 0, validLifetime: 0 }] })
          : o,
    ),
  };
  await c.send(encodeMessage(request), port);
  const rep = await c.next();
  t.is(rep.type, Msg6.REPLY);
  t.is(decodeIaNa(findOption(rep.options, Opt6.IA_NA)!.data).addresses[0]?.address, address);
  t.like(events.list({ mac: '52:54:00:12:60:04' }).at(-1), { type: 'dhcp6-reply', ip: address });
  await server.stop();

  const again = createDhcp6Server(options({ leaseFile, leaseSync: 'none' }));
  await again.start();
  t.teardown(() => again.stop());
  t.like(
    again.pool?.leases().find((l) => l.ip === address),
    { state: 'bound', mac: '52:54:00:12:60:04' },
  );
  t.regex(readFileSync(leaseFile, 'utf8'), new RegExp(`"ip":"${address}"`));
});

test('proxy mode over UDP: a PXE Solicit on 547 gets the proxy Advertise, the 4011 Request is answered to its source port', async (t) => {
  const server = createDhcp6Server(options({ mode: 'proxy' }));
  const { port, proxyPort } = await server.start();
  t.teardown(() => server.stop());
  t.not(proxyPort, 0);
  const c = await client(t);
  await c.send(fixture('ipxe-efi-solicit.bin'), port);
  await c.send(fixture('edk2-ovmf-x64-pxe-solicit.bin'), port);
  const adv = await c.next();
  t.is(adv.type, Msg6.ADVERTISE, 'only the PXE Solicit is answered (iPXE ignores address-less Advertises)');
  t.is(findOption(adv.options, Opt6.IA_NA), undefined);
  const captured = decodeMessage(fixture('edk2-ovmf-x64-pxe-request.bin'));
  const binl: Message6 = {
    ...captured,
    options: captured.options.filter((o) => o.code !== Opt6.IA_NA).map((o) => (o.code === Opt6.SERVER_ID ? { code: o.code, data: SERVER_DUID } : o)),
  };
  await c.send(encodeMessage(binl), proxyPort);
  const rep = await c.next();
  t.is(rep.type, Msg6.REPLY);
  t.is(findOption(rep.options, Opt6.BOOTFILE_URL)?.data.toString(), 'tftp://[fd00:126::1]/snponly.efi');
  t.is(c.inbox.length, 0);
});
