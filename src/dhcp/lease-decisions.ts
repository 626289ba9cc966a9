/**
 * Decisions of the lease server (RFC 2131 section 4.3): from a decoded request, the lease table
 * and `now` to an action (a reply and where it goes, or a silent state change). No sockets, no
 * clock, no logging, no files: table-tested in test/dhcp/lease-decisions.test.ts.
 *
 * Boot data is the ProxyDHCP's (pxe.ts `classify` + `bootOptions`): a PXE client's OFFER/ACK
 * carries the lease *and* siaddr/file/60/43, so no separate proxy round is needed.
 */
import { BROADCAST_FLAG, BootOp, clientMac, encodePacket, getOption, type DhcpPacket } from './packet.js';
import { MessageType, Opt, ipOption, messageTypeOption, readOptions, serverIdOption, textOption, type DhcpOption, type TypedOptions } from './options.js';
import { readIp } from './wire.js';
import { bootOptions, bootRefusal, classify, type BootConfig, type BootDecision, type Destination } from './pxe.js';
import { clientRef, type ClientRef, type LeasePool, type Reservation } from './leases.js';
import { leaseSource, type LeaseRateLimiter } from './lease-rate.js';
import { admissionRefusal, broadcastOf, inSubnet, numberToIp, type Subnet } from './subnet.js';

/** Option codes the server mode writes besides those of options.ts. */
export const LeaseOpt = {
  HOSTNAME: 12,
  DNS: 6,
  DOMAIN: 15,
  BROADCAST: 28,
  MESSAGE: 56,
  RENEWAL_T1: 58,
  REBINDING_T2: 59,
  RELAY_AGENT_INFO: 82,
} as const;

/** One network the server hands addresses on: the interface's own, or one behind a relay. */
export interface LeaseNetwork {
  subnet: Subnet;
  router?: string | undefined;
  dns?: string[] | undefined;
  domain?: string | undefined;
}

/** Everything a decision needs besides the request, the pool and the time. */
export interface ServerModeConfig {
  /** Our address: option 54, siaddr for boot, host of the boot URLs. */
  serverAddress: string;
  /** The first network is the one on our interface; others are reached by relays (giaddr). */
  networks: LeaseNetwork[];
  /** Lease time in seconds. */
  leaseTime: number;
  /** Boot decisions (pxe.ts). */
  boot: BootConfig;
  /** Client port (68), relay port (67) and limited broadcast: seams for loopback tests. */
  clientPort?: number | undefined;
  relayPort?: number | undefined;
  broadcastAddress?: string | undefined;
}

/** What happened, for logs, events and persistence. */
export type ServerAction =
  | {
      kind: 'ignore';
      reason: string;
      level: 'debug' | 'warn';
      mac: string;
      xid: number;
      /** Why a client that should get an address does not: the pool is full, or its segment's new-lease budget is spent. */
      refused?: 'exhausted' | 'rate';
    }
  | {
      kind: 'reply';
      type: 'offer' | 'ack' | 'nak' | 'inform';
      mac: string;
      xid: number;
      packet: DhcpPacket;
      to: Destination;
      /** Address given (yiaddr), or the one refused for a NAK, or ciaddr for INFORM. */
      ip?: string;
      /** NAK reason. */
      reason?: string;
      /** NAK of a claim for an address reserved for another MAC: that MAC. */
      claimOf?: string;
      /** Boot data included, when the client is PXE/iPXE/HTTP boot. */
      boot?: { file: string; firmware: string; client: string };
      hostname?: string;
      /** The lease table changed in a way worth writing before the reply goes out (ACK). */
      persist: boolean;
    }
  | { kind: 'silent'; type: 'release' | 'decline' | 'abandon'; mac: string; xid: number; ip?: string; persist: boolean; reason?: string };

/** The requested address, option 50 (RFC 2132 section 9.1). */
export function requestedAddress(packet: DhcpPacket): string | undefined {
  const d = getOption(packet, Opt.REQUESTED_IP);
  return d && d.length === 4 ? readIp(d) : undefined;
}

