/**
 * PXE boot decisions: pure functions from a decoded request to a decision and a reply packet.
 * No sockets, no clock, no logging: everything here is table-tested.
 *
 * Flow (ProxyDHCP, RFC 4578 + PXE 2.1 + what dnsmasq, Pixiecore and smee do):
 *  - `classify()` says whether a request is ours and what the client is (firmware PXE, UEFI HTTP
 *    boot, or already iPXE) and for which architecture.
 *  - `bootOptions()` says what to put in any reply for that client (siaddr, sname, file, options
 *    60/97/43); a later full DHCP server reuses it next to its lease options.
 *  - `buildProxyReply()` builds the ProxyDHCP OFFER (port 67) or ACK (port 4011) and says where
 *    to send it (`replyDestination()`).
 */
import { BROADCAST_FLAG, BootOp, clientMac, type DhcpPacket } from './packet.js';
import { MessageType, Opt, messageTypeOption, readOptions, serverIdOption, textOption, type DhcpOption, type TypedOptions } from './options.js';
import { encodePxeVendorOptions } from './vendor-options.js';
import { ARCHITECTURES, DEFAULT_BOOT_FILES, type BootFiles, type Firmware } from '../boot-catalogue.js';

export { ARCHITECTURES, DEFAULT_BOOT_FILES, type BootFiles, type Firmware } from '../boot-catalogue.js';

/** Which socket a request arrived on: 67 (`dhcp`) or 4011 (`proxy`, the PXE boot server port). */
export type PortRole = 'dhcp' | 'proxy';

/**
 * What stage the client is at: firmware PXE (wants an iPXE binary by TFTP), UEFI HTTP boot
 * (wants an iPXE binary by URL), or already iPXE (wants the boot script, never the binary again).
 */
export type ClientStage = 'pxe' | 'http' | 'ipxe';

/** Facts about the request that are not in the packet. */
export interface ClassifyContext {
  /** Socket the request arrived on. */
  port: PortRole;
  /** Our advertised IPv4 address (option 54 of our replies). */
  serverAddress: string;
  /**
   * Answer DHCPREQUEST on 67 with an ACK (smee does). Default false (dnsmasq, Pixiecore): the
   * REQUEST on 67 belongs to the real DHCP server, and PXE clients come to 4011 for boot data.
   */
  answerRequestOn67?: boolean;
}

/** Decision: not ours (a value, not an exception). `pxe` marks broken/unsupported PXE traffic (warn) versus noise (debug). */
export interface IgnoreDecision {
  kind: 'ignore';
  reason: string;
  pxe: boolean;
  mac?: string;
  xid?: number;
}

/** Decision: a PXE/HTTP/iPXE client to answer. */
export interface BootDecision {
  kind: 'boot';
  mac: string;
  xid: number;
  /** Option 53 of the request (DISCOVER, REQUEST or INFORM). */
  messageType: number;
  /** Architecture code from option 93 (or the `Arch:` field of option 60). */
  archCode: number;
  firmware: Firmware;
  client: ClientStage;
  port: PortRole;
  /** The request's typed options (for echoing 97 and 43.71). */
  request: TypedOptions;
}

/** Result of `classify`. */
export type Classification = IgnoreDecision | BootDecision;

function ignore(reason: string, pxe: boolean, packet?: DhcpPacket): IgnoreDecision {
  return packet ? { kind: 'ignore', reason, pxe, mac: clientMac(packet), xid: packet.xid } : { kind: 'ignore', reason, pxe };
}

/** True when the request comes from iPXE: user class `iPXE` (77, raw or RFC 3004) or option 175. */
export function isIpxe(options: TypedOptions): boolean {
  return options.ipxe !== undefined || (options.userClass?.classes.includes('iPXE') ?? false);
}

/**
 * Classify a decoded request. Never throws for any packet `decodePacket` accepted. `typed` is
 * the packet's typed options when the caller read them already (decodeDatagram).
 */
