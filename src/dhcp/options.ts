/**
 * DHCP options by name: the option codes this project reads or writes (RFC 2132, RFC 4578,
 * iPXE's 175), builders for option values, and the typed view `readOptions()` that validates
 * and reads them out of a decoded packet. The header codec is packet.ts; the structured values
 * of options 43 and 77 are vendor-options.ts.
 *
 * Pure data in, data out. A malformed option raises `ERR_DHCP_DECODE` naming it.
 */
import { cString, decodeError, decodeSubOptions, ipBytes, readIp, type DhcpOption } from './wire.js';
import { decodePxeVendorOptions, decodeUserClass, type PxeVendorOptions, type UserClass } from './vendor-options.js';

export type { DhcpOption } from './wire.js';

/** DHCP message types, option 53 (RFC 2132 section 9.6). */
export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

/** Option codes this project reads or writes by name. */
export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  VENDOR: 43,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_LIST: 55,
  MAX_MESSAGE_SIZE: 57,
  VENDOR_CLASS: 60,
  CLIENT_ID: 61,
  TFTP_SERVER: 66,
  BOOTFILE: 67,
  USER_CLASS: 77,
  CLIENT_ARCH: 93,
  CLIENT_NDI: 94,
  CLIENT_UUID: 97,
  IPXE_ENCAP: 175,
  END: 255,
} as const;

// ---------------------------------------------------------------------------------------------
// Option value builders

/** Option with a one-octet value. */
export function u8Option(code: number, value: number): DhcpOption {
  return { code, data: Buffer.from([value & 0xff]) };
}

/** Option holding one IPv4 address. */
export function ipOption(code: number, ip: string): DhcpOption {
  return { code, data: ipBytes(ip, `option ${code}`) };
}

/**
 * Option 53 with `type`, made once per type: replies share it (encodePacket only reads option
 * data and nothing changes an option after it is built; a buffer per option per reply showed
 * in the DHCP answer paths' profiles).
 */
export function messageTypeOption(type: number): DhcpOption {
  let option = MESSAGE_TYPE_OPTIONS.get(type);
  if (option === undefined) {
    option = Object.freeze(u8Option(Opt.MESSAGE_TYPE, type));
    MESSAGE_TYPE_OPTIONS.set(type, option);
  }
  return option;
}

const MESSAGE_TYPE_OPTIONS = new Map<number, DhcpOption>();
let lastServerId: DhcpOption | undefined;
let lastServerAddress = '';

/** Option 54 for our address, shared by replies like messageTypeOption (one address per process: the last is kept). */
export function serverIdOption(address: string): DhcpOption {
  if (lastServerId === undefined || lastServerAddress !== address) {
    lastServerId = Object.freeze(ipOption(Opt.SERVER_ID, address));
    lastServerAddress = address;
  }
  return lastServerId;
}

/** Option holding text (latin1, no NUL). */
export function textOption(code: number, text: string): DhcpOption {
  return { code, data: Buffer.from(text, 'latin1') };
}

