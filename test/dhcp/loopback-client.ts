/**
 * A DHCP client on 127.0.0.1 for server tests on loopback: raw requests with any MAC, replies
 * matched by xid, and a whole DISCOVER/REQUEST exchange.
 */
import dgram from 'node:dgram';
import { BootOp, decodePacket, encodePacket, type DhcpPacket } from '../../src/dhcp/packet.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';

/** A UDP socket on 127.0.0.1 that queues decoded replies. */
export async function udpClient() {
  const socket = dgram.createSocket('udp4');
  const queue: DhcpPacket[] = [];
  const waiters: Array<() => void> = [];
  socket.on('message', (msg) => {
    try {
      queue.push(decodePacket(msg));
    } catch {
      return;
    }
    waiters.splice(0).forEach((w) => w());
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    port: socket.address().port,
    send: (msg: Buffer, port: number) => new Promise<void>((resolve, reject) => socket.send(msg, port, '127.0.0.1', (err) => (err ? reject(err) : resolve()))),
    async next(xid: number, timeoutMs = 3000): Promise<DhcpPacket> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = queue.findIndex((p) => p.xid === xid);
        if (i >= 0) return queue.splice(i, 1)[0]!;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no reply for xid ${xid.toString(16)} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** A BOOTREQUEST of DHCP message `type` from `mac`. */
export function request(type: number, mac: string, xid: number, extra: Partial<DhcpPacket> = {}, options: DhcpPacket['options'] = []): Buffer {
  const chaddr = Buffer.alloc(16);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
  return encodePacket({
    op: BootOp.REQUEST,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid,
    secs: 0,
    flags: 0x8000,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr,
    sname: '',
    file: '',
    options: [{ code: Opt.MESSAGE_TYPE, data: Buffer.from([type]) }, ...options],
    ...extra,
  });
}
export const ip4 = (ip: string): Buffer => Buffer.from(ip.split('.').map(Number));

/** DISCOVER, then REQUEST the offered address from server 127.0.0.1; rejects when a reply does not come. */
export async function lease(
  client: Awaited<ReturnType<typeof udpClient>>,
  port: number,
  mac: string,
  xid: number,
): Promise<{ offer: DhcpPacket; ack: DhcpPacket }> {
  await client.send(request(MessageType.DISCOVER, mac, xid), port);
  const offer = await client.next(xid);
  await client.send(
    request(MessageType.REQUEST, mac, xid + 1, {}, [
      { code: Opt.SERVER_ID, data: ip4('127.0.0.1') },
      { code: Opt.REQUESTED_IP, data: ip4(offer.yiaddr) },
    ]),
    port,
  );
  const ack = await client.next(xid + 1);
  return { offer, ack };
}
