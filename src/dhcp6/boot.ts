/**
 * DHCPv6 decisions: who is asking, and the reply (if any) in proxy and in server mode. Pure:
 * a decoded message, where it came from, the pool and the clock in; a reply message or an
 * `ignore` with its reason out. The socket layer (server.ts) sends, logs and journals.
 *
 * Firmware facts these rules rest on (read from the peers' code, booted in the lab):
 * - EDK2 PXEv6 (NetworkPkg/UefiPxeBcDxe/PxeBcDhcp6.c) sends a Solicit with option 61 = 7 and
 *   vendor class 343 `PXEClient:Arch:00007:UNDI:003000`. It counts an Advertise without a
 *   usable IA_NA but with vendor class `PXEClient` as a *proxy* offer; having leased its address
 *   from another server it then sends a Request (no IA) from port 4011 to port 4011 of the
 *   address in the proxy offer's boot-file URL, and boots the URL of the Reply. An Advertise
 *   with addresses and a boot-file URL but no vendor class is "DHCP only with boot file" and
 *   boots straight from it (server mode, as dnsmasq's reference recipe does).
 * - iPXE (src/net/udp/dhcpv6.c) sends user class `iPXE`, takes the *first* Advertise that
 *   carries an IAADDR, and registers the options of that server's Reply only: it ignores an
 *   Advertise without addresses, so a proxy cannot hand iPXE its script URL over DHCPv6
 *   (README: IPv6). In stateless mode (RA with only the O flag) it sends an
 *   Information-request and takes the first Reply.
 */
import { formatIpv6, ipv6UrlHost, isLinkLocal, macFromEui64, parseIpv6 } from './address.js';
import {
  encodeBootFileUrl,
  encodeDnsServers,
  encodeDomainList,
  encodeIaNa,
  encodeStatus,
  encodeVendorClass,
  Msg6,
  MSG6_NAMES,
  Opt6,
  PXE_ENTERPRISE,
  Status6,
  type ClientMessage,
  type IaNa,
  type Message6,
  type Option6,
} from './packet.js';
import { iaKey, UNKNOWN_MAC, type Lease6Pool } from './leases.js';
import type { Lease6Budget, Lease6Cap } from './budget.js';

/** What kind of boot client sent a message. */
export type Client6 = 'pxe' | 'http' | 'ipxe' | 'other';

/** The port a message arrived on: 547 (DHCPv6) or 4011 (EDK2's proxy boot-server request). */
export type Port6Role = 'dhcp' | 'proxy';

/** Who is asking. */
export interface Who6 {
  client: Client6;
  /** The first client architecture of option 61 (RFC 4578 numbers: 7 EFI x64, 16 HTTP x64). */
  arch?: number;
  mac: string;
  /** Where the MAC came from (unknown: recorded as 00:00:00:00:00:00). */
  macSource: 'duid' | 'link-layer-option' | 'link-local' | 'unknown';
}

/** Identify the client of a message; `source` is the datagram's source address. */
export function identify6(req: ClientMessage, source: string): Who6 {
  const items = req.vendorClass?.items.map((i) => i.toString('latin1')) ?? [];
  const ipxe = req.userClasses.some((u) => u.toString('latin1') === 'iPXE');
  const http = items.some((i) => i.startsWith('HTTPClient'));
  const pxe = items.some((i) => i.startsWith('PXEClient')) || req.arches.length > 0;
  const src = parseIpv6(source.replace(/%.*$/, ''));
  const eui = src && isLinkLocal(src) ? macFromEui64(src) : undefined;
  const [mac, macSource]: [string, Who6['macSource']] = req.clientId?.mac
    ? [req.clientId.mac, 'duid']
    : req.linkLayerMac
      ? [req.linkLayerMac, 'link-layer-option']
      : eui
        ? [eui, 'link-local']
        : [UNKNOWN_MAC, 'unknown'];
  return {
    client: ipxe ? 'ipxe' : http ? 'http' : pxe ? 'pxe' : 'other',
    ...(req.arches[0] !== undefined ? { arch: req.arches[0] } : {}),
    mac,
    macSource,
  };
}

/** Chooses the TFTP boot file of a PXE client (undefined: no file for this architecture). */
export type Boot6FileChooser = (who: Who6) => string | undefined;

/** x64 UEFI (7 EFI BC, 9 EFI x86-64) gets iPXE's snponly.efi, as over IPv4. */
export const defaultBoot6File: Boot6FileChooser = (who) => (who.arch === 7 || who.arch === 9 ? 'snponly.efi' : undefined);

