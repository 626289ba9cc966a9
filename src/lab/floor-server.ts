/**
 * The bench's floor: the least a Node process can do and still serve what the bench measures,
 * so the report can tell the appliance's own cost from the runtime's. It is not a server anyone
 * should run: no path checks, no retransmission, no limits, no logging.
 *
 *   node dist/src/lab/floor-server.js ADDRESS ROOT [--dhcp [JOURNAL]]
 *
 * - TFTP on ADDRESS:69: lock-step RRQs, as src/lab/tftp-floor.ts serves them;
 * - HTTP on ADDRESS:8080: GET /assets/NAME streams ROOT/NAME through the appliance's own
 *   streamFileRange (sendfile where the addon is built, else 1 MiB reads into reused buffers),
 *   with no Koa, routing, limits or ranges;
 * - with --dhcp, a ProxyDHCP-shaped responder on ADDRESS:67 that answers every relayed
 *   DISCOVER with a fixed OFFER (xid, giaddr and chaddr copied in) sent to the relay;
 * - with --dhcp JOURNAL, DISCOVERs without option 60 (perfdhcp's DORA runs) are answered as a
 *   DHCP server would: an OFFER of an address taken from the MAC, and an ACK for each REQUEST
 *   sent only once a line for it is durable in JOURNAL (appended, then fdatasync; the ACKs that
 *   arrive while one sync runs wait for the next, as the appliance's lease journal groups
 *   them). That is the least a durable ACK costs on this disk from Node, whatever the server.
 */
import { fdatasync, openSync, statSync, write } from 'node:fs';
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

/** The value of DHCP option `code` in a BOOTP message (options after the magic cookie), if present. */
function option(msg: Buffer, code: number): Buffer | undefined {
  for (let i = 240; i < msg.length;) {
    const c = msg[i]!;
    if (c === 255) return undefined;
    if (c === 0) {
      i += 1;
      continue;
    }
    const len = msg[i + 1] ?? 0;
    if (c === code) return msg.subarray(i + 2, i + 2 + len);
    i += 2 + len;
  }
  return undefined;
}

/** A server-mode answer (OFFER or ACK) to `msg`: the address is the relay's /16 with the MAC's last two bytes. */
function serverReply(msg: Buffer, type: 2 | 5, serverId: Buffer): Buffer {
  const options = Buffer.from([99, 130, 83, 99, 53, 1, type, 54, 4, ...serverId, 51, 4, 0, 0, 14, 16, 1, 4, 255, 255, 0, 0, 255]);
  const reply = Buffer.alloc(236 + options.length);
  reply[0] = 2;
  reply[1] = 1;
  reply[2] = 6;
  msg.copy(reply, 4, 4, 12); // xid, secs, flags
  msg.copy(reply, 24, 24, 44); // giaddr, chaddr
  reply[16] = msg[24]!;
  reply[17] = msg[25]!;
  reply[18] = msg[32]! || 1; // never .0.x
  reply[19] = msg[33]! === 0 || msg[33]! === 255 ? 1 : msg[33]!;
  options.copy(reply, 236);
  return reply;
}

function dhcp(journal: string | undefined): void {
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
  const relay = (msg: Buffer): string => `${msg[24]}.${msg[25]}.${msg[26]}.${msg[27]}`;
  // Group commit: ACKs wait for the sync after their line was written.
  const fd = journal === undefined ? undefined : openSync(journal, 'a');
  let waiting: Buffer[] = [];
  let syncing = false;
  const commit = (): void => {
    if (syncing || waiting.length === 0 || fd === undefined) return;
    syncing = true;
    const batch = waiting;
    waiting = [];
    const lines = batch.map(
      (ack) => `{"mac":"${ack.subarray(28, 34).toString('hex')}","ip":"${ack[16]}.${ack[17]}.${ack[18]}.${ack[19]}","at":${Date.now()}}\n`,
    );
    write(fd, lines.join(''), (err) => {
      if (err) throw err;
      fdatasync(fd, (err2) => {
        if (err2) throw err2;
        for (const ack of batch) server.send(ack, 67, relay(ack));
        syncing = false;
        commit();
      });
    });
  };
  server.on('message', (msg) => {
    if (msg.length < 240 || msg[0] !== 1) return;
    if (fd !== undefined && option(msg, 60) === undefined) {
      const type = option(msg, 53)?.[0];
      if (type === 1) server.send(serverReply(msg, 2, serverId), 67, relay(msg));
      else if (type === 3) {
        waiting.push(serverReply(msg, 5, serverId));
        commit();
      }
      return;
    }
    const reply = Buffer.allocUnsafe(template.length);
    template.copy(reply);
    msg.copy(reply, 4, 4, 12); // xid, secs, flags
    msg.copy(reply, 24, 24, 44); // giaddr, chaddr
    server.send(reply, 67, relay(msg));
  });
  server.bind(67, address);
}

serveFloor(address, root);
http();
const at = rest.indexOf('--dhcp');
if (at >= 0) dhcp(rest[at + 1]);
