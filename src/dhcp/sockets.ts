/**
 * DHCP socket layout of the one DHCP listener (listener.ts).
 *
 * Interface confinement without native code (docs/NETBOOT-FACTS.md section 3; measured in a
 * two-interface netns, test/dhcp/netns.test.ts):
 *  - Node's dgram has no SO_BINDTODEVICE and no IP_PKTINFO. A socket bound to a unicast address
 *    or to the subnet broadcast (10.99.0.255) does not receive 255.255.255.255, so only a
 *    0.0.0.0 socket hears DISCOVERs, and it cannot tell which interface they came in on.
 *  - Sending 255.255.255.255 from that 0.0.0.0 socket leaves by the interface of the default
 *    route (measured: the offer went out of the unconfigured interface and the client on the
 *    configured one got nothing).
 *  - Sending 255.255.255.255 from a socket bound to our address leaves by the interface that
 *    owns the address (Linux ip_route_output_key_hash_rcu: for limited broadcast/multicast with
 *    a source address and no oif, oif becomes the device of that address).
 * So each port gets two sockets with SO_REUSEADDR: a 0.0.0.0 socket that hears broadcasts and a
 * socket bound to `address` that hears unicasts to us and sends every reply. Unicast to us goes
 * to the more specific socket, broadcasts only to the 0.0.0.0 one, so nothing arrives twice.
 * Callers still filter unicast/relayed requests by subnet (subnet.ts).
 *
 * Strict mode: pre-opened descriptors (`fd`), e.g. from a systemd .socket unit with
 * `BindToDevice=` or a perl-base wrapper, are used as the only socket of their port; a socket
 * bound to a device hears and sends on that interface only.
 *
 * Caveat of SO_REUSEADDR: another process that also sets it (dnsmasq does) can share the port
 * without a bind error; libvirt's per-bridge dnsmasq relies on exactly that to coexist. So the
 * DHCP service looks for other processes' sockets on these ports before it binds
 * (port-holders.ts) and refuses to share them unless forced.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import { isIPv4 } from 'node:net';
import os from 'node:os';
import { ApplianceError } from '../errors.js';
import { subnetOf, parseCidr, type Subnet } from './subnet.js';

/** The role of a port: 67 (`dhcp`) or 4011 (`proxy`). */
export type SocketRole = 'dhcp' | 'proxy';

/** One port to open. */
export interface PortSpec {
  role: SocketRole;
  /** 0 picks an ephemeral port (tests). */
  port: number;
  /** Inherited descriptor to use instead of binding (strict mode). */
  fd?: number;
}

/** Sends from the role's sending socket; rejects when it is not (or no longer) open. */
export type SendFunction = (bytes: Buffer, address: string, port: number) => Promise<void>;

/**
 * Which socket heard a datagram: `address` (bound to our address: the datagram was sent to us),
 * `wildcard` (0.0.0.0: a broadcast, or unicast to another address of this host), or `device`
 * (an inherited descriptor bound to the interface: anything addressed on that interface).
 */
export type HeardOn = 'address' | 'wildcard' | 'device';

/** Called for every datagram; must not throw (a throw is caught and reported to `onError`). */
export type DatagramHandler = (role: SocketRole, port: number, msg: Buffer, from: dgram.RemoteInfo, send: SendFunction, heardOn: HeardOn) => void;

/**
 * Receive buffer asked for on every DHCP socket: 4 MiB, room for ~3,000 full-size DHCP
 * datagrams. With the default 208 KiB the kernel dropped a real DISCOVER at ~4,000 datagrams/s
 * of junk. Linux caps the value at `net.core.rmem_max` (SO_RCVBUFFORCE needs CAP_NET_ADMIN and
 * Node cannot set it; scripts/bind-device does), so the effective size is reported.
 */
export const DHCP_RECV_BUFFER_BYTES = 4 * 1024 * 1024;
/** Send buffer asked for: replies to a boot storm leave in bursts. */
export const DHCP_SEND_BUFFER_BYTES = 1024 * 1024;

/** Buffer sizes the kernel granted (bytes, as getsockopt reports them: twice the usable room). */
export interface SocketBuffers {
  recv: number;
  send: number;
}

/** Opened DHCP sockets. */
export interface DhcpSockets {
  /** Bound port per role. */
  readonly ports: Readonly<Partial<Record<SocketRole, number>>>;
  /** Smallest buffers granted over all sockets. */
  readonly buffers: SocketBuffers;
  /** Send from the role's sending socket (bound to `address`, so broadcasts leave by its interface). */
  send(role: SocketRole, bytes: Buffer, address: string, port: number): Promise<void>;
  /** Close every socket; safe to call twice. */
  close(): Promise<void>;
}

