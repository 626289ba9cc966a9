/**
 * The event log's address maps (src/events.ts): only the DHCP side's own view, or an event its
 * recorder flagged addressTrusted, teaches macForIp/lastIp. A request's MAC is a claim.
 */
import test from 'ava';
import { createEventLog, teachesAddress, type BootEventType } from '../src/events.js';

const VICTIM = '52:54:00:15:aa:01';

test('DHCP sightings teach the maps; NAK, release, decline and refusals do not', (t) => {
  for (const type of ['dhcp-offer', 'dhcp-ack', 'dhcp-request', 'dhcp6-advertise', 'dhcp6-reply'] as BootEventType[])
    t.true(teachesAddress({ type, mac: VICTIM, ip: '10.0.0.5' }), type);
  for (const type of ['dhcp-nak', 'dhcp-release', 'dhcp-decline', 'dhcp-refused'] as BootEventType[])
    t.false(teachesAddress({ type, mac: VICTIM, ip: '10.0.0.5' }), type);
  t.false(teachesAddress({ type: 'dhcp-ack', mac: VICTIM, ip: '0.0.0.0' }));
  t.false(teachesAddress({ type: 'dhcp-ack', mac: '', ip: '10.0.0.5' }));
});

test('request events teach the maps only when flagged addressTrusted', (t) => {
  for (const type of ['http-script', 'http-asset', 'http-cloud-config', 'facts', 'tftp-file', 'grub-script', 'state'] as BootEventType[]) {
    t.false(teachesAddress({ type, mac: VICTIM, ip: '10.0.0.66' }), type);
    t.true(teachesAddress({ type, mac: VICTIM, ip: '10.0.0.66', addressTrusted: true }), type);
  }
});

test('a stranger naming the victim leaves its address on the timeline and out of the maps', (t) => {
  const events = createEventLog();
  events.record({ type: 'dhcp-ack', mac: VICTIM, ip: '10.0.0.5' });
  events.record({ type: 'http-script', mac: VICTIM, ip: '10.0.0.66' });
  events.record({ type: 'facts', mac: VICTIM, ip: '10.0.0.66', detail: { verified: false } });
  // A NAK for an address another machine holds, a refused claim: not where VICTIM is.
  events.record({ type: 'dhcp-refused', mac: VICTIM, ip: '10.0.0.7' });
  t.is(events.lastIp(VICTIM), '10.0.0.5');
  t.is(events.macForIp('10.0.0.66'), undefined);
  t.is(events.macForIp('10.0.0.7'), undefined);
  t.deepEqual(
    events.list({ mac: VICTIM }).map((e) => e.ip),
    ['10.0.0.5', '10.0.0.66', '10.0.0.66', '10.0.0.7'],
  );
  events.record({ type: 'http-script', mac: VICTIM, ip: '10.0.0.9', addressTrusted: true });
  t.is(events.lastIp(VICTIM), '10.0.0.9');
  t.is(events.macForIp('10.0.0.9'), VICTIM);
});

test('timelineMac attributes a MAC-less request to the MAC its address last claimed, the DHCP view first; identity and lookups stay DHCP-only', (t) => {
  const events = createEventLog({ machines: 32 });
  // No DHCP view of 10.0.2.15 (QEMU's user network): the script request names its MAC.
  events.record({ type: 'http-script', mac: VICTIM, ip: '10.0.2.15' });
  t.is(events.timelineMac('10.0.2.15'), VICTIM, 'the kernel fetch from that address joins its timeline');
  t.is(events.macForIp('10.0.2.15'), undefined, 'but it is nobody for what is served');
  t.is(events.lastIp(VICTIM), undefined, 'and lookups do not move');
  // The DHCP side's view wins over a claim.
  events.record({ type: 'dhcp-ack', mac: '52:54:00:15:aa:02', ip: '10.0.2.15' });
  t.is(events.timelineMac('10.0.2.15'), '52:54:00:15:aa:02');
  // Claims are bounded like the machines: a flood of addresses cannot grow the table.
  for (let i = 0; i < 1000; i++) events.record({ type: 'http-script', mac: VICTIM, ip: `10.1.${i >> 8}.${i & 255}` });
  t.is(events.timelineMac('10.1.0.0'), undefined, 'the oldest claims went first');
  t.is(events.timelineMac('10.1.3.231'), VICTIM);
});
