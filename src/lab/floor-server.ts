/**
 * The bench's floor: the least a Node process can do and still serve what the bench measures,
 * so the report can tell the appliance's own cost from the runtime's. It is not a server anyone
 * should run: no path checks, no retransmission, no limits, no logging.
 *
 *   node dist/src/lab/floor-server.js ADDRESS ROOT [--dhcp]
 *
 * - TFTP on ADDRESS:69: lock-step RRQs, as src/lab/tftp-floor.ts serves them;
 * - HTTP on ADDRESS:8080: GET /assets/NAME streams ROOT/NAME through the appliance's own
 *   streamFileRange (sendfile where the addon is built, else 1 MiB reads into reused buffers),
 *   with no Koa, routing, limits or ranges;
 * - with --dhcp, a ProxyDHCP-shaped responder on ADDRESS:67 that answers every relayed
 *   DISCOVER with a fixed OFFER (xid, giaddr and chaddr copied in) sent to the relay.
 */
import { statSync } from 'node:fs';
import dgram from 'node:dgram';
import { createServer } from 'node:http';
import { basename, join } from 'node:path';
import { streamFileRange } from '../http/file-stream.js';
import { serveFloor } from './tftp-floor.js';

const [address = '127.0.0.1', root = '.', ...rest] = process.argv.slice(2);

function http(): void {
  createServer((req, res) => {
    const file = join(root, basename(req.url ?? ''));
    let size: number;
    try {
      size = statSync(file).size;
    } catch {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader('content-type', 'application/octet-stream');
    res.setHeader('content-length', size);
    streamFileRange(file, 0, size - 1, res).catch(() => res.destroy());
  }).listen(8080, address);
}

function dhcp(): void {
  const server = dgram.createSocket('udp4');
  const serverId = Buffer.from(address.split('.').map(Number));
  // op 2, htype 1, hlen 6; siaddr = us; options 53 = OFFER, 54 = us, 60 = PXEClient, 43 = PXE
  // discovery control 8 (boot server list off, as a proxy answering on 67 sends), end.
  const options = Buffer.concat([
    Buffer.from([99, 130, 83, 99, 53, 1, 2, 54, 4]),
    serverId,
    Buffer.from([60, 9]),
    Buffer.from('PXEClient'),
    Buffer.from([43, 3, 6, 1, 8, 255]),
  ]);
  const template = Buffer.alloc(236 + options.length);
  template[0] = 2;
  template[1] = 1;
  template[2] = 6;
  serverId.copy(template, 20);
  options.copy(template, 236);
  server.on('message', (msg) => {
    if (msg.length < 240 || msg[0] !== 1) return;
    const reply = Buffer.allocUnsafe(template.length);
    template.copy(reply);
    msg.copy(reply, 4, 4, 12); // xid, secs, flags
    msg.copy(reply, 24, 24, 44); // giaddr, chaddr
    server.send(reply, 67, `${msg[24]}.${msg[25]}.${msg[26]}.${msg[27]}`);
  });
  server.bind(67, address);
}

serveFloor(address, root);
http();
if (rest.includes('--dhcp')) dhcp();
