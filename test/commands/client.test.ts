/** The pure parts of the client commands: event-stream parsing and the follow cursor. */
import test from 'ava';
import { parseEventStream } from '../../src/commands/client.js';
import { EventCursor } from '../../src/commands/remote.js';
import { didYouMean } from '../../src/commands/command.js';

test('parseEventStream splits complete events, keeps the unfinished rest, skips comments', (t) => {
  const { events, rest } = parseEventStream('retry: 3000\n\n: ping\n\nevent: boot\ndata: {"a":1}\n\nevent: ready\r\ndata: {}\r\n\r\nevent: boot\ndata: {"b"');
  t.deepEqual(events, [
    { event: 'boot', data: '{"a":1}' },
    { event: 'ready', data: '{}' },
  ]);
  t.is(rest, 'event: boot\ndata: {"b"');
});

test('EventCursor returns each event once, oldest first, across overlapping batches', (t) => {
  const e = (at: string, type: string) => ({ at, mac: '52:54:00:00:00:01', type: type as 'dhcp-offer' });
  const c = new EventCursor();
  t.deepEqual(
    c.fresh([e('2026-12-01T10:00:02Z', 'dhcp-ack'), e('2026-12-01T10:00:01Z', 'dhcp-offer')]).map((x) => x.type),
    ['dhcp-offer', 'dhcp-ack'],
  );
  // Same second, a new event; the old ones again.
  t.deepEqual(
    c.fresh([e('2026-12-01T10:00:01Z', 'dhcp-offer'), e('2026-12-01T10:00:02Z', 'dhcp-ack'), e('2026-12-01T10:00:02Z', 'tftp-file')]).map((x) => x.type),
    ['tftp-file'],
  );
  t.deepEqual(c.fresh([e('2026-12-01T10:00:02Z', 'tftp-file')]), []);
});

test('didYouMean guesses typos and prefixes, not unrelated words', (t) => {
  t.is(didYouMean('statsu', ['status', 'machines']), 'status');
  t.is(didYouMean('mach', ['status', 'machines']), 'machines');
  t.is(didYouMean('htp-port', ['http-port', 'tftp-port']), 'http-port');
  t.is(didYouMean('windows', ['ipxe', 'rancheros']), undefined);
});
