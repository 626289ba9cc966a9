/**
 * Runs the TFTP server as a child process inside a test network namespace (a Node process cannot
 * switch namespaces itself): `ip netns exec NS node --import=tsx netns-server.ts ROOT`.
 * Logs JSON lines at debug on stdout; stops on SIGTERM.
 */
import { createLogger } from '../../src/log.js';
import { createTftpServer } from '../../src/tftp/server.js';

const root = process.argv[2] ?? '/nonexistent';
const server = createTftpServer({ root, port: 69, log: createLogger({ level: 'debug', destination: process.stdout }) });
await server.start();
process.on('SIGTERM', () => {
  void server.stop().then(() => process.exit(0));
});
