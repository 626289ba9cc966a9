/**
 * Is another DHCP server on this segment? Broadcast one DISCOVER from port 68 and listen for an
 * OFFER (used by `--dhcp-mode auto` to choose proxy or server, and by server mode to refuse to
 * start beside another server: two servers on one segment break labs).
 *
 * How other tools probe: nmap's broadcast-dhcp-discover and dhcp_probe send a DISCOVER with the
 * broadcast flag from port 68 with a random xid; dhcp_probe uses the interface's own MAC, nmap a
 * fixed or random one. We use the interface's MAC (a server that answers reserves an address for
 * a MAC that really is on the segment and never asks for it; nothing else is disturbed), or a
 * random locally administered MAC when the interface has none. We never send a REQUEST, so no
 * lease is taken.
 *
 * Sockets: the same technique as sockets.ts. 0.0.0.0:68 hears the broadcast OFFER; a socket bound
 * to our address and port 68 sends the DISCOVER, so the limited broadcast leaves by the
 * interface that owns the address (Linux routes 255.255.255.255 by source address). Port 68
 * needs root or cap_net_bind_service; a dhclient on the same host shares it (SO_REUSEADDR).
 */
import dgram from 'node:dgram';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';
import { BROADCAST_FLAG, BootOp, decodePacket, encodePacket, getOption, type DhcpPacket } from './packet.js';
import { MessageType, Opt, readOptions, textOption, u8Option } from './options.js';
import { decideAuto, type AutoDecision, type AutoFacts, type AutoWords } from './auto-mode.js';
import { findLocalAddress } from './sockets.js';

/** Error code of a probe that could not run (bind failure, bad address). */
export const ERR_DHCP_PROBE = 'ERR_DHCP_PROBE';

/** Default probe time: longer than dnsmasq's 3 s ping check before a first OFFER. */
export const DEFAULT_PROBE_TIMEOUT_MS = 5000;

/** One server that answered the probe. */
export interface ProbeAnswer {
  /** Option 54, or the datagram's source when the server omitted it. */
  serverId: string;
  /** Source address of the reply. */
  from: string;
  /** Address it offered (yiaddr). */
  offered: string;
  /** OFFER, ACK or NAK. */
  messageType: number;
  /** The answer carried PXE boot data (option 60 PXEClient/HTTPClient, 43, or a boot file): a ProxyDHCP or a PXE-serving DHCP server. */
  pxe: boolean;
}

/** Result of `probeForDhcpServer`. */
export interface ProbeResult {
  found: boolean;
  /** Servers that answered, first answer first. */
  servers: ProbeAnswer[];
  /** The MAC the probe used. */
  mac: string;
  xid: number;
  elapsedMs: number;
}

/** Options of `probeForDhcpServer`. */
export interface ProbeOptions {
  /** Our address on the segment to probe (the DISCOVER leaves by its interface). */
  address: string;
  /** Interface owning `address`; checked when given, and its MAC is used. */
  interface?: string;
  /**
   * How long to listen, default 5000 ms. Measured: dnsmasq pings an address for 3 s before its
   * first OFFER of it to a new client (ICMP check, `--no-ping` turns it off), so 3 s misses it.
   */
  timeoutMs?: number;
  /** DISCOVERs to send, spread over the timeout (default 3: UDP may be lost). */
  attempts?: number;
  /** After the first answer, listen this long for more (default 300 ms). */
  settleMs?: number;
  /** MAC to put in chaddr; default the interface's, else a random locally administered one. */
  mac?: string;
  /** Client and server ports (68/67); seams for tests. */
  clientPort?: number;
  serverPort?: number;
  /** Destination of the DISCOVER (255.255.255.255); a seam for tests. */
  broadcastAddress?: string;
  /** Replies from these server ids/addresses are ignored; default `[address]` (ourselves). */
  ignoreServers?: string[];
  /** Called with the xid before the first DISCOVER leaves (our own listener ignores it). */
  onXid?: (xid: number) => void;
  log: Logger;
}

function probeError(message: string, detail?: Record<string, unknown>, cause?: unknown): ApplianceError {
  return new ApplianceError(ERR_DHCP_PROBE, message, detail, cause === undefined ? undefined : { cause });
}

