/** Bounded tables (src/bounded-map.ts) and the event log's bound on machines (src/events.ts). */
import test from 'ava';
import { trimOldest } from '../src/bounded-map.js';
import { createEventLog } from '../src/events.js';

test('trimOldest: nothing below the bound; a full table drops its oldest 1/16 in one go, newest kept', (t) => {
  const map = new Map<number, string>();
  const dropped: number[] = [];
  for (let i = 0; i < 1600; i++) {
    map.set(i, `v${i}`);
    trimOldest(map, 1600, (k) => dropped.push(k));
  }
  t.is(map.size, 1600);
  t.deepEqual(dropped, []);
  map.set(1600, 'v1600');
  trimOldest(map, 1600, (k) => dropped.push(k));
  // 1 over the bound plus 1600/16.
  t.deepEqual(
    dropped,
    Array.from({ length: 101 }, (_, i) => i),
  );
  t.is(map.size, 1500);
  t.true(map.has(1600) && map.has(101) && !map.has(100));
});

test('trimOldest: a small table (max < 16) drops exactly the oldest entry; re-inserted keys count as new', (t) => {
  const map = new Map<string, number>([
    ['a', 1],
    ['b', 2],
  ]);
  map.delete('a');
  map.set('a', 3);
  map.set('c', 4);
  trimOldest(map, 2);
  t.deepEqual([...map.keys()], ['a', 'c']);
});

test('trimOldest: a table churned far past its bound stays bounded', (t) => {
  const map = new Map<string, number>();
  for (let i = 0; i < 100_000; i++) {
    map.set(`k${i}`, i);
    trimOldest(map, 10_000);
    t.true(map.size <= 10_000);
  }
  t.true(map.size >= 10_000 - 10_000 / 16);
  t.true(map.has('k99999'));
});

test('event log: machines beyond the bound are forgotten with the addresses they were seen at', (t) => {
  const events = createEventLog({ machines: 4 });
  events.record({ type: 'dhcp-ack', mac: '52:54:00:00:00:01', ip: '10.0.0.1' });
  for (let i = 2; i <= 5; i++) events.record({ type: 'dhcp-ack', mac: `52:54:00:00:00:0${i}`, ip: `10.0.0.${i}` });
  t.deepEqual(events.list({ mac: '52:54:00:00:00:01' }), []);
  t.is(events.lastIp('52:54:00:00:00:01'), undefined);
  t.is(events.macForIp('10.0.0.1'), undefined);
  t.is(events.lastIp('52:54:00:00:00:05'), '10.0.0.5');
  t.is(events.macForIp('10.0.0.2'), '52:54:00:00:00:02');
});

test('event log: forgetting a machine keeps an address another machine took since', (t) => {
  const events = createEventLog({ machines: 2 });
  events.record({ type: 'dhcp-ack', mac: '52:54:00:00:00:01', ip: '10.0.0.1' });
  events.record({ type: 'dhcp-ack', mac: '52:54:00:00:00:02', ip: '10.0.0.1' });
  events.record({ type: 'dhcp-ack', mac: '52:54:00:00:00:03', ip: '10.0.0.3' });
  t.is(events.macForIp('10.0.0.1'), '52:54:00:00:00:02');
});
