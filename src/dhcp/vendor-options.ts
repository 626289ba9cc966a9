/**
 * Codecs of the two structured option values the PXE flow reads and writes: option 77 (RFC
 * 3004 user class, as iPXE and RFC clients send it) and option 43 (PXE 2.1 vendor sub-options,
 * table 2-1). Like `dhcp4/options.go` next to `packet.go` in Pixiecore: the packet header codec
 * (packet.ts) knows nothing of them.
 *
 * Pure data in, data out; every decoder has its encoder. Malformed input raises
 * `ERR_DHCP_DECODE`, a value that does not fit raises `ERR_DHCP_ENCODE`.
 */
import { decodeError, decodeSubOptions, encodeError, ipBytes, readIp, type DhcpOption } from './wire.js';

/** PXE 2.1 option 43 sub-option codes. */
export const PxeOpt = {
  DISCOVERY_CONTROL: 6,
  MULTICAST_ADDRESS: 7,
  BOOT_SERVERS: 8,
  BOOT_MENU: 9,
  MENU_PROMPT: 10,
  BOOT_ITEM: 71,
} as const;

/** Option 77 as sent: iPXE sends the raw text `iPXE`, RFC 3004 wants length-prefixed items. */
export interface UserClass {
  format: 'raw' | 'rfc3004';
  classes: string[];
}

/**
 * Decode option 77. A value that parses exactly as RFC 3004 length-prefixed items is read that
 * way; otherwise it is one raw class (iPXE sends `iPXE` without a length prefix).
 */
export function decodeUserClass(data: Buffer): UserClass {
  if (data.length === 0) throw decodeError('option 77 length 0, expected at least 1');
  const classes: string[] = [];
  let i = 0;
  while (i < data.length) {
    const len = data[i]!;
    if (len === 0 || i + 1 + len > data.length) return { format: 'raw', classes: [data.toString('latin1')] };
    classes.push(data.toString('latin1', i + 1, i + 1 + len));
    i += 1 + len;
  }
  return { format: 'rfc3004', classes };
}

/** Encode option 77 in the given format. */
export function encodeUserClass(value: UserClass): Buffer {
  if (value.format === 'raw') return Buffer.from(value.classes.join(''), 'latin1');
  return Buffer.concat(
    value.classes.map((c) => {
      const b = Buffer.from(c, 'latin1');
      if (b.length === 0 || b.length > 255) throw encodeError(`user class item length ${b.length}, expected 1..255`);
      return Buffer.concat([Buffer.from([b.length]), b]);
    }),
  );
}

/** Option 43 of a PXE client or server (PXE 2.1 spec, table 2-1). */
export interface PxeVendorOptions {
  /** 6: bit 0 disable broadcast, bit 1 disable multicast, bit 2 only listed servers, bit 3 boot file given (skip discovery). */
  discoveryControl?: number;
  /** 7: multicast discovery address. */
  multicastAddress?: string;
  /** 8: boot servers by type. */
  bootServers?: Array<{ type: number; addresses: string[] }>;
  /** 9: boot menu entries. */
  bootMenu?: Array<{ type: number; description: string }>;
  /** 10: menu prompt (timeout seconds, 255 = wait for key) and text. */
  menuPrompt?: { timeout: number; prompt: string };
  /** 71: the boot item a client asks for on 4011 and the server echoes. */
  bootItem?: { type: number; layer: number };
  /** Sub-options not named above, kept raw. */
  other?: DhcpOption[];
}

