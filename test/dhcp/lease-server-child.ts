/**
 * The DHCP server mode on 127.0.0.1 in a child process, for the kill -9 test
 * (lease-journal.test.ts): `node --import=tsx lease-server-child.ts LEASE_FILE CLIENT_PORT SYNC`.
 * Prints one JSON line `{"dhcpPort":N}` when listening; runs until killed.
 */
import { createDhcpServer } from '../../src/dhcp/server-policy.js';
import { createSilentLogger } from '../../src/log.js';

const [leaseFile, clientPort, sync] = process.argv.slice(2);
if (!leaseFile || !clientPort) throw new Error('usage: lease-server-child.ts LEASE_FILE CLIENT_PORT [fdatasync|none]');
const server = createDhcpServer({
  address: '127.0.0.1',
  host: '127.0.0.1',
  dhcpPort: 0,
  proxyPort: 0,
  httpPort: 8080,
  range: { start: '127.0.1.1', end: '127.0.4.250' },
  leaseFile,
  leaseSync: sync === 'none' ? 'none' : 'fdatasync',
  newLeasesPerMinute: 0,
  clientPort: Number(clientPort),
  broadcastAddress: '127.0.0.1',
  log: createSilentLogger(),
});
const { dhcpPort } = await server.start();
process.stdout.write(`${JSON.stringify({ dhcpPort })}\n`);
