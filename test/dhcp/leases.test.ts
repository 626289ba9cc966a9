import test from 'ava';
import { hasCode } from '../../src/errors.js';
import { LeasePool, clientRef, parseDhcpRange, validateRange, type Reservation } from '../../src/dhcp/leases.js';
import { parseCidr } from '../../src/dhcp/subnet.js';

const NET = parseCidr('10.99.0.0/24')!;
const OTHER = parseCidr('10.98.0.0/24')!;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const HOUR = 3_600_000;
const A = clientRef('52:54:00:00:00:0a');
const B = clientRef('52:54:00:00:00:0b');
const C = clientRef('52:54:00:00:00:0c');

function pool(range = { start: '10.99.0.10', end: '10.99.0.12' }, reservations: Reservation[] = [], extra: { exclude?: string[] } = {}): LeasePool {
  return new LeasePool({ ranges: [{ ...range, subnet: NET }], exclude: extra.exclude ?? ['10.99.0.1'], reservations: () => reservations });
}

function ipOf(r: ReturnType<LeasePool['offer']>): string | undefined {
  return r.ok ? r.ip : undefined;
}

test('parseDhcpRange: valid ranges and coded errors', (t) => {
  t.deepEqual(parseDhcpRange('10.99.0.100-10.99.0.200'), { start: '10.99.0.100', end: '10.99.0.200' });
  t.deepEqual(parseDhcpRange(' 10.99.0.5 - 10.99.0.5 '), { start: '10.99.0.5', end: '10.99.0.5' });
  for (const [bad, msg] of [
    ['10.99.0.100', /START-END/],
    ['10.99.0.200-10.99.0.100', /ends before it starts/],
    ['10.99.0.300-10.99.0.400', /start "10.99.0.300" is not an ipv4/],
    ['10.0.0.0-10.2.0.0', /at most 65536/],
    ['', /START-END/],
  ] as const) {
    const err = t.throws(() => parseDhcpRange(bad));
    t.true(hasCode(err, 'ERR_DHCP_RANGE'), bad);
    t.regex(err!.message, msg, bad);
  }
  t.throws(() => validateRange({ start: '10.98.0.10', end: '10.98.0.20' }, NET), { message: /not inside the served subnet 10.99.0.0\/24/ });
});

test('clientRef: option 61 of type 1 equal to chaddr is the MAC key; other ids are their own key', (t) => {
  t.deepEqual(clientRef('52:54:00:12:34:62'), { key: 'mac:52:54:00:12:34:62', mac: '52:54:00:12:34:62' });
  t.is(clientRef('52:54:00:12:34:62', Buffer.from('01525400123462', 'hex')).key, 'mac:52:54:00:12:34:62', 'iPXE 61=01+MAC keys like EDK2 without 61');
  t.is(clientRef('52:54:00:12:34:62', Buffer.from('ff0011223344', 'hex')).key, 'id:ff0011223344');
  t.is(clientRef('52:54:00:12:34:62', Buffer.from('01525400999999', 'hex')).key, 'id:01525400999999', 'type 1 with another MAC is a distinct client');
});

test('offer: never-used addresses in range order, skipping our own, network and broadcast addresses', (t) => {
  const p = new LeasePool({ ranges: [{ start: '10.99.0.0', end: '10.99.0.3', subnet: NET }], exclude: ['10.99.0.1'] });
  t.is(ipOf(p.offer(A, NET, T0)), '10.99.0.2', 'skips .0 (network) and .1 (ours)');
  const q = new LeasePool({ ranges: [{ start: '10.99.0.254', end: '10.99.0.255', subnet: NET }] });
  t.is(ipOf(q.offer(A, NET, T0)), '10.99.0.254');
  t.like(q.offer(B, NET, T0), { ok: false, exhausted: true }, '.255 is the broadcast address');
});

test('offer then request binds; offering again to the same client gives the same address', (t) => {
  const p = pool();
  const o = p.offer(A, NET, T0);
  t.like(o, { ok: true, ip: '10.99.0.10', reused: 'new' });
  t.like(p.leaseOf(A.key), { state: 'offered', ip: '10.99.0.10' });
  t.like(p.offer(B, NET, T0 + 1), { ok: true, ip: '10.99.0.11' }, 'an offered address is held for its client');
  const r = p.request(A, '10.99.0.10', NET, T0 + 2, HOUR);
  t.like(r, { ok: true, lease: { state: 'bound', ip: '10.99.0.10', expiresAt: T0 + 2 + HOUR, bound: true } });
  t.like(p.offer(A, NET, T0 + 3), { ok: true, ip: '10.99.0.10', reused: 'current' });
  t.like(p.leaseOf(A.key), { state: 'bound', expiresAt: T0 + 2 + HOUR }, 're-offering keeps the binding');
});