/** The MAC of the interface owning `address`, when it has a real one. */
function interfaceMac(address: string): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const e of list ?? []) {
      if (e.family === 'IPv4' && e.address === address && e.mac && e.mac !== '00:00:00:00:00:00') return e.mac;
    }
  }
  return undefined;
}

/** A random unicast, locally administered MAC (first octet x2/x6/xa/xe). */
export function randomLocalMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/**
 * The probe DISCOVER: broadcast flag, our MAC, asks for the usual parameters, and says it is a
 * BIOS PXE client (60 `PXEClient:Arch:00000:UNDI:002001`, 93 = 0, 94 = 1.2.1, as SeaBIOS's iPXE
 * ROM does), so a ProxyDHCP (another appliance, dnsmasq in proxy mode) answers it too: one
 * probe finds both DHCP servers and PXE responders. A plain DHCP server ignores the PXE options.
 */
export function buildProbeDiscover(mac: string, xid: number): DhcpPacket {
  const chaddr = Buffer.alloc(16);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
  return {
    op: BootOp.REQUEST,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid,
    secs: 0,
    // Broadcast flag: we do not configure the offered address, so the reply must be broadcast.
    flags: BROADCAST_FLAG,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr,
    sname: '',
    file: '',
    options: [
      u8Option(Opt.MESSAGE_TYPE, MessageType.DISCOVER),
      { code: Opt.PARAMETER_LIST, data: Buffer.from([1, 3, 6, 15, 51, 54, 60, 66, 67, 43]) },
      textOption(Opt.VENDOR_CLASS, 'PXEClient:Arch:00000:UNDI:002001'),
      { code: Opt.CLIENT_ARCH, data: Buffer.from([0, 0]) },
      { code: Opt.CLIENT_NDI, data: Buffer.from([1, 2, 1]) },
    ],
  };
}

function bind(port: number, address: string): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    socket.once('error', (err) => {
      try {
        socket.close();
      } catch {
        // not open
      }
      reject(err);
    });
    socket.bind({ port, address }, () => {
      socket.removeAllListeners('error');
      socket.on('error', () => undefined);
      socket.setBroadcast(true);
      resolve(socket);
    });
  });
}

/**
 * Broadcast a DISCOVER on the segment of `address` and report which DHCP servers answer within
 * `timeoutMs`. Resolves `found: false` when none does. Rejects with `ERR_DHCP_PROBE` when the
 * sockets cannot be opened (port 68 needs root) or `address` is not ours.
 */