/**
 * The network a request belongs to: by giaddr for relayed ones (RFC 2131 section 4.3.1; the
 * longest matching prefix wins), else ours (the first).
 */
export function selectNetwork(packet: Pick<DhcpPacket, 'giaddr' | 'ciaddr'>, networks: LeaseNetwork[]): LeaseNetwork | undefined {
  // A configured client behind a relay renews by unicast to us (RFC 2131 section 4.4.5), without
  // giaddr: its ciaddr says which network it is on.
  const key = packet.giaddr !== '0.0.0.0' ? packet.giaddr : packet.ciaddr !== '0.0.0.0' ? packet.ciaddr : undefined;
  if (key === undefined) return networks[0];
  let best: LeaseNetwork | undefined;
  for (const n of networks) if (inSubnet(key, n.subnet) && (!best || n.subnet.prefix > best.subnet.prefix)) best = n;
  return best ?? (packet.giaddr === '0.0.0.0' ? networks[0] : undefined);
}

function maskOf(subnet: Subnet): string {
  return numberToIp(subnet.prefix === 0 ? 0 : (0xffffffff << (32 - subnet.prefix)) >>> 0);
}

// Options that follow from configuration alone (lease time, a network's mask, broadcast, router,
// DNS, domain), made once and shared by every reply: encodePacket only reads option data.
let leaseTimes: { leaseTime: number; options: readonly DhcpOption[] } | undefined;
const NETWORK_OPTIONS = new WeakMap<LeaseNetwork, readonly DhcpOption[]>();

/** 51, 58 and 59: T1 = 0.5 and T2 = 0.875 of the lease (RFC 2131 section 4.4.5), as dnsmasq sends them. */
function leaseTimeOptions(leaseTime: number): readonly DhcpOption[] {
  if (leaseTimes?.leaseTime !== leaseTime) {
    const options = [
      u32Option(Opt.LEASE_TIME, leaseTime),
      u32Option(LeaseOpt.RENEWAL_T1, leaseTime * 0.5),
      u32Option(LeaseOpt.REBINDING_T2, leaseTime * 0.875),
    ];
    leaseTimes = { leaseTime, options: options.map((o) => Object.freeze(o)) };
  }
  return leaseTimes.options;
}

/** 1, 28, and 3, 6, 15 where the network has them. */
function networkOptions(net: LeaseNetwork): readonly DhcpOption[] {
  let options = NETWORK_OPTIONS.get(net);
  if (options === undefined) {
    const list = [ipOption(Opt.SUBNET_MASK, maskOf(net.subnet)), ipOption(LeaseOpt.BROADCAST, broadcastOf(net.subnet))];
    if (net.router !== undefined) list.push(ipOption(Opt.ROUTER, net.router));
    if (net.dns !== undefined && net.dns.length > 0) list.push({ code: LeaseOpt.DNS, data: Buffer.concat(net.dns.map((d) => ipOption(LeaseOpt.DNS, d).data)) });
    if (net.domain !== undefined && net.domain !== '') list.push(textOption(LeaseOpt.DOMAIN, net.domain));
    options = list.map((o) => Object.freeze(o));
    NETWORK_OPTIONS.set(net, options);
  }
  return options;
}

function u32Option(code: number, value: number): DhcpOption {
  const data = Buffer.alloc(4);
  data.writeUInt32BE(Math.max(0, Math.min(0xffffffff, Math.floor(value))));
  return { code, data };
}

/**
 * Order options: 53 and 54 first, then the lease times, then what the client asked for in the
 * order of its option 55 (RFC 2132 section 9.8: "MUST try to insert the requested options in the
 * order requested"), then the rest in our order.
 */
export function orderOptions(options: DhcpOption[], parameterList: number[] | undefined): DhcpOption[] {
  // Each option's rank once (not twice per comparison), then a stable insertion sort: a reply
  // has about a dozen options.
  const ranks = options.map((o) => {
    const f = FIXED_ORDER.indexOf(o.code);
    if (f >= 0) return f;
    const p = parameterList?.indexOf(o.code) ?? -1;
    return p >= 0 ? 100 + p : 1000;
  });
  const out = options.slice();
  for (let i = 1; i < out.length; i++) {
    const option = out[i]!;
    const rank = ranks[i]!;
    let j = i - 1;
    while (j >= 0 && ranks[j]! > rank) {
      out[j + 1] = out[j]!;
      ranks[j + 1] = ranks[j]!;
      j--;
    }
    out[j + 1] = option;
    ranks[j + 1] = rank;
  }
  return out;
}