test('request: acceptable or the reason for a NAK', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.12' }, [{ mac: '52:54:00:00:00:0c', ip: '10.99.0.50' }]);
  t.true(p.request(A, '10.99.0.10', NET, T0, HOUR).ok);
  const rows: Array<[typeof A, string, RegExp]> = [
    [B, '10.99.0.10', /leased to mac:52:54:00:00:00:0a/],
    [B, '10.99.0.50', /reserved for 52:54:00:00:00:0c/],
    [B, '10.99.0.99', /outside the dynamic range/],
    [B, '10.98.0.10', /not on 10.99.0.0\/24/],
    [B, '10.99.0.1', /server's own address/],
    [B, '10.99.0.255', /broadcast address/],
    [C, '10.99.0.11', /has the reservation 10.99.0.50/],
  ];
  for (const [client, ip, reason] of rows) {
    const r = p.request(client, ip, NET, T0 + 1, HOUR);
    t.false(r.ok, ip);
    if (!r.ok) t.regex(r.reason, reason, ip);
  }
  t.like(
    p.request(C, '10.99.0.50', NET, T0 + 1, HOUR),
    { ok: true, reservation: { ip: '10.99.0.50' } },
    'a reservation outside the range is fine for its owner',
  );
});

test('renew extends the lease; an expired lease of the same client is renewed when still free', (t) => {
  const p = pool();
  p.request(A, '10.99.0.10', NET, T0, HOUR);
  t.like(p.request(A, '10.99.0.10', NET, T0 + HOUR / 2, HOUR), { ok: true, lease: { expiresAt: T0 + HOUR / 2 + HOUR } });
  t.like(p.request(A, '10.99.0.10', NET, T0 + 5 * HOUR, HOUR), { ok: true }, 'expired but nobody took it');
});

test('reservations: always the reserved address, never offered to anyone else, hostname returned', (t) => {
  const reservations: Reservation[] = [{ mac: '52-54-00-00-00-0A', ip: '10.99.0.11', hostname: 'node-a' }];
  const p = pool({ start: '10.99.0.10', end: '10.99.0.12' }, reservations);
  t.like(p.offer(B, NET, T0), { ok: true, ip: '10.99.0.10' });
  t.like(p.offer(C, NET, T0), { ok: true, ip: '10.99.0.12' }, 'C skips .11, reserved for A');
  const a = p.offer(A, NET, T0, '10.99.0.12');
  t.like(a, { ok: true, ip: '10.99.0.11', reused: 'reservation', reservation: { hostname: 'node-a' } });
  t.like(p.offer(clientRef('52:54:00:00:00:0d'), NET, T0), { ok: false, exhausted: true }, 'pool is full: the reserved address is not given away');
});

test('a reservation added while another client holds that address: no duplicate, the holder is NAKed on renewal', (t) => {
  const reservations: Reservation[] = [];
  const p = pool({ start: '10.99.0.10', end: '10.99.0.12' }, reservations);
  p.request(B, '10.99.0.10', NET, T0, HOUR);
  reservations.push({ mac: A.mac, ip: '10.99.0.10' });
  t.like(p.offer(A, NET, T0 + 1), { ok: false, exhausted: false });
  const renew = p.request(B, '10.99.0.10', NET, T0 + 2, HOUR);
  t.false(renew.ok);
  t.like(p.offer(A, NET, T0 + 2 * HOUR), { ok: true, ip: '10.99.0.10' }, 'once B lease expired, A gets its reservation');
  t.like(p.offer(B, NET, T0 + 2 * HOUR), { ok: true, ip: '10.99.0.11' }, 'and B moves');
});

test('exhaustion: no offer and no duplicate; offers expire and free their address', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.11' });
  t.like(p.offer(A, NET, T0), { ok: true, ip: '10.99.0.10' });
  t.like(p.offer(B, NET, T0), { ok: true, ip: '10.99.0.11' });
  const c = p.offer(C, NET, T0);
  t.like(c, { ok: false, exhausted: true });
  if (!c.ok) t.regex(c.reason, /no free address on 10.99.0.0\/24/);
  t.like(p.offer(C, NET, T0 + 61_000), { ok: true, ip: '10.99.0.10', reused: 'expired' }, 'an offer is held 60 s');
  const ips = p.snapshot().leases.map((l) => l.ip);
  t.is(new Set(ips).size, ips.length, 'one record per address');
});