export function classify(packet: DhcpPacket, context: ClassifyContext, typed?: TypedOptions): Classification {
  if (packet.op !== BootOp.REQUEST) return ignore(`op ${packet.op} is a reply, not a client request`, false, packet);
  let options: TypedOptions;
  try {
    options = typed ?? readOptions(packet);
  } catch (err) {
    return ignore(err instanceof Error ? err.message : 'unreadable options', false, packet);
  }
  const vendorClass = options.vendorClass ?? '';
  const pxeClient = vendorClass.startsWith('PXEClient');
  const httpClient = vendorClass.startsWith('HTTPClient');
  if (!pxeClient && !httpClient) {
    return ignore(
      vendorClass ? `vendor class ${JSON.stringify(vendorClass.slice(0, 32))} is not PXEClient/HTTPClient` : 'no vendor class (option 60): not a pxe client',
      false,
      packet,
    );
  }
  const messageType = options.messageType;
  if (messageType === undefined) return ignore('no message type (option 53): bootp is not answered', true, packet);
  if (packet.htype !== 1 || packet.hlen !== 6) {
    return ignore(`hardware type ${packet.htype} length ${packet.hlen} is not ethernet`, true, packet);
  }

  let archCode = options.clientArch?.[0];
  if (archCode === undefined) {
    // PXE 2.1 requires 93, but the same code is in 60 (`PXEClient:Arch:00007:...`).
    const m = /:Arch:(\d{5})/.exec(vendorClass);
    if (m) archCode = Number(m[1]);
  }
  if (archCode === undefined) return ignore('no client architecture (option 93 or Arch: in option 60)', true, packet);
  const arch = ARCHITECTURES.get(archCode);
  if (!arch) return ignore(`client architecture ${archCode} is not supported`, true, packet);

  if (options.serverId !== undefined && options.serverId !== context.serverAddress) {
    return ignore(`request names server ${options.serverId}, not us`, false, packet);
  }

  if (context.port === 'dhcp') {
    if (messageType === MessageType.DISCOVER) {
      // fall through to boot
    } else if ((messageType === MessageType.REQUEST || messageType === MessageType.INFORM) && context.answerRequestOn67 === true) {
      // smee style: ACK the REQUEST on 67 too.
    } else {
      return ignore(`message type ${messageType} on port 67 is for the dhcp server; proxydhcp answers discover here and requests on 4011`, false, packet);
    }
  } else if (messageType !== MessageType.REQUEST && messageType !== MessageType.INFORM) {
    return ignore(`message type ${messageType} on port 4011, expected request or inform`, true, packet);
  }

  const client: ClientStage = isIpxe(options) ? 'ipxe' : httpClient || arch.http ? 'http' : 'pxe';
  if (client === 'http' && !httpClient) {
    return ignore(`architecture ${archCode} is uefi http boot but vendor class is ${JSON.stringify(vendorClass.slice(0, 32))}`, true, packet);
  }
  return {
    kind: 'boot',
    mac: clientMac(packet),
    xid: packet.xid,
    messageType,
    archCode,
    firmware: arch.firmware,
    client,
    port: context.port,
    request: options,
  };
}

/** How to answer firmware PXE on port 67: give the boot file at once, or defer to 4011. */
export type On67Style = 'boot-file' | 'defer';

/**
 * Per-client boot file choice made outside DHCP (src/boot/loader.ts: grub, shim for Secure
 * Boot): `file` replaces the firmware's default iPXE file (undefined keeps it); `refuse` means
 * the client is not answered with boot data, for the logged `reason`.
 */
export type BootFileChoice = { kind: 'file'; file: string | undefined } | { kind: 'refuse'; reason: string };

/** Chooses a firmware client's boot file; never called for clients that are already iPXE. */
export type BootFileChooser = (boot: Pick<BootDecision, 'mac' | 'firmware' | 'client' | 'request'>) => BootFileChoice;

/** The chooser's refusal for a decision, if any (iPXE clients are never refused). */
export function bootRefusal(boot: BootDecision, config: Pick<BootConfig, 'chooseBootFile'>): string | undefined {
  if (boot.client === 'ipxe' || !config.chooseBootFile) return undefined;
  const choice = config.chooseBootFile(boot);
  return choice.kind === 'refuse' ? choice.reason : undefined;
}

/** Everything a boot decision needs besides the request. */
export interface BootConfig {
  /** Our advertised IPv4 address: siaddr, option 54, and the host in URLs. */
  serverAddress: string;
  /** HTTP port for the script and HTTP boot URLs. */
  httpPort: number;
  /** Boot file per firmware; missing keys take DEFAULT_BOOT_FILES. */
  bootFiles?: Partial<BootFiles>;
  /** URL for UEFI HTTP boot clients; default `http://ADDRESS:HTTP_PORT/boot/<file>`. */
  httpBootUrl?: (file: string) => string;
  /** URL iPXE gets; default `http://ADDRESS:HTTP_PORT/boot.ipxe`. */
  ipxeScriptUrl?: string;
  /**
   * How firmware PXE is answered on 67. Defaults: BIOS `boot-file` (Pixiecore: option 43
   * {6: 8} "skip discovery" + TFTP file, one round trip less); UEFI `defer` (dnsmasq and
   * Pixiecore: no 43 and no file, so EDK2 asks on 4011 — the fixtures are what booted OVMF here;
   * several UEFI firmwares ignore proxy offers that skip discovery). `boot-file` for UEFI is
   * smee's behaviour. Measured by hand with OVMF (EDK2, arch 7) under QEMU: both styles reach
   * boot.ipxe; SeaBIOS's iPXE ROM takes the script URL straight from the offer on 67.
   */
  pxeOn67?: { bios?: On67Style; uefi?: On67Style };
  /** Per-client boot file (grub, shim); default: `bootFiles` by firmware. */
  chooseBootFile?: BootFileChooser;
}