/** Where the server lives: the interface owning `address` and the subnet it serves. */
export interface ServedNetwork {
  interface?: string;
  subnet?: Subnet;
}

const WILDCARD = '0.0.0.0';

/** ApplianceError `ERR_DHCP_BIND`. */
export function bindError(message: string, detail?: Record<string, unknown>, cause?: unknown): ApplianceError {
  return new ApplianceError('ERR_DHCP_BIND', message, detail, cause === undefined ? undefined : { cause });
}

/** The interface and prefix that own `address` on this host (this network namespace). */
export function findLocalAddress(address: string): { name: string; prefix: number } | undefined {
  for (const [name, list] of Object.entries(os.networkInterfaces())) {
    for (const entry of list ?? []) {
      if (entry.family === 'IPv4' && entry.address === address) {
        const prefix = entry.cidr ? Number(entry.cidr.split('/')[1]) : 32;
        return { name, prefix };
      }
    }
  }
  return undefined;
}

/**
 * Check `address` (and `iface` when given) against this host and work out the served subnet.
 * Throws `ERR_DHCP_BIND` with the fix in the message. `requireLocal` false allows an address
 * that is not local (inherited descriptors need no address-bound socket).
 */
export function resolveServedNetwork(address: string, iface: string | undefined, subnet: string | undefined, requireLocal: boolean): ServedNetwork {
  const found = findLocalAddress(address);
  if (!found && requireLocal) {
    // libuv lists only interfaces that are up and running: a bridge without a port up has no
    // carrier, so its address is missing here until a port comes up (measured in the VM lab).
    throw bindError(
      `address ${address} is not assigned to any interface of this host that is up and has carrier; pass this host's address on the boot network (a bridge needs a port up)`,
      { address },
    );
  }
  if (found && iface !== undefined && found.name !== iface) {
    throw bindError(`address ${address} is on interface ${found.name}, not ${iface}`, { address, interface: iface });
  }
  let served: Subnet | undefined;
  if (subnet !== undefined) {
    served = parseCidr(subnet);
    if (!served) throw bindError(`subnet ${JSON.stringify(subnet)} is not a cidr like 10.99.0.0/24`);
  } else if (found) {
    served = subnetOf(address, found.prefix);
  }
  return { ...(found ? { interface: found.name } : {}), ...(served ? { subnet: served } : {}) };
}

/**
 * Every reply goes to a dotted-quad address: answered at once instead of through dns.lookup and
 * a nextTick per datagram (dgram's send passes every address through its lookup; this showed in
 * the ProxyDHCP answer path's profile). Anything else still goes to dns.lookup.
 */
const literalLookup = ((hostname: string, options: unknown, callback: (err: Error | null, address: string, family: number) => void): void => {
  if (isIPv4(hostname)) {
    callback(null, hostname, 4);
    return;
  }
  dns.lookup(hostname, options as dns.LookupOptions, callback as never);
}) as unknown as typeof dns.lookup;

function bindSocket(port: number, host: string | undefined, fd: number | undefined): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true, lookup: literalLookup });
    const onError = (err: Error): void => {
      try {
        socket.close();
      } catch {
        // never opened
      }
      reject(err);
    };
    socket.once('error', onError);
    const onListening = (): void => {
      socket.off('error', onError);
      socket.setBroadcast(true);
      // Asked after bind so inherited descriptors get it too; the kernel caps it silently, and
      // a descriptor given a bigger forced size (scripts/bind-device) keeps the bigger one.
      try {
        if (socket.getRecvBufferSize() < DHCP_RECV_BUFFER_BYTES) socket.setRecvBufferSize(DHCP_RECV_BUFFER_BYTES);
        if (socket.getSendBufferSize() < DHCP_SEND_BUFFER_BYTES) socket.setSendBufferSize(DHCP_SEND_BUFFER_BYTES);
      } catch {
        // an unusual socket type; the default sizes still work
      }
      resolve(socket);
    };
    try {
      if (fd !== undefined) socket.bind({ fd }, onListening);
      else socket.bind({ port, ...(host !== undefined ? { address: host } : {}) }, onListening);
    } catch (err) {
      onError(err as Error);
    }
  });
}

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}

/**
 * Open the sockets for `specs` (see the module comment for the layout). Resolves when all are
 * listening; on any bind error closes what it opened and rejects with `ERR_DHCP_BIND`.
 * `onError` receives handler throws and socket errors after listening; nothing is rethrown.
 */