/** The octets of `data` as numbers. */
function octets(data: Uint8Array): number[] {
  const out = new Array<number>(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]!;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Typed view

/** Typed view of the options this project uses. Absent options are undefined. */
export interface TypedOptions {
  /** 53 */
  messageType?: number;
  /** 54 */
  serverId?: string;
  /** 55 */
  parameterRequestList?: number[];
  /** 57 */
  maxMessageSize?: number;
  /** 60 as text, e.g. `PXEClient:Arch:00007:UNDI:003000`. */
  vendorClass?: string;
  /** 61 raw (type octet + identifier). */
  clientId?: Buffer;
  /** 66 */
  tftpServerName?: string;
  /** 67 */
  bootfileName?: string;
  /** 77 */
  userClass?: UserClass;
  /** 93 (RFC 4578 section 2.1): one or more architecture types. */
  clientArch?: number[];
  /** 94 (RFC 4578 section 2.2): interface type (1 = UNDI) and version. */
  clientNdi?: { type: number; major: number; minor: number };
  /** 97 (RFC 4578 section 2.3): type 0 then a 16-octet GUID; `raw` is the whole value for echoing. */
  clientUuid?: { type: number; guid: string; raw: Buffer };
  /** 43 decoded as PXE sub-options when 60 names a PXE/HTTP client or server. */
  pxe?: PxeVendorOptions;
  /** 43 raw. */
  vendorSpecific?: Buffer;
  /** 175: iPXE encapsulated options (feature flags), present only in iPXE's requests. */
  ipxe?: DhcpOption[];
}

function exactLength(code: number, d: Buffer, n: number): void {
  if (d.length !== n) throw decodeError(`option ${code} length ${d.length}, expected ${n}`, { code, length: d.length });
}

/**
 * Read the typed options of a packet. Throws `ERR_DHCP_DECODE` naming the malformed option
 * (e.g. "option 93 length 1, expected even").
 */
export function readOptions(packet: { readonly options: readonly DhcpOption[] }): TypedOptions {
  const t: TypedOptions = {};
  for (const { code, data: d } of packet.options) {
    switch (code) {
      case Opt.MESSAGE_TYPE:
        exactLength(code, d, 1);
        t.messageType = d[0]!;
        break;
      case Opt.SERVER_ID:
        exactLength(code, d, 4);
        t.serverId = readIp(d);
        break;
      case Opt.PARAMETER_LIST:
        // A loop, not [...d]: spreading a Buffer runs its iterator, ~1 us per request (profiled).
        t.parameterRequestList = octets(d);
        break;
      case Opt.MAX_MESSAGE_SIZE:
        exactLength(code, d, 2);
        t.maxMessageSize = d.readUInt16BE(0);
        break;
      case Opt.VENDOR_CLASS:
        t.vendorClass = d.toString('latin1');
        break;
      case Opt.CLIENT_ID:
        // RFC 2132 section 9.14: type octet plus at least one octet of identifier.
        if (d.length < 2) throw decodeError(`option 61 length ${d.length}, expected at least 2`);
        t.clientId = d;
        break;
      case Opt.TFTP_SERVER:
        t.tftpServerName = cString(d);
        break;
      case Opt.BOOTFILE:
        t.bootfileName = cString(d);
        break;
      case Opt.USER_CLASS:
        t.userClass = decodeUserClass(d);
        break;
      case Opt.CLIENT_ARCH: {
        if (d.length === 0 || d.length % 2 !== 0) {
          throw decodeError(`option 93 length ${d.length}, expected even`, { code, length: d.length });
        }
        const arch: number[] = [];
        for (let i = 0; i < d.length; i += 2) arch.push(d.readUInt16BE(i));
        t.clientArch = arch;
        break;
      }
      case Opt.CLIENT_NDI:
        exactLength(code, d, 3);
        t.clientNdi = { type: d[0]!, major: d[1]!, minor: d[2]! };
        break;
      case Opt.CLIENT_UUID:
        exactLength(code, d, 17);
        if (d[0] !== 0) throw decodeError(`option 97 type ${d[0]}, expected 0 (guid)`);
        t.clientUuid = { type: 0, guid: d.subarray(1).toString('hex'), raw: d };
        break;
      case Opt.VENDOR:
        t.vendorSpecific = d;
        break;
      case Opt.IPXE_ENCAP:
        t.ipxe = decodeSubOptions(d, 175);
        break;
      default:
        break;
    }
  }
  // Option 43 is vendor-defined: only PXE clients/servers use the PXE sub-option layout.
  if (t.vendorSpecific !== undefined && t.vendorClass !== undefined && /^(PXEClient|PXEServer|HTTPClient)/.test(t.vendorClass)) {
    t.pxe = decodePxeVendorOptions(t.vendorSpecific);
  }
  return t;
}