test('expired leases are reused last: never-used addresses first, then the longest-expired', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.13' });
  p.request(A, '10.99.0.10', NET, T0, HOUR); // expires T0+1h
  p.request(B, '10.99.0.11', NET, T0 + HOUR, HOUR); // expires T0+2h
  const later = T0 + 10 * HOUR;
  const d = clientRef('52:54:00:00:00:0d');
  const e = clientRef('52:54:00:00:00:0e');
  const f = clientRef('52:54:00:00:00:0f');
  t.like(p.offer(C, NET, later), { ok: true, ip: '10.99.0.12', reused: 'new' });
  t.like(p.offer(d, NET, later), { ok: true, ip: '10.99.0.13', reused: 'new' });
  t.like(p.offer(e, NET, later), { ok: true, ip: '10.99.0.10', reused: 'expired' }, 'A expired first');
  t.like(p.offer(f, NET, later), { ok: true, ip: '10.99.0.11', reused: 'expired' });
  t.is(p.leaseOf(A.key), undefined, 'the old record is gone with its address');
});

test('a returning client gets its previous address back while free, even after expiry or release', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.13' });
  p.request(A, '10.99.0.12', NET, T0, HOUR);
  t.like(p.offer(A, NET, T0 + 5 * HOUR), { ok: true, ip: '10.99.0.12', reused: 'current' });
  p.request(A, '10.99.0.12', NET, T0 + 5 * HOUR, HOUR);
  t.true(p.release(A, '10.99.0.12', T0 + 5 * HOUR + 1));
  t.like(p.leaseOf(A.key), { state: 'released' });
  t.like(p.offer(B, NET, T0 + 5 * HOUR + 2), { ok: true, ip: '10.99.0.10' }, 'others prefer never-used addresses');
  t.like(p.offer(A, NET, T0 + 5 * HOUR + 3), { ok: true, ip: '10.99.0.12' });
});

test('the search goes on from the last address handed out and wraps around, so a freed address is found again', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.12' });
  const d = clientRef('52:54:00:00:00:0d');
  t.like(p.offer(A, NET, T0), { ok: true, ip: '10.99.0.10' });
  t.true(p.abandonOffer(A, T0));
  t.like(p.offer(B, NET, T0), { ok: true, ip: '10.99.0.11' }, 'continues after .10');
  t.like(p.offer(C, NET, T0), { ok: true, ip: '10.99.0.12' });
  t.like(p.offer(d, NET, T0), { ok: true, ip: '10.99.0.10', reused: 'new' }, 'wraps to the freed .10');
});