export async function openDhcpSockets(
  options: { address: string; host?: string; specs: PortSpec[] },
  onMessage: DatagramHandler,
  onError: (err: unknown, role: SocketRole, port: number) => void,
): Promise<DhcpSockets> {
  const host = options.host ?? WILDCARD;
  const opened: dgram.Socket[] = [];
  const senders = new Map<SocketRole, dgram.Socket>();
  const ports: Partial<Record<SocketRole, number>> = {};

  let closed = false;
  const sendFrom =
    (role: SocketRole): SendFunction =>
    (bytes, address, port) => {
      const socket = senders.get(role);
      if (!socket || closed) return Promise.reject(bindError(`no open ${role} socket to send from`));
      return new Promise((resolve, reject) => socket.send(bytes, port, address, (err) => (err ? reject(err) : resolve())));
    };
  const listen = (socket: dgram.Socket, role: SocketRole, port: number, heardOn: HeardOn): void => {
    const send = sendFrom(role);
    socket.on('message', (msg, from) => {
      try {
        onMessage(role, port, msg, from, send, heardOn);
      } catch (err) {
        // Defence in depth: no datagram may take the process down.
        onError(err, role, port);
      }
    });
    socket.on('error', (err) => onError(err, role, port));
  };

  try {
    for (const spec of options.specs) {
      try {
        if (spec.fd !== undefined) {
          const socket = await bindSocket(0, undefined, spec.fd);
          opened.push(socket);
          const port = socket.address().port;
          senders.set(spec.role, socket);
          ports[spec.role] = port;
          listen(socket, spec.role, port, 'device');
          continue;
        }
        const first = await bindSocket(spec.port, host, undefined);
        opened.push(first);
        const port = first.address().port;
        ports[spec.role] = port;
        listen(first, spec.role, port, host === options.address ? 'address' : 'wildcard');
        if (host !== WILDCARD || options.address === host) {
          senders.set(spec.role, first);
          continue;
        }
        // Same port, bound to our address: hears unicasts to us, and replies leave by its interface.
        const sender = await bindSocket(port, options.address, undefined);
        opened.push(sender);
        senders.set(spec.role, sender);
        listen(sender, spec.role, port, 'address');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const hint =
          code === 'EACCES' ? '; ports below 1024 need root or cap_net_bind_service' : code === 'EADDRINUSE' ? '; another dhcp server is bound there' : '';
        const where = spec.fd !== undefined ? `descriptor ${spec.fd}` : `port ${spec.port} on ${host}`;
        throw bindError(
          `cannot bind dhcp ${spec.role === 'dhcp' ? 'server' : 'proxy (pxe boot server)'} ${where}: ${code ?? (err as Error).message}${hint}`,
          { port: spec.port, host, code },
          err,
        );
      }
    }
  } catch (err) {
    await Promise.all(opened.map(closeSocket));
    throw err;
  }

  const buffers: SocketBuffers = { recv: Infinity, send: Infinity };
  for (const socket of opened) {
    buffers.recv = Math.min(buffers.recv, socket.getRecvBufferSize());
    buffers.send = Math.min(buffers.send, socket.getSendBufferSize());
  }
  return {
    ports,
    buffers,
    send(role, bytes, address, port) {
      return sendFrom(role)(bytes, address, port);
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all(opened.map(closeSocket));
    },
  };
}

/**
 * Open a listener's two ports, DHCP (67) and PXE boot server (4011), from `fds` when given
 * (strict mode) and resolve with the sockets and their bound ports. A listener whose stop()
 * ran while the binds were pending (`stillStarting()` false) gets nothing: the sockets are closed
 * again and the start rejects.
 */
export async function openListenerSockets(
  options: { address: string; host?: string; dhcpPort: number; proxyPort: number; fds?: { dhcp?: number; proxy?: number } },
  onMessage: DatagramHandler,
  onError: (err: unknown, role: SocketRole, port: number) => void,
  stillStarting: () => boolean,
): Promise<{ sockets: DhcpSockets; dhcpPort: number; proxyPort: number }> {
  const { fds } = options;
  const sockets = await openDhcpSockets(
    {
      address: options.address,
      ...(options.host !== undefined ? { host: options.host } : {}),
      specs: [
        { role: 'dhcp', port: options.dhcpPort, ...(fds?.dhcp !== undefined ? { fd: fds.dhcp } : {}) },
        { role: 'proxy', port: options.proxyPort, ...(fds?.proxy !== undefined ? { fd: fds.proxy } : {}) },
      ],
    },
    onMessage,
    onError,
  );
  if (!stillStarting()) {
    await sockets.close();
    throw bindError('dhcp server was stopped while starting');
  }
  return { sockets, dhcpPort: sockets.ports.dhcp ?? 0, proxyPort: sockets.ports.proxy ?? 0 };
}
