/**
 * Is another DHCPv6 server on this link? The IPv6 twin of ../dhcp/probe.ts: from port 546 of
 * the lab interface, multicast a Solicit (with an IA_NA, so a stateful server advertises an
 * address, and with PXE's vendor class and client arch, so a PXE proxy answers too) and an
 * Information-request (a stateless server answers only that) to ff02::1:2, and collect every
 * Advertise or Reply that echoes our client DUID and names a server DUID other than ours.
 *
 * The probe's client DUID is a DUID-UUID derived from our address: stable across restarts, not
 * our server DUID, so our own server (which hears the multicast too while running) can ignore
 * it. Nothing is bound: the probe never sends a Request, and servers do not bind on Solicit.
 * Servers answer at once (clients wait 1 s for the first Advertise, RFC 8415 section 18.2.1),
 * so the default listen time is 3 s with three rounds of both messages.
 *
 * Layers: message building, answer reading and the auto decision are pure; `probeForDhcp6Server`
 * owns the socket (port 546 needs root or cap_net_bind_service, as 547 does).
 */
import dgram from 'node:dgram';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ApplianceError } from '../errors.js';
import type { Logger } from '../log.js';
import {
  decodeMessage,
  duidUuid,
  encodeArch,
  encodeElapsed,
  encodeIaNa,
  encodeMessage,
  encodeOro,
  encodeVendorClass,
  findOption,
  Msg6,
  Opt6,
  PXE_ENTERPRISE,
  readClientMessage,
  type Message6,
} from './packet.js';
import { decideAuto, type AutoDecision, type AutoFacts, type AutoWords } from '../dhcp/auto-mode.js';
import { readRouteTable } from '../dhcp/default-route.js';
import { sourceAddress } from './boot.js';

/** Error code of a probe that could not run (no such interface, port 546 not ours). */
export const ERR_DHCP6_PROBE = 'ERR_DHCP6_PROBE';

/** Default listen time. */
export const DEFAULT_PROBE6_TIMEOUT_MS = 3000;

/** All_DHCP_Relay_Agents_and_Servers. */
const ALL_SERVERS = 'ff02::1:2';

/** One server that answered. */
export interface Probe6Answer {
  /** Its DUID (option 2), hex. */
  duid: string;
  /** Source address of its answer. */
  from: string;
  /** Addresses it advertised (a stateful server). */
  addresses: string[];
  /** It answered with a boot-file URL or vendor class PXEClient (a PXE responder). */
  pxe: boolean;
  /** Advertise or Reply. */
  messageType: 'advertise' | 'reply';
}

/** Result of a probe. */
export interface Probe6Result {
  found: boolean;
  servers: Probe6Answer[];
  elapsedMs: number;
}

/** The probe's client DUID for our address (a DUID-UUID, never our server DUID). */
export function probeClientDuid(address: string): Buffer {
  return duidUuid(createHash('sha256').update(`netboot-appliance dhcpv6 probe ${address}`).digest().subarray(0, 16));
}

/** The Solicit and the Information-request of one round. */
export function buildProbeMessages(duid: Buffer, solicitXid: number, informXid: number): Message6[] {
  const common = [
    { code: Opt6.CLIENT_ID, data: duid },
    encodeElapsed(0),
    encodeOro([Opt6.DNS_SERVERS, Opt6.DOMAIN_LIST, Opt6.BOOTFILE_URL]),
    encodeArch([7]),
    encodeVendorClass({ enterprise: PXE_ENTERPRISE, items: [Buffer.from('PXEClient:Arch:00007:UNDI:003000')] }),
  ];
  return [
    { type: Msg6.SOLICIT, transactionId: solicitXid, options: [...common, encodeIaNa({ iaid: 1, t1: 0, t2: 0, addresses: [] })] },
    { type: Msg6.INFORMATION_REQUEST, transactionId: informXid, options: common },
  ];
}

/** What the probe expects of an answer. */
export interface Probe6Expect {
  duid: Buffer;
  xids: ReadonlySet<number>;
  /** Our own server DUID: never "another" server. */
  ownServerDuid?: Buffer;
}

