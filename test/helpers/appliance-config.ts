/**
 * The configuration of an appliance for in-process tests: every service on 127.0.0.1 port 0,
 * proxy DHCP, and a fresh temp directory holding `db.json` (not created) and an empty `assets/`.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';

/** A loopback config; `extra` flags override or add (`'api-token'`, `'dhcp-mode'` ...). */
export function loopbackApplianceConfig(extra: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-'));
  mkdirSync(join(dir, 'assets'));
  return loadConfig({
    env: {},
    flags: {
      address: '127.0.0.1',
      'http-port': '0',
      'tftp-port': '0',
      'dhcp-port': '0',
      'proxy-port': '0',
      'dhcp-mode': 'proxy',
      db: join(dir, 'db.json'),
      assets: join(dir, 'assets'),
      ...extra,
    },
  });
}
