/** Builders of client messages for the DHCPv6 tests (what EDK2, iPXE and dhclient send), and loopback server options. */
import { createEventLog } from '../../src/events.js';
import { createSilentLogger } from '../../src/log.js';
import type { Dhcp6ServerOptions } from '../../src/dhcp6/server.js';
import {
  duidLl,
  encodeArch,
  encodeElapsed,
  encodeIaNa,
  encodeMessage,
  encodeNii,
  encodeOro,
  encodeUserClass,
  encodeVendorClass,
  Msg6,
  Opt6,
  type Message6,
  type Option6,
} from '../../src/dhcp6/packet.js';

export const CLIENT_MAC = '52:54:00:12:60:04';
export const CLIENT_DUID = duidLl(CLIENT_MAC);
export const SERVER_DUID = duidLl('02:00:00:00:00:01');
/** The link-local address of CLIENT_MAC (modified EUI-64). */
export const CLIENT_LINK_LOCAL = 'fe80::5054:ff:fe12:6004';

/** An EDK2 PXEv6 Solicit (options as docs/NETBOOT-FACTS.md section 7 lists them). */
export function edk2Solicit(extra: Option6[] = [], type: number = Msg6.SOLICIT): Message6 {
  return {
    type,
    transactionId: 0x123456,
    options: [
      { code: Opt6.CLIENT_ID, data: CLIENT_DUID },
      encodeIaNa({ iaid: 0x01020304, t1: 0, t2: 0, addresses: [] }),
      encodeOro([Opt6.BOOTFILE_URL, Opt6.BOOTFILE_PARAM, Opt6.DNS_SERVERS, Opt6.VENDOR_CLASS]),
      encodeElapsed(0),
      encodeArch([7]),
      encodeNii({ type: 1, major: 3, minor: 0 }),
      encodeVendorClass({ enterprise: 343, items: [Buffer.from('PXEClient:Arch:00007:UNDI:003000')] }),
      ...extra,
    ],
  };
}

/** An iPXE Solicit (user class iPXE). */
export function ipxeSolicit(type: number = Msg6.SOLICIT, extra: Option6[] = []): Message6 {
  return {
    type,
    transactionId: 0xabcdef,
    options: [
      { code: Opt6.CLIENT_ID, data: Buffer.concat([Buffer.from([0, 4]), Buffer.alloc(16, 7)]) },
      encodeIaNa({ iaid: 0x11223344, t1: 0, t2: 0, addresses: [] }),
      encodeOro([Opt6.DNS_SERVERS, Opt6.DOMAIN_LIST, Opt6.BOOTFILE_URL, Opt6.BOOTFILE_PARAM]),
      encodeUserClass([Buffer.from('iPXE')]),
      encodeArch([7]),
      ...extra,
    ],
  };
}

export const wire = (m: Message6): Buffer => encodeMessage(m);

/** A server on [::1], ephemeral ports, any source accepted, our test DUID, fd00:126::/64 (server mode: range ::100-::1ff). */
export function loopbackOptions<T extends Partial<Dhcp6ServerOptions>>(extra: T): Dhcp6ServerOptions & T {
  return {
    mode: 'server',
    address: 'fd00:126::1',
    port: 0,
    proxyPort: 0,
    bindAddress: '::1',
    anySource: true,
    httpPort: () => 8080,
    log: createSilentLogger(),
    events: createEventLog(),
    serverDuid: SERVER_DUID,
    ...(extra.mode === 'proxy' ? {} : { range: { start: 'fd00:126::100', end: 'fd00:126::1ff' } }),
    ...extra,
  };
}