// Options every reply of a kind carries, made once: encodePacket only reads option data, and
// nothing changes an option after it is built (a buffer per option per reply showed in the
// ProxyDHCP answer path's profile).
const PXE_CLIENT_OPTION: DhcpOption = Object.freeze(textOption(Opt.VENDOR_CLASS, 'PXEClient'));
const HTTP_CLIENT_OPTION: DhcpOption = Object.freeze(textOption(Opt.VENDOR_CLASS, 'HTTPClient'));
const SKIP_DISCOVERY_OPTION: DhcpOption = Object.freeze({ code: Opt.VENDOR, data: encodePxeVendorOptions({ discoveryControl: 8 }) });

/** Boot fields and options to add to a reply for a boot decision. */
export interface BootParams {
  siaddr: string;
  sname: string;
  /** Boot file or URL; '' when deferring to 4011. */
  file: string;
  /** Options after 53/54, in dnsmasq's order: 60, 97, 43. */
  options: DhcpOption[];
  /** True when the reply sends the client on to port 4011 instead of naming a file. */
  deferred: boolean;
}

/** The file or URL a client should load next (ignoring the 67 "defer" style). */
export function selectBootFile(boot: Pick<BootDecision, 'client' | 'firmware'> & Partial<Pick<BootDecision, 'mac' | 'request'>>, config: BootConfig): string {
  const base = `http://${config.serverAddress}:${config.httpPort}`;
  if (boot.client === 'ipxe') return config.ipxeScriptUrl ?? `${base}/boot.ipxe`;
  const chosen =
    config.chooseBootFile && boot.mac !== undefined && boot.request !== undefined
      ? config.chooseBootFile({ mac: boot.mac, firmware: boot.firmware, client: boot.client, request: boot.request })
      : undefined;
  const file = (chosen?.kind === 'file' ? chosen.file : undefined) ?? config.bootFiles?.[boot.firmware] ?? DEFAULT_BOOT_FILES[boot.firmware];
  if (boot.client === 'http') return config.httpBootUrl ? config.httpBootUrl(file) : `${base}/boot/${file}`;
  return file;
}

/**
 * Fields and options for any reply (ProxyDHCP offer/ack, or a later full DHCP server's
 * offer/ack) to a boot decision. `port` 'proxy' (4011) always carries the file.
 */
export function bootOptions(boot: BootDecision, config: BootConfig): BootParams {
  const uuid = boot.request.clientUuid;
  const options: DhcpOption[] = [];
  // RFC 4578 / PXE 2.1: a proxy reply says PXEClient (or HTTPClient for UEFI HTTP boot, which
  // otherwise discards the offer) and echoes the client's UUID (97); some ROMs check both.
  options.push(boot.client === 'http' ? HTTP_CLIENT_OPTION : PXE_CLIENT_OPTION);
  if (uuid) options.push({ code: Opt.CLIENT_UUID, data: Buffer.from(uuid.raw) });

  const style = boot.firmware === 'bios' ? (config.pxeOn67?.bios ?? 'boot-file') : (config.pxeOn67?.uefi ?? 'defer');
  if (boot.port === 'dhcp' && boot.client === 'pxe' && style === 'defer') {
    // dnsmasq's reply to EDK2 on 67: siaddr, 54, 60, 97, no 43 and no file -> client asks on 4011.
    return { siaddr: config.serverAddress, sname: '', file: '', options, deferred: true };
  }

  const file = selectBootFile(boot, config);
  const bootItem = boot.request.pxe?.bootItem;
  if (boot.port === 'proxy' && bootItem) {
    // PXE 2.1 boot server ACK echoes the requested boot item; iPXE drops an ACK whose 43.71
    // type differs from the one it asked for (dnsmasq echoes it too).
    options.push({ code: Opt.VENDOR, data: encodePxeVendorOptions({ bootItem }) });
  } else if (boot.port === 'dhcp' && boot.client === 'pxe') {
    // PXE 2.1 discovery control bit 3: "boot file name is present, skip boot server discovery"
    // (Pixiecore and smee send exactly {6: 8}).
    options.push(SKIP_DISCOVERY_OPTION);
  }
  // dnsmasq names the TFTP server in sname as well as siaddr; URLs need no TFTP server.
  const sname = boot.client === 'pxe' ? config.serverAddress : '';
  return { siaddr: config.serverAddress, sname, file, options, deferred: false };
}

