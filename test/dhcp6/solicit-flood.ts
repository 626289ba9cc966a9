/**
 * A hostile DHCPv6 client for the namespace test, run inside a netns with `ip netns exec`:
 *   solicit-flood.ts IFACE COUNT LISTEN_MS
 * From port 546 of IFACE (its one link-local address: one host, one MAC), multicasts COUNT
 * Solicits to ff02::1:2, each with a new DUID-LL of a made-up MAC, then prints one JSON line:
 * how many Advertises came back and how many of them carried an address.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { decodeIaNa, decodeMessage, duidLl, encodeElapsed, encodeIaNa, encodeMessage, Msg6, Opt6 } from '../../src/dhcp6/packet.js';

const [iface = 'eth0', count = '30', listenMs = '2000'] = process.argv.slice(2);
const socket = dgram.createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
let advertised = 0;
const addresses = new Set<string>();
socket.on('message', (msg) => {
  try {
    const m = decodeMessage(msg);
    if (m.type !== Msg6.ADVERTISE) return;
    advertised += 1;
    for (const o of m.options) if (o.code === Opt6.IA_NA) for (const a of decodeIaNa(o.data).addresses) addresses.add(a.address);
  } catch {
    // not ours to judge
  }
});
socket.bind(546, '::', () => {
  socket.setMulticastInterface(`::%${iface}`);
  const n = Math.min(Number(count), 1000);
  let sent = 0;
  const next = (): void => {
    if (sent >= n) {
      setTimeout(() => {
        process.stdout.write(`${JSON.stringify({ sent, advertised, withAddress: addresses.size })}\n`);
        socket.close();
      }, Number(listenMs));
      return;
    }
    const mac = randomBytes(6);
    mac[0] = (mac[0]! & 0xfc) | 0x02;
    const bytes = encodeMessage({
      type: Msg6.SOLICIT,
      transactionId: randomBytes(3).readUIntBE(0, 3),
      options: [
        { code: Opt6.CLIENT_ID, data: duidLl([...mac].map((b) => b.toString(16).padStart(2, '0')).join(':')) },
        encodeElapsed(0),
        encodeIaNa({ iaid: 1, t1: 0, t2: 0, addresses: [] }),
      ],
    });
    sent += 1;
    socket.send(bytes, 547, `ff02::1:2%${iface}`, () => setTimeout(next, 5));
  };
  next();
});