const FIXED_ORDER: readonly number[] = [Opt.MESSAGE_TYPE, Opt.SERVER_ID, Opt.LEASE_TIME, LeaseOpt.RENEWAL_T1, LeaseOpt.REBINDING_T2];

/**
 * Largest DHCP payload the client takes: option 57 counts the whole IP datagram (RFC 2132
 * section 9.10, minimum 576), less 20 octets IP and 8 UDP header. Without 57 RFC 2131 section 2
 * guarantees 576.
 */
export function maxPayload(request: TypedOptions): number {
  return Math.max(576, request.maxMessageSize ?? 576) - 28;
}

/** Options never dropped to fit option 57: without them the reply means nothing. */
const ESSENTIAL = new Set<number>([Opt.MESSAGE_TYPE, Opt.SERVER_ID, Opt.LEASE_TIME, Opt.SUBNET_MASK, Opt.VENDOR_CLASS, Opt.BOOTFILE]);

/**
 * The bytes fitToSize() encoded for the packet it returned: the sender sends them instead of
 * encoding the same reply a second time (that showed in the DORA profile).
 */
const FITTED = new WeakMap<DhcpPacket, Buffer>();

/** The wire bytes of a reply: those fitToSize() already encoded, or a fresh encoding. */
export function encodeReply(packet: DhcpPacket): Buffer {
  return FITTED.get(packet) ?? encodePacket(packet);
}

/** Drop optional options from the end until the encoded packet fits `limit` octets. */
export function fitToSize(packet: DhcpPacket, limit: number): DhcpPacket {
  const options = [...packet.options];
  let candidate = { ...packet, options };
  for (;;) {
    const bytes = encodePacket(candidate);
    if (bytes.length <= limit) {
      FITTED.set(candidate, bytes);
      break;
    }
    let dropAt = -1;
    for (let i = options.length - 1; i >= 0; i--) {
      if (!ESSENTIAL.has(options[i]!.code)) {
        dropAt = i;
        break;
      }
    }
    if (dropAt < 0) break;
    options.splice(dropAt, 1);
    candidate = { ...packet, options };
  }
  return candidate;
}

/**
 * Where a server-mode reply goes (RFC 2131 section 4.1):
 *  - relayed (giaddr set): to the relay, port 67, NAKs too;
 *  - NAK without relay: broadcast ("In all cases, when giaddr is zero, the server broadcasts any
 *    DHCPNAK messages to 0xffffffff");
 *  - ciaddr set (RENEWING/REBINDING ACK, INFORM): unicast to ciaddr:68;
 *  - otherwise broadcast to 255.255.255.255:68. RFC 2131 would unicast to yiaddr at chaddr when
 *    the broadcast bit is clear, which needs an ARP entry injected by hand (dnsmasq does it with
 *    an ioctl); Node cannot, and every client must accept broadcast replies anyway.
 */
export function serverReplyDestination(
  request: DhcpPacket,
  type: 'offer' | 'ack' | 'nak' | 'inform',
  config: Pick<ServerModeConfig, 'clientPort' | 'relayPort' | 'broadcastAddress'>,
): Destination {
  const clientPort = config.clientPort ?? 68;
  if (request.giaddr !== '0.0.0.0') return { address: request.giaddr, port: config.relayPort ?? 67, broadcast: false };
  if (type !== 'nak' && request.ciaddr !== '0.0.0.0') return { address: request.ciaddr, port: clientPort, broadcast: false };
  return { address: config.broadcastAddress ?? '255.255.255.255', port: clientPort, broadcast: true };
}

interface ReplyParts {
  type: 'offer' | 'ack' | 'nak' | 'inform';
  yiaddr: string;
  network?: LeaseNetwork;
  reservation?: Reservation;
  boot?: BootDecision;
}