/** Read one datagram: an answer from another server to this probe, or undefined. Never throws. */
export function readProbeAnswer(buf: Buffer, from: string, expect: Probe6Expect): Probe6Answer | undefined {
  let msg: Message6;
  let view: ReturnType<typeof readClientMessage>;
  try {
    msg = decodeMessage(buf);
    view = readClientMessage(msg);
  } catch {
    return undefined;
  }
  if (msg.type !== Msg6.ADVERTISE && msg.type !== Msg6.REPLY) return undefined;
  if (!expect.xids.has(msg.transactionId) || !view.clientId?.raw.equals(expect.duid) || !view.serverId) return undefined;
  if (expect.ownServerDuid && view.serverId.equals(expect.ownServerDuid)) return undefined;
  const vendor = view.vendorClass?.items.some((i) => /^(PXEClient|HTTPClient)/.test(i.toString('latin1'))) ?? false;
  return {
    duid: view.serverId.toString('hex'),
    from: sourceAddress(from),
    addresses: view.iaNa.flatMap((ia) => ia.addresses.filter((a) => a.validLifetime > 0).map((a) => a.address)),
    pxe: vendor || findOption(msg.options, Opt6.BOOTFILE_URL) !== undefined,
    messageType: msg.type === Msg6.ADVERTISE ? 'advertise' : 'reply',
  };
}

/** Merge an answer into the list (one entry per server DUID, addresses and pxe combined). */
export function mergeAnswer(list: Probe6Answer[], a: Probe6Answer): boolean {
  const seen = list.find((s) => s.duid === a.duid);
  if (!seen) {
    list.push(a);
    return true;
  }
  for (const x of a.addresses) if (!seen.addresses.includes(x)) seen.addresses.push(x);
  seen.pxe ||= a.pxe;
  return false;
}

/** `fe80::1 (DUID 000300...)` for error messages and logs. */
export function describeServers6(list: readonly Probe6Answer[]): string {
  return list.map((s) => `${s.from} (DUID ${s.duid}${s.addresses.length > 0 ? ', advertised ' + s.addresses.join(' ') : ''})`).join(', ');
}

/** Options of {@link probeForDhcp6Server}. */
export interface Probe6Options {
  /** The lab interface (the probe leaves by it). */
  interface: string;
  /** Our address (the probe DUID is derived from it). */
  address: string;
  ownServerDuid?: Buffer;
  timeoutMs?: number;
  /** Rounds of both messages, spread over the timeout (default 3). */
  attempts?: number;
  /** After the first answer, listen this long for more (default 300 ms). */
  settleMs?: number;
  /** Client and server ports (546/547); seams for tests. */
  clientPort?: number;
  serverPort?: number;
  /** Destination (ff02::1:2%IFACE); a seam for tests. */
  destination?: string;
  log: Logger;
}

/**
 * Probe the link of `interface`; resolves `found: false` when nobody answers. Rejects with
 * ERR_DHCP6_PROBE when the socket cannot be opened.
 */