/** Decode option 43 as PXE sub-options. Throws `ERR_DHCP_DECODE` when malformed. */
export function decodePxeVendorOptions(data: Buffer): PxeVendorOptions {
  const result: PxeVendorOptions = {};
  for (const { code, data: d } of decodeSubOptions(data, 43)) {
    switch (code) {
      case PxeOpt.DISCOVERY_CONTROL:
        if (d.length !== 1) throw decodeError(`option 43 sub-option 6 length ${d.length}, expected 1`);
        result.discoveryControl = d[0]!;
        break;
      case PxeOpt.MULTICAST_ADDRESS:
        if (d.length !== 4) throw decodeError(`option 43 sub-option 7 length ${d.length}, expected 4`);
        result.multicastAddress = readIp(d);
        break;
      case PxeOpt.BOOT_SERVERS: {
        const servers: Array<{ type: number; addresses: string[] }> = [];
        let i = 0;
        while (i < d.length) {
          if (i + 3 > d.length) throw decodeError('option 43 sub-option 8 entry truncated before its count');
          const type = d.readUInt16BE(i);
          const count = d[i + 2]!;
          if (i + 3 + count * 4 > d.length) throw decodeError(`option 43 sub-option 8 lists ${count} addresses but is too short`);
          const addresses: string[] = [];
          for (let k = 0; k < count; k++) addresses.push(readIp(d, i + 3 + k * 4));
          servers.push({ type, addresses });
          i += 3 + count * 4;
        }
        result.bootServers = servers;
        break;
      }
      case PxeOpt.BOOT_MENU: {
        const menu: Array<{ type: number; description: string }> = [];
        let i = 0;
        while (i < d.length) {
          if (i + 3 > d.length) throw decodeError('option 43 sub-option 9 entry truncated before its length');
          const type = d.readUInt16BE(i);
          const len = d[i + 2]!;
          if (i + 3 + len > d.length) throw decodeError(`option 43 sub-option 9 description length ${len} runs past its end`);
          menu.push({ type, description: d.toString('latin1', i + 3, i + 3 + len) });
          i += 3 + len;
        }
        result.bootMenu = menu;
        break;
      }
      case PxeOpt.MENU_PROMPT:
        if (d.length < 1) throw decodeError('option 43 sub-option 10 length 0, expected at least 1');
        result.menuPrompt = { timeout: d[0]!, prompt: d.toString('latin1', 1) };
        break;
      case PxeOpt.BOOT_ITEM:
        if (d.length !== 4) throw decodeError(`option 43 sub-option 71 length ${d.length}, expected 4`);
        result.bootItem = { type: d.readUInt16BE(0), layer: d.readUInt16BE(2) };
        break;
      default:
        (result.other ??= []).push({ code, data: d });
    }
  }
  return result;
}

/**
 * Encode PXE option 43 sub-options, in the order dnsmasq uses (6, 7, 10, 8, 9, 71, others),
 * terminated by END as the PXE spec requires.
 */
export function encodePxeVendorOptions(value: PxeVendorOptions): Buffer {
  const parts: Buffer[] = [];
  const sub = (code: number, data: Buffer): void => {
    if (data.length > 255) throw encodeError(`option 43 sub-option ${code} is ${data.length} bytes, at most 255 fit`);
    parts.push(Buffer.from([code, data.length]), data);
  };
  const u16 = (n: number): Buffer => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n & 0xffff);
    return b;
  };
  if (value.discoveryControl !== undefined) sub(PxeOpt.DISCOVERY_CONTROL, Buffer.from([value.discoveryControl & 0xff]));
  if (value.multicastAddress !== undefined) sub(PxeOpt.MULTICAST_ADDRESS, ipBytes(value.multicastAddress, 'option 43.7'));
  if (value.menuPrompt !== undefined) {
    sub(PxeOpt.MENU_PROMPT, Buffer.concat([Buffer.from([value.menuPrompt.timeout & 0xff]), Buffer.from(value.menuPrompt.prompt, 'latin1')]));
  }
  if (value.bootServers !== undefined) {
    sub(
      PxeOpt.BOOT_SERVERS,
      Buffer.concat(value.bootServers.flatMap((s) => [u16(s.type), Buffer.from([s.addresses.length]), ...s.addresses.map((a) => ipBytes(a, 'option 43.8'))])),
    );
  }
  if (value.bootMenu !== undefined) {
    sub(
      PxeOpt.BOOT_MENU,
      Buffer.concat(
        value.bootMenu.flatMap((m) => {
          const d = Buffer.from(m.description, 'latin1');
          if (d.length > 255) throw encodeError('option 43.9 description longer than 255 bytes');
          return [u16(m.type), Buffer.from([d.length]), d];
        }),
      ),
    );
  }
  if (value.bootItem !== undefined) sub(PxeOpt.BOOT_ITEM, Buffer.concat([u16(value.bootItem.type), u16(value.bootItem.layer)]));
  for (const o of value.other ?? []) sub(o.code, o.data);
  parts.push(Buffer.from([255]));
  return Buffer.concat(parts);
}
