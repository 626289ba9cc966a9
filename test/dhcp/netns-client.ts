/**
 * A DHCP test client for the namespace test, run inside a netns with `ip netns exec`:
 *   netns-client.ts BIND_ADDR BIND_PORT DEST_ADDR DEST_PORT LISTEN_MS [HEX_PACKET]
 * Binds, optionally sends one datagram (broadcast allowed), then prints one JSON line with
 * every datagram received within LISTEN_MS (source, xid, message type, file).
 */
import dgram from 'node:dgram';
import { decodePacket } from '../../src/dhcp/packet.js';
import { readOptions } from '../../src/dhcp/options.js';

const [bindAddr = '0.0.0.0', bindPort = '68', dest = '255.255.255.255', destPort = '67', listenMs = '1500', hex] = process.argv.slice(2);
const received: Array<Record<string, unknown>> = [];
const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
socket.on('message', (msg, from) => {
  try {
    const p = decodePacket(msg);
    received.push({ from: from.address, fromPort: from.port, xid: p.xid, type: readOptions(p).messageType, file: p.file, siaddr: p.siaddr });
  } catch (err) {
    received.push({ from: from.address, fromPort: from.port, error: (err as Error).message });
  }
});
socket.bind(Number(bindPort), bindAddr, () => {
  socket.setBroadcast(true);
  const done = (sendError?: string): void => {
    setTimeout(() => {
      process.stdout.write(`${JSON.stringify({ sendError, received })}\n`);
      socket.close();
    }, Number(listenMs));
  };
  if (hex) socket.send(Buffer.from(hex, 'hex'), Number(destPort), dest, (err) => done(err ? String((err as NodeJS.ErrnoException).code) : undefined));
  else done();
});