function buildReply(
  request: DhcpPacket,
  typed: TypedOptions,
  parts: ReplyParts,
  config: ServerModeConfig,
): { packet: DhcpPacket; boot?: { file: string; firmware: string; client: string } } {
  const messageType = parts.type === 'offer' ? MessageType.OFFER : parts.type === 'nak' ? MessageType.NAK : MessageType.ACK;
  const options: DhcpOption[] = [messageTypeOption(messageType), serverIdOption(config.serverAddress)];
  if (parts.type === 'nak') {
    // RFC 2131 table 3: a NAK carries 53, 54 and optionally a message; every address field is 0.
    return {
      packet: {
        op: BootOp.REPLY,
        htype: request.htype,
        hlen: request.hlen,
        hops: 0,
        xid: request.xid,
        secs: 0,
        flags: request.giaddr !== '0.0.0.0' ? request.flags | BROADCAST_FLAG : request.flags,
        ciaddr: '0.0.0.0',
        yiaddr: '0.0.0.0',
        siaddr: '0.0.0.0',
        giaddr: request.giaddr,
        chaddr: Buffer.from(request.chaddr),
        sname: '',
        file: '',
        options,
      },
    };
  }
  if (parts.type !== 'inform') {
    // T1 = 0.5 and T2 = 0.875 of the lease (RFC 2131 section 4.4.5), as dnsmasq sends them.
    options.push(...leaseTimeOptions(config.leaseTime));
  }
  const net = parts.network;
  if (net) options.push(...networkOptions(net));
  if (parts.reservation?.hostname !== undefined) options.push(textOption(LeaseOpt.HOSTNAME, parts.reservation.hostname));

  let siaddr = '0.0.0.0';
  let sname = '';
  let file = '';
  let boot: { file: string; firmware: string; client: string } | undefined;
  if (parts.boot) {
    const params = bootOptions(parts.boot, config.boot);
    siaddr = params.siaddr;
    sname = params.sname;
    options.push(...params.options);
    // The file field holds 127 characters and a NUL; longer URLs go in option 67 (RFC 2132 9.5).
    if (Buffer.byteLength(params.file, 'latin1') > 127) options.push(textOption(Opt.BOOTFILE, params.file));
    else file = params.file;
    boot = { file: params.file, firmware: parts.boot.firmware, client: parts.boot.client };
  }
  const packet: DhcpPacket = {
    op: BootOp.REPLY,
    htype: request.htype,
    hlen: request.hlen,
    hops: 0,
    xid: request.xid,
    secs: 0,
    flags: request.flags,
    // RFC 2131 table 3: ciaddr is 0 in an OFFER, the request's ciaddr in an ACK.
    ciaddr: parts.type === 'offer' ? '0.0.0.0' : request.ciaddr,
    yiaddr: parts.yiaddr,
    siaddr,
    giaddr: request.giaddr,
    chaddr: Buffer.from(request.chaddr),
    sname,
    file,
    options: orderOptions(options, typed.parameterRequestList),
  };
  return { packet: fitToSize(packet, maxPayload(typed)), ...(boot ? { boot } : {}) };
}

/**
 * Decide what to do with one request on port 67. Mutates `pool` (offers, bindings, releases,
 * declines) and `newLeases` (the per-segment budget, lease-rate.ts); never throws for a packet
 * `decodePacket` accepted.
 */
