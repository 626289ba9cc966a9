/**
 * The DHCPv6 lease budget (src/dhcp6/budget.ts) through the server decisions: one client may
 * not exhaust the pool by many IA_NAs, many DUIDs from one host, a burst of new DUIDs, or a
 * flood that fills the table; known clients are always answered again. Pure: time passed in.
 */
import test from 'ava';
import { decideServer6, type Decision6, type Dhcp6Config } from '../../src/dhcp6/boot.js';
import { createLease6Budget, type Lease6Limits } from '../../src/dhcp6/budget.js';
import { Lease6Pool } from '../../src/dhcp6/leases.js';
import {
  decodeIaNa,
  decodeMessage,
  decodeStatus,
  duidLl,
  encodeIaNa,
  encodeMessage,
  findOption,
  Msg6,
  Opt6,
  readClientMessage,
  Status6,
  type Message6,
} from '../../src/dhcp6/packet.js';
import { SERVER_DUID } from './helpers.js';

const CONFIG: Dhcp6Config = { serverDuid: SERVER_DUID, address: 'fd00:126::1', httpPort: 8080, leaseSeconds: 3600 };
const NOW = Date.parse('2026-12-01T12:00:00Z');
const HOST = 'fe80::5054:ff:fe12:6004';

const bigPool = () => new Lease6Pool({ range: { start: 'fd00:126::1000', end: 'fd00:126::1fff' }, leaseSeconds: 3600 });
const mac = (i: number) => `02:00:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;

function solicit(duid: Buffer, iaids: number[], type: number = Msg6.SOLICIT, serverId?: Buffer): Message6 {
  return {
    type,
    transactionId: 7,
    options: [
      { code: Opt6.CLIENT_ID, data: duid },
      ...(serverId ? [{ code: Opt6.SERVER_ID, data: serverId }] : []),
      ...iaids.map((iaid) => encodeIaNa({ iaid, t1: 0, t2: 0, addresses: [] })),
    ],
  };
}

function ask(pool: Lease6Pool, budget: ReturnType<typeof createLease6Budget>, m: Message6, now = NOW, host = HOST) {
  const d: Decision6 = decideServer6(readClientMessage(decodeMessage(encodeMessage(m))), host, 'dhcp', CONFIG, pool, now, budget);
  if (d.kind !== 'reply') throw new Error(`ignored: ${d.reason}`);
  const ias = decodeMessage(encodeMessage(d.reply))
    .options.filter((o) => o.code === Opt6.IA_NA)
    .map((o) => decodeIaNa(o.data));
  return { d, ias, granted: ias.filter((ia) => ia.addresses.length > 0).length };
}

const limits = (l: Partial<Lease6Limits>) => createLease6Budget({ newLeasesPerMinute: 0, ...l });

test('IA_NA per client: a Solicit with 10 IA_NAs gets 4 addresses, the rest NoAddrsAvail with the reason', (t) => {
  const pool = bigPool();
  const { d, ias, granted } = ask(pool, limits({}), solicit(duidLl(mac(1)), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
  t.is(granted, 4);
  t.is(ias.length, 10);
  t.deepEqual(ias[9]!.status?.code, Status6.NO_ADDRS_AVAIL);
  t.regex(ias[9]!.status!.message, /already holds 4 addresses/);
  t.is(d.kind === 'reply' ? d.refused?.[0]?.cap : undefined, 'ia-per-client');
  // The same client asking again in another message for more IAs: still 4 in all.
  t.is(ask(pool, limits({}), solicit(duidLl(mac(1)), [11, 12])).granted, 0);
});

test('DUIDs per host: the 9th new DUID from one link-local address is refused; another host is served; known clients are answered again', (t) => {
  const pool = bigPool();
  const budget = limits({ maxClientsPerHost: 8 });
  for (let i = 0; i < 8; i++) t.is(ask(pool, budget, solicit(duidLl(mac(i)), [1])).granted, 1, `client ${i}`);
  const ninth = ask(pool, budget, solicit(duidLl(mac(8)), [1]));
  t.is(ninth.granted, 0);
  t.is(ninth.d.kind === 'reply' ? ninth.d.refused?.[0]?.cap : undefined, 'clients-per-host');
  t.regex(ninth.ias[0]!.status!.message, /8 DUIDs from fe80::5054:ff:fe12:6004 already hold addresses/);
  // Top-level status of an Advertise with no address says why.
  const top = findOption(ninth.d.kind === 'reply' ? ninth.d.reply.options : [], Opt6.STATUS_CODE);
  t.regex(decodeStatus(top!.data).message, /already hold addresses/);
  // A client that was advertised an address gets it again and can bind it (no new budget).
  t.is(ask(pool, budget, solicit(duidLl(mac(3)), [1])).granted, 1);
  t.is(ask(pool, budget, solicit(duidLl(mac(3)), [1], Msg6.REQUEST, SERVER_DUID)).granted, 1);
  // Another host still gets an address: the pool was not exhausted.
  t.is(ask(pool, budget, solicit(duidLl(mac(100)), [1]), NOW, 'fe80::1:2ff:fe00:64').granted, 1);
  // Advertised holds expire (60 s): the host may take new DUIDs again, within its rate.
  t.is(ask(pool, budget, solicit(duidLl(mac(9)), [1]), NOW + 61_000).granted, 1);
});

test('new DUIDs per host per minute: a burst is cut at the limit even when their holds expire at once', (t) => {
  const pool = new Lease6Pool({ range: { start: 'fd00:126::1000', end: 'fd00:126::1fff' }, leaseSeconds: 3600, offerHoldSeconds: 0 });
  const budget = limits({ maxClientsPerHost: 4 });
  let granted = 0;
  let rate = 0;
  for (let i = 0; i < 20; i++) {
    const r = ask(pool, budget, solicit(duidLl(mac(i)), [1]), NOW + i);
    granted += r.granted;
    if (r.d.kind === 'reply' && r.d.refused?.[0]?.cap === 'host-rate') rate += 1;
  }
  t.is(granted, 4);
  t.is(rate, 16);
  // A minute later the bucket is full again.
  t.is(ask(pool, budget, solicit(duidLl(mac(50)), [1]), NOW + 60_000).granted, 1);
});

test('new leases per segment per minute: many hosts together are cut at the segment rate', (t) => {
  const pool = bigPool();
  const budget = createLease6Budget({ newLeasesPerMinute: 10 });
  let granted = 0;
  for (let i = 0; i < 30; i++) granted += ask(pool, budget, solicit(duidLl(mac(i)), [1]), NOW, `fe80::${i + 1}`).granted;
  t.is(granted, 10);
});

test('the lease table is bounded: dead records are forgotten first, then new clients are refused', (t) => {
  const pool = new Lease6Pool({ range: { start: 'fd00:126::', end: 'fd00:126::ffff:ffff:ffff:ffff' }, leaseSeconds: 3600 });
  const budget = limits({ maxLeases: 16, maxClientsPerHost: 1000 });
  for (let i = 0; i < 16; i++) t.is(ask(pool, budget, solicit(duidLl(mac(i)), [1])).granted, 1);
  const full = ask(pool, budget, solicit(duidLl(mac(16)), [1]));
  t.is(full.granted, 0);
  t.is(full.d.kind === 'reply' ? full.d.refused?.[0]?.cap : undefined, 'leases');
  t.is(pool.records(), 16);
  // The holds expire: the table is pruned and the newcomer served.
  t.is(ask(pool, budget, solicit(duidLl(mac(16)), [1]), NOW + 61_000).granted, 1);
  t.is(pool.records(), 1);
});
