/**
 * test/tftp/limits.test.ts again with the server on two threads (TFTP_TEST_THREADS, helpers.ts):
 * every other transfer of a cached file is sent by a transfer thread (src/tftp/transfer-threads.ts),
 * the first one included, so each test's behaviour is checked on a thread too.
 */
process.env.TFTP_TEST_THREADS = '2';
await import('./limits.test.js');