export function handleServerRequest(
  packet: DhcpPacket,
  source: { address: string; port: number },
  pool: LeasePool,
  config: ServerModeConfig,
  now: number,
  newLeases?: LeaseRateLimiter,
): ServerAction {
  const mac = clientMac(packet);
  const xid = packet.xid;
  const ignore = (reason: string, level: 'debug' | 'warn' = 'debug'): ServerAction => ({ kind: 'ignore', reason, level, mac, xid });
  if (packet.op !== BootOp.REQUEST) return ignore(`op ${packet.op} is a reply, not a client request`);
  let typed: TypedOptions;
  try {
    typed = readOptions(packet);
  } catch (err) {
    return ignore((err as Error).message, 'warn');
  }
  const type = typed.messageType;
  if (type === undefined) return ignore('no message type (option 53): bootp clients are not served');
  if (packet.hlen === 0 || packet.hlen > 16) return ignore(`hardware address length ${packet.hlen}`, 'warn');
  const local = config.networks[0];
  if (!local) return ignore('no network configured', 'warn');
  const refusal = admissionRefusal(
    packet,
    source.address,
    local.subnet,
    true,
    config.networks.slice(1).map((n) => n.subnet),
  );
  if (refusal) return ignore(refusal);
  const network = selectNetwork(packet, config.networks);
  if (!network) return ignore(`relayed by ${packet.giaddr}, which is on no served network`);
  // Reservations belong to their MAC (RFC 2131 keys leases by client id, but a machine record
  // names a MAC): whatever option 61 says, a reserved machine's lease is its MAC's, so a made-up
  // client id neither takes nor blocks it, and a client that switches to a DUID keeps it.
  const reservation = pool.reservationFor(mac, network.subnet);
  const client: ClientRef = reservation ? clientRef(mac) : clientRef(mac, typed.clientId);
  /** Undefined when the client may take a lease now; else why not (its segment's budget is spent). */
  const newLeaseRefusal = (): string | undefined => {
    if (!newLeases || reservation || pool.holdsLease(client, now)) return undefined;
    const from = leaseSource(packet);
    return newLeases.take(from, now) ? undefined : `new-lease budget of ${from === 'local' ? 'the local segment' : from} is spent`;
  };
  const serverId = typed.serverId;
  const leaseMs = config.leaseTime * 1000;
  const bootFor = (): BootDecision | undefined => {
    const d = classify(packet, { port: 'dhcp', serverAddress: config.serverAddress, answerRequestOn67: true });
    // A refused client (src/boot/loader.ts) still gets its lease, without boot data.
    return d.kind === 'boot' && bootRefusal(d, config.boot) === undefined ? d : undefined;
  };
  const relayInfo = packet.giaddr !== '0.0.0.0' ? getOption(packet, LeaseOpt.RELAY_AGENT_INFO) : undefined;
  const reply = (parts: ReplyParts, extra: { ip?: string; reason?: string; persist: boolean }): ServerAction => {
    const built = buildReply(packet, typed, parts, config);
    // RFC 3046 section 2.2: echo the relay agent information option, last, in every reply; the
    // relay strips it and uses it to deliver the reply (never trimmed for option 57).
    // A new packet object, not a push: the fitted one's bytes are remembered (encodeReply).
    if (relayInfo) built.packet = { ...built.packet, options: [...built.packet.options, { code: LeaseOpt.RELAY_AGENT_INFO, data: Buffer.from(relayInfo) }] };
    const hostname = parts.reservation?.hostname;
    return {
      kind: 'reply',
      type: parts.type,
      mac,
      xid,
      packet: built.packet,
      to: serverReplyDestination(packet, parts.type, config),
      ...(extra.ip !== undefined ? { ip: extra.ip } : {}),
      ...(extra.reason !== undefined ? { reason: extra.reason } : {}),
      ...(built.boot ? { boot: built.boot } : {}),
      ...(hostname !== undefined ? { hostname } : {}),
      persist: extra.persist,
    };
  };
  const nak = (ip: string | undefined, reason: string, claimOf?: string): ServerAction => {
    const action = reply({ type: 'nak', yiaddr: '0.0.0.0' }, { ...(ip !== undefined ? { ip } : {}), reason, persist: false });
    return claimOf !== undefined && action.kind === 'reply' ? { ...action, claimOf } : action;
  };
  const ackFor = (ip: string): ServerAction => {
    const owner = pool.reservedFor(ip);
    if (owner !== undefined && owner !== client.mac) return nak(ip, `${ip} is reserved for ${owner}`, owner);
    const limited = newLeaseRefusal();
    // An unknown client past the budget gets silence, not a NAK (RFC 2131 section 4.3.2 lets a
    // server stay silent for a client it has no record of); it retries later.
    if (limited) return { kind: 'ignore', reason: limited, level: 'warn', mac, xid, refused: 'rate' };
    const result = pool.request(client, ip, network.subnet, now, leaseMs);
    if (!result.ok) return nak(ip, result.reason);
    const boot = bootFor();
    return reply(
      { type: 'ack', yiaddr: ip, network, ...(result.reservation ? { reservation: result.reservation } : {}), ...(boot ? { boot } : {}) },
      { ip, persist: true },
    );
  };

  switch (type) {
    case MessageType.DISCOVER: {
      const limited = newLeaseRefusal();
      if (limited) return { kind: 'ignore', reason: limited, level: 'warn', mac, xid, refused: 'rate' };
      const result = pool.offer(client, network.subnet, now, requestedAddress(packet));
      if (!result.ok) return { kind: 'ignore', reason: result.reason, level: 'warn', mac, xid, ...(result.exhausted ? { refused: 'exhausted' as const } : {}) };
      const boot = bootFor();
      return reply(
        { type: 'offer', yiaddr: result.ip, network, ...(result.reservation ? { reservation: result.reservation } : {}), ...(boot ? { boot } : {}) },
        { ip: result.ip, persist: false },
      );
    }
    case MessageType.REQUEST: {
      const requested = requestedAddress(packet);
      if (serverId !== undefined) {
        // SELECTING (RFC 2131 section 4.3.2): the client names the server whose offer it took.
        if (serverId !== config.serverAddress) {
          const dropped = pool.abandonOffer(client, now);
          return { kind: 'silent', type: 'abandon', mac, xid, persist: dropped, reason: `client chose server ${serverId}` };
        }
        const ip = requested ?? (packet.ciaddr !== '0.0.0.0' ? packet.ciaddr : undefined);
        if (ip === undefined) return ignore('request names us but carries no requested address (option 50)', 'warn');
        return ackFor(ip);
      }
      if (requested !== undefined && packet.ciaddr === '0.0.0.0') {
        // INIT-REBOOT: verify the remembered address. Wrong network or taken -> NAK. With no record
        // of the client the RFC lets a server stay silent; being the only (authoritative) server
        // here, a free address is ACKed, as dnsmasq --dhcp-authoritative does (leases then
        // survive a lost lease file).
        if (!inSubnet(requested, network.subnet)) return nak(requested, `${requested} is not on ${network.subnet.cidr}`);
        return ackFor(requested);
      }
      if (packet.ciaddr !== '0.0.0.0') {
        // RENEWING (unicast) or REBINDING (broadcast): extend the lease on ciaddr.
        return ackFor(packet.ciaddr);
      }
      return ignore('request without server id, requested address or ciaddr', 'warn');
    }
    case MessageType.DECLINE: {
      if (serverId !== undefined && serverId !== config.serverAddress) return ignore(`decline for server ${serverId}`);
      const ip = requestedAddress(packet);
      if (ip === undefined) return ignore('decline without requested address (option 50)', 'warn');
      const done = pool.decline(client, ip, now);
      return { kind: 'silent', type: 'decline', mac, xid, ip, persist: done, ...(done ? {} : { reason: `${ip} is not leased to this client` }) };
    }
    case MessageType.RELEASE: {
      if (serverId !== undefined && serverId !== config.serverAddress) return ignore(`release for server ${serverId}`);
      const ip = packet.ciaddr;
      const done = pool.release(client, ip, now);
      return { kind: 'silent', type: 'release', mac, xid, ip, persist: done, ...(done ? {} : { reason: `${ip} is not leased to this client` }) };
    }
    case MessageType.INFORM: {
      // RFC 2131 section 4.3.5: configuration only; no yiaddr, no lease time, no lease check.
      if (packet.ciaddr === '0.0.0.0') return ignore('inform without ciaddr', 'warn');
      const boot = bootFor();
      const reservation = pool.reservationFor(mac, network.subnet);
      return reply(
        { type: 'inform', yiaddr: '0.0.0.0', network, ...(reservation?.ip === packet.ciaddr ? { reservation } : {}), ...(boot ? { boot } : {}) },
        { ip: packet.ciaddr, persist: false },
      );
    }
    default:
      return ignore(`message type ${type} is not a client message`);
  }
}
