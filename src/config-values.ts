/**
 * Parsing and checking of setting values for config.ts: what each kind of setting (port, path,
 * address list, range, ...) accepts from a flag, an APPLIANCE_* variable or config/appliance.json,
 * and the error that names where a bad value came from. The options table itself stays in config.ts.
 */
import { statSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { parseDhcpRange } from './dhcp/leases.js';
import { normalizeIpv6 } from './dhcp6/address.js';
import { parseDhcp6Range } from './dhcp6/leases.js';
import { ConfigError } from './errors.js';

/** The type of a setting's value: how flags, variables and file values are parsed. */
export type SettingKind = 'port' | 'path' | 'dir' | 'string' | 'ipv4' | 'ipv4list' | 'range' | 'enum' | 'int' | 'bool' | 'ipv6' | 'ipv6list' | 'range6';

/** What parsing needs of a setting (config.ts's OptionSpec has these and more). */
export interface SettingShape {
  key: string;
  flag: string;
  kind: SettingKind;
  /** Allowed values of an `enum`. */
  values?: readonly string[];
  /** Bounds of an `int`. */
  min?: number;
  max?: number;
}

/** Whether `path` is a directory (false when it does not exist or cannot be read). */
export function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * One setting's raw value (a flag's or variable's string, or a config-file JSON value) as the
 * typed value Config holds; throws ConfigError naming `where` it came from. Relative paths
 * resolve against `base`.
 */
export function coerceSetting(spec: SettingShape, value: unknown, where: string, base: string): unknown {
  // The file takes what a flag would, plus the JSON type that means the same: numbers for
  // ports and counts, booleans for switches, a list for address lists (schema/appliance-config.schema.json).
  const numeric = spec.kind === 'port' || spec.kind === 'int';
  const list =
    (spec.kind === 'ipv4list' || spec.kind === 'ipv6list') && Array.isArray(value) && value.every((v) => typeof v === 'string') ? value.join(',') : undefined;
  const text = list ?? ((typeof value === 'number' && numeric) || (typeof value === 'boolean' && spec.kind === 'bool') ? String(value) : value);
  if (typeof text !== 'string') {
    throw new ConfigError(`${where}: expected ${describeKind(spec)}, got ${JSON.stringify(value)}`, { setting: spec.key });
  }
  switch (spec.kind) {
    case 'port':
    case 'int': {
      const min = spec.kind === 'port' ? 0 : (spec.min ?? 0);
      const max = spec.kind === 'port' ? 65535 : (spec.max ?? Number.MAX_SAFE_INTEGER);
      if (!/^\d+$/.test(text.trim()) || Number(text) < min || Number(text) > max) {
        throw new ConfigError(`${where}: "${text}" is not ${describeKind(spec)}`, { setting: spec.key });
      }
      return Number(text);
    }
    case 'enum':
      if (!spec.values!.includes(text)) {
        throw new ConfigError(`${where}: "${text}" is not one of ${spec.values!.join(', ')}`, { setting: spec.key });
      }
      return text;
    case 'ipv4':
      if (!isIPv4(text)) throw new ConfigError(`${where}: "${text}" is not an IPv4 address`, { setting: spec.key });
      return text;
    case 'bool':
      if (/^(true|1|yes)$/i.test(text)) return true;
      if (/^(false|0|no)$/i.test(text)) return false;
      throw new ConfigError(`${where}: "${text}" is not true or false`, { setting: spec.key });
    case 'ipv4list': {
      const list = text
        .split(',')
        .map((a) => a.trim())
        .filter((a) => a !== '');
      const bad = list.find((a) => !isIPv4(a));
      if (list.length === 0 || bad !== undefined)
        throw new ConfigError(`${where}: "${bad ?? text}" is not an IPv4 address (expected a comma-separated list)`, { setting: spec.key });
      return Object.freeze(list);
    }
    case 'ipv6': {
      const a = normalizeIpv6(text.trim());
      if (!a) throw new ConfigError(`${where}: "${text}" is not an IPv6 address`, { setting: spec.key });
      return a;
    }
    case 'ipv6list': {
      const list = text
        .split(',')
        .map((a) => a.trim())
        .filter((a) => a !== '');
      const bad = list.find((a) => normalizeIpv6(a) === undefined);
      if (list.length === 0 || bad !== undefined)
        throw new ConfigError(`${where}: "${bad ?? text}" is not an IPv6 address (expected a comma-separated list)`, { setting: spec.key });
      return Object.freeze(list.map((a) => normalizeIpv6(a)!));
    }
    case 'range6':
      try {
        return Object.freeze(parseDhcp6Range(text));
      } catch (err) {
        throw new ConfigError(`${where}: ${(err as Error).message}`, { setting: spec.key });
      }
    case 'range':
      try {
        return Object.freeze(parseDhcpRange(text));
      } catch (err) {
        throw new ConfigError(`${where}: ${(err as Error).message}`, { setting: spec.key });
      }
    case 'string':
      if (text.length === 0) throw new ConfigError(`${where}: must not be empty`, { setting: spec.key });
      return text;
    case 'path':
    case 'dir': {
      if (text.length === 0 || text.includes('\0')) throw new ConfigError(`${where}: "${text}" is not a path`, { setting: spec.key });
      const path = isAbsolute(text) ? text : resolve(base, text);
      if (spec.kind === 'dir' && !isDirectory(path)) {
        throw new ConfigError(`${where}: directory ${path} does not exist; create it or pass another --${spec.flag}`, { setting: spec.key });
      }
      return path;
    }
  }
}

/** What a kind of setting accepts, for error messages. */
export function describeKind(spec: SettingShape): string {
  switch (spec.kind) {
    case 'port':
      return 'a port (0-65535)';
    case 'int':
      return `a whole number from ${spec.min ?? 0} to ${spec.max ?? 'any'}`;
    case 'enum':
      return `one of ${spec.values!.join(', ')}`;
    case 'ipv4':
      return 'an IPv4 address';
    case 'bool':
      return 'true or false';
    case 'ipv4list':
      return 'a list of IPv4 addresses (or one comma-separated string)';
    case 'ipv6':
      return 'an IPv6 address';
    case 'ipv6list':
      return 'a list of IPv6 addresses (or one comma-separated string)';
    default:
      return 'a string';
  }
}