/** Where a reply goes. */
export interface Destination {
  address: string;
  port: number;
  /** True for a broadcast (the socket needs SO_BROADCAST). */
  broadcast: boolean;
}

/** Ports and broadcast address used by `replyDestination`; overridable for loopback tests. */
export interface DestinationOptions {
  /** UDP port of DHCP clients (68). */
  clientPort?: number;
  /** UDP port of relay agents (67). */
  relayPort?: number;
  /** Limited broadcast (255.255.255.255). */
  broadcastAddress?: string;
}

/**
 * Where to send a reply (RFC 2131 section 4.1, PXE 2.1 section 2.2.5):
 *  - 4011 requests: back to the source address and port (EDK2 sends from 4011 to 4011, iPXE from 68);
 *  - relayed (giaddr set): to the relay at giaddr:67;
 *  - client already has an address (ciaddr): unicast ciaddr:68;
 *  - otherwise broadcast to 255.255.255.255:68: a ProxyDHCP has no yiaddr to unicast to, so the
 *    broadcast flag cannot be honoured by unicast either way.
 */
export function replyDestination(
  request: DhcpPacket,
  port: PortRole,
  source: { address: string; port: number },
  options: DestinationOptions = {},
): Destination {
  const clientPort = options.clientPort ?? 68;
  const broadcastAddress = options.broadcastAddress ?? '255.255.255.255';
  if (port === 'proxy' && source.address !== '0.0.0.0') return { address: source.address, port: source.port, broadcast: false };
  if (request.giaddr !== '0.0.0.0') return { address: request.giaddr, port: options.relayPort ?? 67, broadcast: false };
  if (request.ciaddr !== '0.0.0.0') return { address: request.ciaddr, port: clientPort, broadcast: false };
  return { address: broadcastAddress, port: port === 'proxy' ? source.port : clientPort, broadcast: true };
}

/** A ProxyDHCP reply ready to encode and send. */
export interface ProxyReply {
  type: 'offer' | 'ack';
  packet: DhcpPacket;
  /** File or URL named in the reply ('' when deferred to 4011). */
  file: string;
  deferred: boolean;
}

/**
 * Build the ProxyDHCP reply to a boot decision: OFFER for DISCOVER, ACK for REQUEST/INFORM;
 * yiaddr 0 (a proxy assigns no address), ciaddr/giaddr/flags/chaddr copied, 53, 54 first.
 */
export function buildProxyReply(request: DhcpPacket, boot: BootDecision, config: BootConfig): ProxyReply {
  const params = bootOptions(boot, config);
  const type = boot.messageType === MessageType.DISCOVER ? 'offer' : 'ack';
  // The file field holds 128 bytes with its NUL; a longer URL goes in option 67 (RFC 2132
  // section 9.5), which iPXE and EDK2 HTTP boot both read.
  const longFile = Buffer.byteLength(params.file, 'latin1') > 127;
  const packet: DhcpPacket = {
    op: BootOp.REPLY,
    htype: request.htype,
    hlen: request.hlen,
    hops: 0,
    xid: request.xid,
    secs: 0,
    // RFC 2131 section 4.1: a client without an address cannot be unicast to (and a proxy has
    // no yiaddr), so the broadcast bit is set for relays; dnsmasq does the same for iPXE.
    flags: request.ciaddr === '0.0.0.0' ? request.flags | BROADCAST_FLAG : request.flags,
    ciaddr: request.ciaddr,
    yiaddr: '0.0.0.0',
    siaddr: params.siaddr,
    giaddr: request.giaddr,
    chaddr: Buffer.from(request.chaddr),
    sname: params.sname,
    file: longFile ? '' : params.file,
    options: [
      messageTypeOption(type === 'offer' ? MessageType.OFFER : MessageType.ACK),
      serverIdOption(config.serverAddress),
      ...params.options,
      ...(longFile ? [textOption(Opt.BOOTFILE, params.file)] : []),
    ],
  };
  return { type, packet, file: params.file, deferred: params.deferred };
}