test('500 reservations and a /16: an offer stays cheap', (t) => {
  const big = parseCidr('10.0.0.0/16')!;
  const reservations: Reservation[] = Array.from({ length: 500 }, (_, i) => ({
    mac: `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    ip: `10.0.200.${i % 250}`,
  }));
  const p = new LeasePool({ ranges: [{ start: '10.0.0.1', end: '10.0.255.254', subnet: big }], reservations: () => reservations });
  const started = Date.now();
  for (let i = 0; i < 3000; i++) {
    const c = clientRef(`04:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`);
    const o = p.offer(c, big, T0);
    if (!o.ok) return t.fail(o.reason);
    p.request(c, o.ip, big, T0, HOUR);
  }
  const ms = Date.now() - started;
  t.true(ms < 10_000, `3000 offers and requests took ${ms} ms`);
  t.like(p.usage(T0), { bound: 3000, reserved: 500 });
});

test('requested address (option 50) is honoured when free, ignored when not', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.13' });
  p.request(B, '10.99.0.12', NET, T0, HOUR);
  t.like(p.offer(A, NET, T0, '10.99.0.13'), { ok: true, ip: '10.99.0.13', reused: 'requested' });
  t.like(p.offer(C, NET, T0, '10.99.0.12'), { ok: true, ip: '10.99.0.10', reused: 'new' });
});

test('decline: the address is not offered for 10 minutes and the client gets another', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.11' });
  p.offer(A, NET, T0);
  p.request(A, '10.99.0.10', NET, T0, HOUR);
  t.false(p.decline(B, '10.99.0.10', T0), 'only the holder may decline');
  t.true(p.decline(A, '10.99.0.10', T0 + 1));
  t.like(p.offer(A, NET, T0 + 2), { ok: true, ip: '10.99.0.11' });
  t.like(p.offer(B, NET, T0 + 3), { ok: false, exhausted: true }, 'the declined address is out of use');
  const r = p.request(B, '10.99.0.10', NET, T0 + 4, HOUR);
  t.false(r.ok);
  if (!r.ok) t.regex(r.reason, /declined/);
  t.like(p.offer(B, NET, T0 + 1 + 600_000), { ok: true, ip: '10.99.0.10' }, 'usable again after 10 min');
  t.is(p.pruneDeclined(T0 + 1 + 600_000), 1);
});

test('client id versus MAC: different ids on one MAC are different clients; 01+MAC is the MAC', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.13' });
  const mac = '52:54:00:00:00:0a';
  const byMac = clientRef(mac);
  const byId1 = clientRef(mac, Buffer.from('ff00000001', 'hex'));
  const byId2 = clientRef(mac, Buffer.from('ff00000002', 'hex'));
  p.request(byMac, '10.99.0.10', NET, T0, HOUR);
  t.like(p.offer(clientRef(mac, Buffer.from('015254000000' + '0a', 'hex')), NET, T0), { ok: true, ip: '10.99.0.10', reused: 'current' });
  t.like(p.offer(byId1, NET, T0), { ok: true, ip: '10.99.0.11' });
  t.like(p.offer(byId2, NET, T0), { ok: true, ip: '10.99.0.12' });
});

test('abandonOffer: an offer the client turned down is freed at once; a binding is not', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.10' });
  p.offer(A, NET, T0);
  t.like(p.offer(B, NET, T0), { ok: false });
  t.true(p.abandonOffer(A, T0 + 1));
  t.like(p.offer(B, NET, T0 + 2), { ok: true, ip: '10.99.0.10' });
  p.request(B, '10.99.0.10', NET, T0 + 3, HOUR);
  t.false(p.abandonOffer(B, T0 + 4));
  t.like(p.leaseOf(B.key), { state: 'bound' });
});

test('several networks: each request allocates from its own subnet only', (t) => {
  const p = new LeasePool({
    ranges: [
      { start: '10.99.0.10', end: '10.99.0.10', subnet: NET },
      { start: '10.98.0.10', end: '10.98.0.11', subnet: OTHER },
    ],
  });
  t.like(p.offer(A, OTHER, T0), { ok: true, ip: '10.98.0.10' });
  t.like(p.offer(B, NET, T0), { ok: true, ip: '10.99.0.10' });
  t.like(p.offer(C, NET, T0), { ok: false, exhausted: true });
  t.like(p.offer(A, NET, T0 + 1), { ok: false }, 'A current address is on the other network');
});

test('snapshot and load round-trip, keeping one record per address', (t) => {
  const p = pool({ start: '10.99.0.10', end: '10.99.0.12' });
  p.request(A, '10.99.0.10', NET, T0, HOUR);
  p.request(B, '10.99.0.11', NET, T0, HOUR);
  p.offer(C, NET, T0);
  p.decline(C, '10.99.0.12', T0);
  const snap = p.snapshot();
  const q = pool({ start: '10.99.0.10', end: '10.99.0.12' });
  q.load(snap);
  t.deepEqual(q.snapshot(), snap);
  t.like(q.offer(clientRef('52:54:00:00:00:0d'), NET, T0 + 1), { ok: false, exhausted: true });
  t.like(q.offer(A, NET, T0 + 1), { ok: true, ip: '10.99.0.10' });
});

test('random operations never bind one address to two clients with unexpired leases', (t) => {
  // Deterministic LCG so a failure reproduces.
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const reservations: Reservation[] = [{ mac: '52:54:00:00:01:03', ip: '10.99.0.12' }];
  const p = pool({ start: '10.99.0.10', end: '10.99.0.17' }, reservations);
  const clients = Array.from({ length: 14 }, (_, i) => clientRef(`52:54:00:00:01:${i.toString(16).padStart(2, '0')}`));
  let now = T0;
  for (let step = 0; step < 5000; step++) {
    now += rnd(120_000);
    const c = clients[rnd(clients.length)]!;
    const op = rnd(5);
    if (op === 0 || op === 1) {
      const o = p.offer(c, NET, now);
      if (o.ok && rnd(3) > 0) p.request(c, o.ip, NET, now, 600_000);
    } else if (op === 2) {
      const l = p.leaseOf(c.key);
      if (l) p.request(c, l.ip, NET, now, 600_000);
    } else if (op === 3) {
      const l = p.leaseOf(c.key);
      if (l) p.release(c, l.ip, now);
    } else {
      const l = p.leaseOf(c.key);
      if (l && rnd(10) === 0) p.decline(c, l.ip, now);
    }
    const live = p.snapshot().leases.filter((l) => l.expiresAt > now);
    const ips = live.map((l) => l.ip);
    if (new Set(ips).size !== ips.length) {
      t.fail(`duplicate at step ${step}: ${JSON.stringify(live)}`);
      return;
    }
    for (const l of live) {
      if (l.ip === '10.99.0.12' && l.mac !== '52:54:00:00:01:03') {
        t.fail(`reserved address given to ${l.mac} at step ${step}`);
        return;
      }
    }
  }
  t.pass();
});