/** Everything a decision needs besides the message. */
export interface Dhcp6Config {
  /** Our DUID (option 2). */
  serverDuid: Buffer;
  /** Our IPv6 address on the segment: the host of every URL. */
  address: string;
  httpPort: number;
  chooseBootFile?: Boot6FileChooser;
  /** Server mode: recursive DNS servers (23) and search list (24). */
  dns?: readonly string[];
  domains?: readonly string[];
  /** Server mode: preferred and valid lifetime, seconds. */
  leaseSeconds?: number;
}

/** A decision. */
export type Decision6 =
  | { kind: 'ignore'; reason: string; who?: Who6 }
  | {
      kind: 'reply';
      reply: Message6;
      who: Who6;
      bootUrl?: string;
      addresses: string[];
      summary: string;
      /** IAs the lease budget (budget.ts) refused, with the cap that did. */
      refused?: Array<{ cap: Lease6Cap; message: string }>;
    };

/** The boot-file URL for a client, or undefined when it gets none. */
export function bootUrl6(who: Who6, config: Pick<Dhcp6Config, 'address' | 'httpPort' | 'chooseBootFile'>): string | undefined {
  const host = ipv6UrlHost(config.address);
  // An iPXE that already runs gets the entry script, never iPXE again (the loop breaker).
  if (who.client === 'ipxe') return `http://${host}:${config.httpPort}/boot.ipxe`;
  if (who.client === 'http') return who.arch === 16 ? `http://${host}:${config.httpPort}/boot/snponly.efi` : undefined;
  if (who.client !== 'pxe') return undefined;
  const file = (config.chooseBootFile ?? defaultBoot6File)(who);
  return file === undefined ? undefined : `tftp://${host}/${file}`;
}

function vendorClassFor(who: Who6): Option6 {
  return encodeVendorClass({ enterprise: PXE_ENTERPRISE, items: [Buffer.from(who.client === 'http' ? 'HTTPClient' : 'PXEClient')] });
}

function header(type: number, req: ClientMessage, config: Dhcp6Config): Message6 {
  return {
    type,
    transactionId: req.transactionId,
    options: [
      { code: Opt6.SERVER_ID, data: config.serverDuid },
      { code: Opt6.CLIENT_ID, data: req.clientId!.raw },
    ],
  };
}

const name = (type: number): string => MSG6_NAMES[type] ?? `type-${type}`;

/**
 * Proxy mode: another server leases addresses; answer only boot clients, only with where to
 * boot from. A Solicit gets an Advertise with vendor class PXEClient and the boot-file URL and
 * no IA (EDK2's proxy offer); the Request EDK2 then sends to port 4011 (or 547) naming our
 * DUID gets a Reply with the same; an Information-request gets the URL too (stateless networks).
 */
export function decideProxy6(req: ClientMessage, source: string, port: Port6Role, config: Dhcp6Config): Decision6 {
  if (!req.clientId) return { kind: 'ignore', reason: `${name(req.type)} without a client id` };
  const who = identify6(req, source);
  const ours = req.serverId !== undefined && req.serverId.equals(config.serverDuid);
  if (who.client === 'other')
    return { kind: 'ignore', reason: 'not a boot client (no PXEClient/HTTPClient vendor class, no client arch, no iPXE user class)', who };
  const url = bootUrl6(who, config);
  if (url === undefined) return { kind: 'ignore', reason: `no boot file for client arch ${who.arch ?? 'none'} over ipv6`, who };
  const bootOptions = [vendorClassFor(who), encodeBootFileUrl(url)];
  switch (req.type) {
    case Msg6.SOLICIT: {
      if (port !== 'dhcp') return { kind: 'ignore', reason: 'solicit on the boot-server port', who };
      if (who.client === 'ipxe')
        return {
          kind: 'ignore',
          reason: 'proxy mode: ipxe takes its boot url only from the server that leases its address (it ignores advertises without one)',
          who,
        };
      const reply = header(Msg6.ADVERTISE, req, config);
      reply.options.push(...bootOptions);
      return { kind: 'reply', reply, who, bootUrl: url, addresses: [], summary: 'proxy advertise' };
    }
    case Msg6.REQUEST: {
      if (!ours) return { kind: 'ignore', reason: 'request for another server', who };
      const reply = header(Msg6.REPLY, req, config);
      // No addresses from a proxy: each IA the client still asks for is answered NoAddrsAvail.
      for (const ia of req.iaNa)
        reply.options.push(
          encodeIaNa({
            iaid: ia.iaid,
            t1: 0,
            t2: 0,
            addresses: [],
            status: { code: Status6.NO_ADDRS_AVAIL, message: 'proxy: addresses come from another server' },
          }),
        );
      reply.options.push(...bootOptions);
      return { kind: 'reply', reply, who, bootUrl: url, addresses: [], summary: port === 'proxy' ? 'proxy boot-server reply (4011)' : 'proxy reply' };
    }
    case Msg6.INFORMATION_REQUEST: {
      if (req.serverId && !ours) return { kind: 'ignore', reason: 'information-request for another server', who };
      const reply = header(Msg6.REPLY, req, config);
      reply.options.push(...bootOptions);
      return { kind: 'reply', reply, who, bootUrl: url, addresses: [], summary: 'proxy information reply' };
    }
    default:
      return { kind: 'ignore', reason: `proxy mode does not answer ${name(req.type)}`, who };
  }
}