export async function probeForDhcp6Server(options: Probe6Options): Promise<Probe6Result> {
  const log = options.log.child({ subsystem: 'dhcp6-probe' });
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE6_TIMEOUT_MS;
  const attempts = Math.max(1, Math.min(options.attempts ?? 3, 10));
  const settleMs = options.settleMs ?? 300;
  const duid = probeClientDuid(options.address);
  const xids = new Set<number>();
  const rounds = Array.from({ length: attempts }, () => {
    const s = randomBytes(3).readUIntBE(0, 3);
    const i = s ^ 0x5a5a5a;
    xids.add(s).add(i);
    return buildProbeMessages(duid, s, i).map(encodeMessage);
  });
  const socket = dgram.createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(options.clientPort ?? 546, '::', () => {
        socket.off('error', reject);
        socket.on('error', () => undefined);
        resolve();
      });
    });
    if (options.destination === undefined) socket.setMulticastInterface(`::%${options.interface}`);
  } catch (err) {
    socket.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw new ApplianceError(
      ERR_DHCP6_PROBE,
      `cannot open the dhcpv6 probe socket on port ${options.clientPort ?? 546} of ${options.interface}: ${code ?? (err as Error).message}${code === 'EACCES' ? '; port 546 needs root or cap_net_bind_service' : ''}`,
      { interface: options.interface, code },
      { cause: err },
    );
  }
  const destination = options.destination ?? `${ALL_SERVERS}%${options.interface}`;
  const started = Date.now();
  const servers: Probe6Answer[] = [];
  log.info({ interface: options.interface, duid: duid.toString('hex'), timeoutMs }, 'probing for another dhcpv6 server');
  return new Promise<Probe6Result>((resolve) => {
    const timers: NodeJS.Timeout[] = [];
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      timers.forEach(clearTimeout);
      socket.close(() => resolve({ found: servers.length > 0, servers, elapsedMs: Date.now() - started }));
    };
    socket.on('message', (msg, rinfo) => {
      if (done) return;
      const a = readProbeAnswer(msg, rinfo.address, { duid, xids, ...(options.ownServerDuid ? { ownServerDuid: options.ownServerDuid } : {}) });
      if (!a || !mergeAnswer(servers, a)) return;
      log.info({ serverDuid: a.duid, from: a.from, addresses: a.addresses, pxe: a.pxe }, 'another dhcpv6 server answered');
      if (servers.length === 1) timers.push(setTimeout(finish, settleMs));
    });
    rounds.forEach((round, i) => {
      timers.push(
        setTimeout(
          () => {
            for (const bytes of round)
              socket.send(bytes, options.serverPort ?? 547, destination, (err) => {
                if (err) log.warn({ code: (err as NodeJS.ErrnoException).code, interface: options.interface }, 'dhcpv6 probe send failed');
              });
          },
          Math.floor((timeoutMs * i) / (attempts + 1)),
        ),
      );
    });
    timers.push(setTimeout(finish, timeoutMs));
  });
}

/** Interfaces with an IPv6 default route, from a /proc/net/ipv6_route text (pure). */
export function parseDefaultRoute6Interfaces(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    // dest destlen src srclen nexthop metric refcnt use flags iface
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10) continue;
    const iface = cols[9]!;
    if (/^0{32}$/.test(cols[0]!) && cols[1] === '00' && iface !== 'lo' && (parseInt(cols[8]!, 16) & 1) === 1 && !out.includes(iface)) out.push(iface);
  }
  return out;
}

/** Interfaces carrying an IPv6 default route here; [] when it cannot be read. */
export function defaultRoute6Interfaces(read: () => string = () => readFileSync('/proc/net/ipv6_route', 'utf8')): string[] {
  return readRouteTable(read, parseDefaultRoute6Interfaces);
}

/** What `--dhcp6-mode auto` knows (carriesDefaultRoute: an IPv4 or IPv6 default route). */
export type Auto6Facts = AutoFacts<Probe6Result>;

/** The DHCPv6 wording of the auto-mode reasons (the log line). */
const AUTO6_WORDS: AutoWords<Probe6Result> = {
  notProbed: 'the dhcpv6 port is not 547, so the link was not probed: answering pxe clients only; pass --dhcp6-mode server to lease addresses',
  answered: (p) => `dhcpv6 server ${describeServers6(p.servers)} answered the probe: answering pxe clients beside it`,
  uplink: (p, where) =>
    `no dhcpv6 server answered within ${p.elapsedMs} ms, but ${where} carries a default route (an uplink): answering pxe clients only; pass --dhcp6-mode server to lease addresses here`,
  alone: (p, where) =>
    `no dhcpv6 server answered within ${p.elapsedMs} ms and ${where} carries no default route: leasing addresses ourselves, probing again periodically to step down if a server appears`,
};

/** `--dhcp6-mode auto`: the rule of ../dhcp/auto-mode.ts (as `--dhcp-mode auto`), in DHCPv6's words. */
export function decideAuto6(facts: Auto6Facts): AutoDecision {
  return decideAuto(facts, AUTO6_WORDS);
}
