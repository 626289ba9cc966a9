import test from 'ava';
import { createBootSessions } from '../../src/http/boot-sessions.js';

const A = '52:54:00:00:00:0a';
const B = '52:54:00:00:00:0b';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const dhcp = (mac: string, ip: string) => ({ type: 'dhcp-ack' as const, mac, ip, at: new Date().toISOString() });

test('a token of the address DHCP saw is trusted once; a replay, another machine and another address are refused', (t) => {
  const s = createBootSessions({ now: clock().now });
  s.noteEvent(dhcp(A, '10.0.0.10'));
  s.noteEvent(dhcp(B, '10.0.0.11'));
  const a = s.issue(A, '10.0.0.10', 'ipxe');
  const b = s.issue(B, '10.0.0.11', 'ipxe');
  t.regex(a.token, /^[0-9a-f]{32}$/);
  t.not(a.token, b.token);
  t.deepEqual(s.redeem(a.token, B, '10.0.0.11'), { kind: 'refused', reason: 'this facts token belongs to another machine' });
  t.deepEqual(s.redeem(a.token, A, '10.0.0.99'), { kind: 'refused', reason: 'the facts token was issued to 10.0.0.10, not 10.0.0.99' });
  t.is(s.redeem(a.token, A, '10.0.0.10').kind, 'trusted');
  t.deepEqual(s.redeem(a.token, A, '10.0.0.10'), { kind: 'refused', reason: 'the facts token was already used' });
  t.deepEqual(s.redeem('0'.repeat(32), A, '10.0.0.10'), { kind: 'refused', reason: 'unknown facts token' });
  t.deepEqual(s.redeem('not hex', A, '10.0.0.10'), { kind: 'refused', reason: 'unknown facts token' });
  t.is(s.redeem(b.token, B, '10.0.0.11').kind, 'trusted');
});

test('an expired token is refused; repeated scripts to one address share a session until it is used', (t) => {
  const c = clock();
  const s = createBootSessions({ now: c.now, ttlSeconds: 60 });
  s.noteEvent(dhcp(A, '10.0.0.10'));
  const first = s.issue(A, '10.0.0.10', 'ipxe');
  t.is(s.issue(A, '10.0.0.10', 'ipxe').token, first.token, 'a retry loop must not mint a token per request');
  c.advance(61_000);
  t.deepEqual(s.redeem(first.token, A, '10.0.0.10'), { kind: 'refused', reason: 'the facts token has expired' });
  const next = s.issue(A, '10.0.0.10', 'ipxe');
  t.not(next.token, first.token);
});

test('a stranger who fetched the script holds a valid token, but its report is untrusted: DHCP never saw the MAC there', (t) => {
  const s = createBootSessions({ now: clock().now });
  s.noteEvent(dhcp(A, '10.0.0.10'));
  const stranger = s.issue(A, '10.0.0.66', 'ipxe');
  const own = s.issue(A, '10.0.0.10', 'ipxe');
  t.deepEqual(s.redeem(stranger.token, A, '10.0.0.66'), { kind: 'untrusted', session: stranger, reason: `DHCP never saw ${A} at 10.0.0.66` });
  // The stranger's request does not make the machine's own boot untrusted.
  t.deepEqual(s.trusted(A, '10.0.0.10'), { ok: true });
  t.is(s.redeem(own.token, A, '10.0.0.10').kind, 'trusted');
  t.false(s.trusted(A, '10.0.0.66').ok);
});

test('two addresses DHCP saw for one MAC both fetching scripts: contested, nobody is trusted', (t) => {
  const s = createBootSessions({ now: clock().now });
  s.noteEvent(dhcp(A, '10.0.0.10'));
  s.noteEvent(dhcp(A, '10.0.0.20'));
  const one = s.issue(A, '10.0.0.10', 'ipxe');
  s.issue(A, '10.0.0.20', 'ipxe');
  t.deepEqual(s.trusted(A, '10.0.0.10'), { ok: false, reason: `boot scripts for ${A} also went to 10.0.0.20` });
  t.like(s.redeem(one.token, A, '10.0.0.10'), { kind: 'untrusted', reason: `boot scripts for ${A} also went to 10.0.0.20` });
});

test('HTTP events teach nothing (anyone can send them); binding none trusts every address', (t) => {
  const s = createBootSessions({ now: clock().now });
  s.noteEvent({ type: 'http-script', mac: A, ip: '10.0.0.66', at: new Date().toISOString() });
  s.noteEvent({ type: 'dhcp-offer', mac: A, ip: '0.0.0.0', at: new Date().toISOString() });
  t.false(s.dhcpSaw(A, '10.0.0.66'));
  const none = createBootSessions({ binding: 'none', now: clock().now });
  const x = none.issue(A, '10.0.0.66', 'ipxe');
  t.is(none.redeem(x.token, A, '10.0.0.66').kind, 'trusted');
});

test('bounded: the oldest sessions go first, a few per MAC, a cap in all', (t) => {
  const s = createBootSessions({ now: clock().now, maxSessions: 16, binding: 'none' });
  const firstOfA = s.issue(A, '10.0.1.0', 'ipxe');
  for (let i = 1; i <= 8; i++) s.issue(A, `10.0.1.${i}`, 'ipxe');
  t.is(s.redeem(firstOfA.token, A, '10.0.1.0').kind, 'refused', 'a MAC keeps at most 8 sessions');
  const macs = Array.from({ length: 20 }, (_, i) => `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`);
  const tokens = macs.map((m) => s.issue(m, '10.0.2.1', 'ipxe').token);
  t.is(s.redeem(tokens[0]!, macs[0]!, '10.0.2.1').kind, 'refused');
  t.is(s.redeem(tokens.at(-1)!, macs.at(-1)!, '10.0.2.1').kind, 'trusted');
});

test('a DHCPv6 Reply ties the addresses it leased to the MAC (IPv6 boots are attributed too); the event log is consulted as well', (t) => {
  const s = createBootSessions({ now: clock().now });
  s.noteEvent({ type: 'dhcp6-reply', mac: A, ip: 'fe80::5054:ff:fe00:a', at: new Date().toISOString(), detail: { addresses: ['fd00:99::1:10'] } });
  t.true(s.dhcpSaw(A, 'fd00:99::1:10'));
  t.false(s.dhcpSaw(B, 'fd00:99::1:10'));
  const own = s.issue(A, 'fd00:99::1:10', 'ipxe');
  t.is(s.redeem(own.token, A, 'fd00:99::1:10').kind, 'trusted');
  const fromLog = createBootSessions({
    history: (mac) => (mac === B ? [{ type: 'dhcp-request', mac: B, ip: '10.0.0.11', at: new Date().toISOString() }] : []),
  });
  t.true(fromLog.dhcpSaw(B, '10.0.0.11'));
  t.false(fromLog.dhcpSaw(A, '10.0.0.11'));
});