function lifetimes(config: Dhcp6Config): { valid: number; t1: number; t2: number } {
  const valid = config.leaseSeconds ?? 3600;
  return { valid, t1: Math.floor(valid / 2), t2: Math.floor((valid * 4) / 5) };
}

function configOptions(config: Dhcp6Config, req: ClientMessage): Option6[] {
  const out: Option6[] = [];
  if (config.dns && config.dns.length > 0) out.push(encodeDnsServers(config.dns));
  if (config.domains && config.domains.length > 0 && (req.oro.length === 0 || req.oro.includes(Opt6.DOMAIN_LIST))) out.push(encodeDomainList(config.domains));
  return out;
}

/**
 * Server mode: lease addresses from `pool` (RFC 8415 section 18.3) and hand boot clients their
 * boot-file URL (without vendor class, so EDK2 boots it directly). `now` is ms since the epoch.
 */
export function decideServer6(
  req: ClientMessage,
  source: string,
  port: Port6Role,
  config: Dhcp6Config,
  pool: Lease6Pool,
  now: number,
  budget?: Lease6Budget,
): Decision6 {
  if (!req.clientId) return { kind: 'ignore', reason: `${name(req.type)} without a client id` };
  const who = identify6(req, source);
  const ours = req.serverId !== undefined && req.serverId.equals(config.serverDuid);
  const duid = req.clientId.raw;
  const url = bootUrl6(who, config);
  const boot = url !== undefined ? [encodeBootFileUrl(url)] : [];
  const { valid, t1, t2 } = lifetimes(config);
  const withUrl = url !== undefined ? { bootUrl: url } : {};
  if (port === 'proxy') {
    // Only EDK2's boot-server request arrives here (we never send vendor class in server mode,
    // but a client may still ask): answer it as proxy mode would.
    return decideProxy6(req, source, port, config);
  }
  const iaWith = (ia: IaNa, address: string, v = valid): Option6 =>
    encodeIaNa({ iaid: ia.iaid, t1, t2, addresses: [{ address, preferredLifetime: v, validLifetime: v }] });
  const iaStatus = (ia: IaNa, code: number, message: string): Option6 => encodeIaNa({ iaid: ia.iaid, t1: 0, t2: 0, addresses: [], status: { code, message } });
  const requested = (ia: IaNa): string[] => ia.addresses.map((a) => a.address);
  switch (req.type) {
    case Msg6.SOLICIT:
    case Msg6.REQUEST: {
      if (req.type === Msg6.SOLICIT && req.serverId) return { kind: 'ignore', reason: 'solicit carrying a server id', who };
      if (req.type === Msg6.REQUEST && !ours) return { kind: 'ignore', reason: 'request for another server', who };
      const advertise = req.type === Msg6.SOLICIT;
      const reply = header(advertise ? Msg6.ADVERTISE : Msg6.REPLY, req, config);
      const addresses: string[] = [];
      const refused: Array<{ cap: Lease6Cap; message: string }> = [];
      const host = sourceAddress(source);
      for (const ia of req.iaNa) {
        const key = iaKey(duid, ia.iaid);
        const verdict = budget?.admit(pool, { key, duid: duid.toString('hex'), host }, now) ?? { ok: true };
        if (!verdict.ok) {
          refused.push({ cap: verdict.cap, message: verdict.message });
          reply.options.push(iaStatus(ia, Status6.NO_ADDRS_AVAIL, verdict.message));
          continue;
        }
        const lease = advertise ? pool.offer(key, who.mac, requested(ia), now, host) : pool.bind(key, who.mac, requested(ia), now, host);
        if (lease) {
          reply.options.push(iaWith(ia, lease.ip));
          addresses.push(lease.ip);
        } else reply.options.push(iaStatus(ia, Status6.NO_ADDRS_AVAIL, 'no addresses available in the range'));
      }
      if (req.iaNa.length > 0 && addresses.length === 0 && advertise) {
        // RFC 8415 section 18.3.1: an Advertise with no addresses says so at the top level.
        reply.options.push(encodeStatus({ code: Status6.NO_ADDRS_AVAIL, message: refused[0]?.message ?? 'no addresses available in the range' }));
      }
      reply.options.push(...configOptions(config, req), ...boot);
      return {
        kind: 'reply',
        reply,
        who,
        ...withUrl,
        addresses,
        summary: advertise ? 'advertise' : 'reply (bound)',
        ...(refused.length > 0 ? { refused } : {}),
      };
    }
    case Msg6.RENEW:
    case Msg6.REBIND: {
      if (req.type === Msg6.RENEW && !ours) return { kind: 'ignore', reason: 'renew for another server', who };
      if (req.type === Msg6.REBIND && req.serverId) return { kind: 'ignore', reason: 'rebind carrying a server id', who };
      const reply = header(Msg6.REPLY, req, config);
      const addresses: string[] = [];
      for (const ia of req.iaNa) {
        const lease = pool.renew(iaKey(duid, ia.iaid), now);
        if (lease) {
          reply.options.push(iaWith(ia, lease.ip));
          addresses.push(lease.ip);
          // Addresses the client holds that are not its lease any more: lifetimes 0 (section 18.3.4).
          for (const a of ia.addresses)
            if (a.address !== lease.ip)
              reply.options.push(encodeIaNa({ iaid: ia.iaid, t1, t2, addresses: [{ address: a.address, preferredLifetime: 0, validLifetime: 0 }] }));
        } else if (req.type === Msg6.REBIND && ia.addresses.some((a) => !pool.inRange(a.address))) {
          reply.options.push(
            encodeIaNa({ iaid: ia.iaid, t1: 0, t2: 0, addresses: ia.addresses.map((a) => ({ address: a.address, preferredLifetime: 0, validLifetime: 0 })) }),
          );
        } else reply.options.push(iaStatus(ia, Status6.NO_BINDING, 'no binding for this ia'));
      }
      reply.options.push(...configOptions(config, req), ...boot);
      return { kind: 'reply', reply, who, ...withUrl, addresses, summary: req.type === Msg6.RENEW ? 'reply (renewed)' : 'reply (rebound)' };
    }
    case Msg6.CONFIRM: {
      if (req.serverId) return { kind: 'ignore', reason: 'confirm carrying a server id', who };
      const held = req.iaNa.flatMap((ia) => ia.addresses.map((a) => a.address));
      // Section 18.3.3: no addresses, no reply.
      if (held.length === 0) return { kind: 'ignore', reason: 'confirm without addresses', who };
      const onLink = held.every((a) => pool.inRange(a));
      const reply = header(Msg6.REPLY, req, config);
      reply.options.push(
        encodeStatus(
          onLink ? { code: Status6.SUCCESS, message: 'all addresses on link' } : { code: Status6.NOT_ON_LINK, message: 'an address is not on this link' },
        ),
      );
      return { kind: 'reply', reply, who, addresses: [], summary: onLink ? 'reply (confirmed)' : 'reply (not on link)' };
    }
    case Msg6.RELEASE:
    case Msg6.DECLINE: {
      if (!ours) return { kind: 'ignore', reason: `${name(req.type)} for another server`, who };
      const reply = header(Msg6.REPLY, req, config);
      for (const ia of req.iaNa) {
        const key = iaKey(duid, ia.iaid);
        if (req.type === Msg6.RELEASE) {
          if (!pool.release(key, now)) reply.options.push(iaStatus(ia, Status6.NO_BINDING, 'no binding for this ia'));
        } else for (const a of ia.addresses) pool.decline(key, a.address, who.mac, now);
      }
      reply.options.push(encodeStatus({ code: Status6.SUCCESS, message: req.type === Msg6.RELEASE ? 'released' : 'declined' }));
      return { kind: 'reply', reply, who, addresses: [], summary: req.type === Msg6.RELEASE ? 'reply (released)' : 'reply (declined)' };
    }
    case Msg6.INFORMATION_REQUEST: {
      if (req.serverId && !ours) return { kind: 'ignore', reason: 'information-request for another server', who };
      const reply = header(Msg6.REPLY, req, config);
      reply.options.push(...configOptions(config, req), ...boot);
      return { kind: 'reply', reply, who, ...withUrl, addresses: [], summary: 'information reply' };
    }
    default:
      return { kind: 'ignore', reason: `${name(req.type)} is not a client message a server answers`, who };
  }
}

/** Canonical text of an address from a datagram's source (zone removed). */
export function sourceAddress(address: string): string {
  const bare = address.replace(/%.*$/, '');
  const b = parseIpv6(bare);
  return b ? formatIpv6(b) : bare;
}
