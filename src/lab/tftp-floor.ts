/**
 * The floor of lock-step TFTP in Node, for the service bench: the least a Node process can do per
 * block with dgram (a connected socket per transfer, the file in memory, a vectored send of a
 * reused header and a view of the block, the ACK read in place; no timers, no retransmission,
 * no logs, no limits). Not a server anyone should run: the bench measures it next to the
 * appliance and dnsmasq to show how much of the appliance's CPU per block is Node's own
 * (receive wrapper, an rinfo object and a Buffer per datagram, the callback into JavaScript).
 *
 * Run as `node dist/src/lab/tftp-floor.js ADDRESS ROOT` (port 69); octet RRQs with an optional
 * blksize option (answered in an OACK), everything else ignored.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** Serve lock-step RRQs for files under `root` on `address`:69 until the process ends. */
export function serveFloor(address: string, root: string, port = 69): dgram.Socket {
  const files = new Map<string, Buffer>();
  const main = dgram.createSocket('udp4');
  main.on('message', (msg, rinfo) => {
    const parts = msg.toString('latin1', 2).split('\0');
    const name = path.basename(parts[0] ?? '');
    let blksize = 512;
    let asked = false;
    for (let i = 2; i + 1 < parts.length; i += 2) {
      if (parts[i]!.toLowerCase() === 'blksize') {
        blksize = Math.min(Math.max(Number(parts[i + 1]) || 512, 8), 65464);
        asked = true;
      }
    }
    let file = files.get(name);
    if (file === undefined) {
      file = readFileSync(path.join(root, name));
      files.set(name, file);
    }
    const content = file;
    const last = Math.floor(content.length / blksize) + 1;
    const socket = dgram.createSocket('udp4');
    const header = Buffer.from([0, 3, 0, 0]);
    let block = 0;
    const send = (n: number): void => {
      header[2] = (n >> 8) & 0xff;
      header[3] = n & 0xff;
      const at = (n - 1) * blksize;
      socket.send([header, content.subarray(at, Math.min(content.length, at + blksize))]);
    };
    socket.on('error', () => socket.close());
    socket.on('message', (ack) => {
      if (ack.length < 4 || ack[1] !== 4 || ((ack[2]! << 8) | ack[3]!) !== (block & 0xffff)) return;
      if (block === last) {
        socket.close();
        return;
      }
      block += 1;
      send(block);
    });
    socket.bind(0, address, () =>
      socket.connect(rinfo.port, rinfo.address, () => {
        if (asked) socket.send(Buffer.from(`\0\x06blksize\0${blksize}\0`, 'latin1'));
        else send((block = 1));
      }),
    );
  });
  main.bind(port, address);
  return main;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  serveFloor(process.argv[2] ?? '127.0.0.1', process.argv[3] ?? '.');
}