export async function probeForDhcpServer(options: ProbeOptions): Promise<ProbeResult> {
  const log = options.log.child({ subsystem: 'dhcp-probe' });
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const attempts = Math.max(1, Math.min(options.attempts ?? 3, 10));
  const settleMs = options.settleMs ?? 300;
  const clientPort = options.clientPort ?? 68;
  const serverPort = options.serverPort ?? 67;
  const broadcast = options.broadcastAddress ?? '255.255.255.255';
  const local = findLocalAddress(options.address);
  if (!local)
    throw probeError(`address ${options.address} is not assigned to any interface of this host that is up and has carrier; cannot probe its network`, {
      address: options.address,
    });
  if (options.interface !== undefined && local.name !== options.interface) {
    throw probeError(`address ${options.address} is on interface ${local.name}, not ${options.interface}`, {
      address: options.address,
      interface: options.interface,
    });
  }
  const mac = options.mac ?? interfaceMac(options.address) ?? randomLocalMac();
  const xid = randomBytes(4).readUInt32BE(0);
  const ignore = new Set(options.ignoreServers ?? [options.address]);
  const bytes = encodePacket(buildProbeDiscover(mac, xid));

  const sockets: dgram.Socket[] = [];
  try {
    sockets.push(await bind(clientPort, '0.0.0.0'));
    const port = sockets[0]!.address().port;
    if (options.address !== '0.0.0.0') sockets.push(await bind(port, options.address));
  } catch (err) {
    await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    const code = (err as NodeJS.ErrnoException).code;
    throw probeError(
      `cannot open the dhcp probe socket on port ${clientPort}: ${code ?? (err as Error).message}${code === 'EACCES' ? '; port 68 needs root or cap_net_bind_service' : ''}`,
      { port: clientPort, code },
      err,
    );
  }
  const sender = sockets[sockets.length - 1]!;
  const started = Date.now();
  const servers: ProbeAnswer[] = [];
  options.onXid?.(xid);
  log.info({ address: options.address, interface: local.name, mac, xid, timeoutMs }, 'probing for another dhcp server');

  return new Promise<ProbeResult>((resolve) => {
    const timers: NodeJS.Timeout[] = [];
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      timers.forEach(clearTimeout);
      let open = sockets.length;
      const result: ProbeResult = { found: servers.length > 0, servers, mac, xid, elapsedMs: Date.now() - started };
      for (const s of sockets) {
        s.close(() => {
          open -= 1;
          if (open === 0) resolve(result);
        });
      }
    };
    const onMessage = (msg: Buffer, from: dgram.RemoteInfo): void => {
      if (done) return;
      let p: DhcpPacket;
      let type: number | undefined;
      let serverId: string | undefined;
      let vendorClass: string | undefined;
      try {
        p = decodePacket(msg);
        const t = readOptions(p);
        type = t.messageType;
        serverId = t.serverId;
        vendorClass = t.vendorClass;
      } catch {
        return; // not a dhcp reply
      }
      if (p.op !== BootOp.REPLY || p.xid !== xid) return;
      if (type !== MessageType.OFFER && type !== MessageType.ACK && type !== MessageType.NAK) return;
      const id = serverId ?? from.address;
      if (ignore.has(id) || ignore.has(from.address)) return;
      if (servers.some((s) => s.serverId === id)) return;
      const pxe = /^(PXEClient|HTTPClient)/.test(vendorClass ?? '') || getOption(p, Opt.VENDOR) !== undefined || p.file !== '';
      servers.push({ serverId: id, from: from.address, offered: p.yiaddr, messageType: type, pxe });
      log.info({ serverId: id, from: from.address, offered: p.yiaddr, pxe, xid }, pxe ? 'another pxe responder answered' : 'another dhcp server answered');
      if (servers.length === 1) timers.push(setTimeout(finish, settleMs));
    };
    for (const s of sockets) s.on('message', onMessage);
    for (let i = 0; i < attempts; i++) {
      timers.push(
        setTimeout(
          () => {
            if (done) return;
            sender.send(bytes, serverPort, broadcast, (err) => {
              if (err) log.warn({ code: (err as NodeJS.ErrnoException).code, xid }, 'dhcp probe send failed');
            });
          },
          Math.floor((timeoutMs * i) / (attempts + 1)),
        ),
      );
    }
    timers.push(setTimeout(finish, timeoutMs));
  });
}

/** Servers of a probe result that hand out addresses (yiaddr set), and those that answered PXE. */
export function describeAnswers(result: ProbeResult): { addressServers: ProbeAnswer[]; pxeResponders: ProbeAnswer[] } {
  return {
    addressServers: result.servers.filter((s) => s.offered !== '0.0.0.0'),
    pxeResponders: result.servers.filter((s) => s.pxe),
  };
}

/** What `--dhcp-mode auto` knows when it decides. */
export type AutoModeFacts = AutoFacts<ProbeResult>;

/** The IPv4 wording of the auto-mode reasons (the log line). */
const AUTO_WORDS: AutoWords<ProbeResult> = {
  notProbed: 'the dhcp port is not 67, so the segment was not probed: answering pxe clients only; pass --dhcp-mode server to hand out addresses',
  answered: (p) => `dhcp server ${p.servers.map((s) => s.serverId).join(', ')} answered the probe: answering pxe clients beside it`,
  uplink: (p, where) =>
    `no dhcp server answered within ${p.elapsedMs} ms, but ${where} carries this host's default route (an uplink, where a missed answer is likelier than a network without dhcp): answering pxe clients only; pass --dhcp-mode server to hand out addresses here`,
  alone: (p, where) =>
    `no dhcp server answered within ${p.elapsedMs} ms and ${where} carries no default route: serving addresses ourselves, probing again periodically to step down if a server appears`,
};

/** `--dhcp-mode auto`: the rule of auto-mode.ts, in IPv4's words. */
export function decideAutoMode(facts: AutoModeFacts): AutoDecision {
  return decideAuto(facts, AUTO_WORDS);
}
