/**
 * The addresses the appliance advertises when none is given: taken from `--interface` or, for
 * IPv4, from the host's only non-loopback address (config.ts asks when loading the settings).
 */
import type { NetworkInterfaceInfo } from 'node:os';
import { normalizeIpv6 } from './dhcp6/address.js';
import { ConfigError } from './errors.js';

/** The IPv4 addresses of interface `name`; throws ConfigError listing the interfaces when it does not exist. */
export function interfaceAddresses(name: string, interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): string[] {
  const infos = interfaces[name];
  if (!infos) {
    throw new ConfigError(`--interface ${name} does not exist; interfaces here: ${Object.keys(interfaces).join(', ')}`, { setting: 'interface' });
  }
  return infos.filter((i) => i.family === 'IPv4').map((i) => i.address);
}

/**
 * The address to advertise when none is given: the IPv4 address of `iface`, or the only
 * non-loopback IPv4 address of the host. Several candidates are refused and listed, because
 * guessing wrong sends firmware to an address it cannot reach.
 */
export function detectAddress(iface: string | undefined, interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): string {
  if (iface !== undefined) {
    const addrs = interfaceAddresses(iface, interfaces);
    if (addrs.length === 0) throw new ConfigError(`--interface ${iface} has no IPv4 address; assign one or pass --address`, { setting: 'interface' });
    if (addrs.length > 1)
      throw new ConfigError(`--interface ${iface} has several IPv4 addresses (${addrs.join(', ')}); pass --address to choose one`, { setting: 'address' });
    return addrs[0]!;
  }
  const candidates: string[] = [];
  for (const [name, infos] of Object.entries(interfaces)) {
    for (const info of infos ?? []) {
      if (info.family === 'IPv4' && !info.internal) candidates.push(`${info.address} (${name})`);
    }
  }
  if (candidates.length === 1) return candidates[0]!.split(' ')[0]!;
  if (candidates.length === 0) {
    throw new ConfigError('no non-loopback IPv4 address found to advertise; pass --address (e.g. --address 127.0.0.1 for a local test) or --interface', {
      setting: 'address',
    });
  }
  throw new ConfigError(`several IPv4 addresses could be advertised: ${candidates.join(', ')}; pass --address or --interface to choose`, {
    setting: 'address',
  });
}

/**
 * The IPv6 address DHCPv6 advertises when none is given: the only global or unique-local
 * address of `iface` (link-local addresses cannot be in a URL a firmware fetches).
 */
export function detectAddress6(iface: string | undefined, interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): string {
  if (iface === undefined) throw new ConfigError('--dhcp6-mode needs --address6 or --interface (whose IPv6 address is then used)', { setting: 'address6' });
  const infos = interfaces[iface];
  if (!infos) throw new ConfigError(`--interface ${iface} does not exist`, { setting: 'interface' });
  const addrs = infos.filter((i) => i.family === 'IPv6' && !/^fe[89ab]/i.test(i.address)).map((i) => normalizeIpv6(i.address) ?? i.address);
  if (addrs.length === 1) return addrs[0]!;
  throw new ConfigError(
    addrs.length === 0
      ? `--interface ${iface} has no global or unique-local IPv6 address; assign one (ip -6 addr add fd00:99::1/64 dev ${iface}) or pass --address6`
      : `--interface ${iface} has several IPv6 addresses (${addrs.join(', ')}); pass --address6 to choose one`,
    { setting: 'address6' },
  );
}
