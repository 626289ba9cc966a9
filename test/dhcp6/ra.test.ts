import test from 'ava';
import { decodeRouterAdvertisement, encodeRouterAdvertisement, prefix64, serverAdvertisement } from '../../src/dhcp6/ra.js';
import { defaultDhcp6Range, Lease6Pool, parseDhcp6Range } from '../../src/dhcp6/leases.js';

test('the server-mode RA: M and O flags, router lifetime 0, the /64 on-link; the codec is symmetric', (t) => {
  const ra = serverAdvertisement('fd00:126::1', { sourceMac: '02:00:00:00:00:01' });
  const wire = encodeRouterAdvertisement(ra);
  t.is(wire[0], 134);
  t.is(wire[5], 0xc0, 'M and O');
  t.is(wire.readUInt16BE(6), 0, 'never a default router');
  t.is(wire.length, 16 + 32 + 8);
  t.deepEqual(decodeRouterAdvertisement(wire), ra);
  t.is(prefix64('fd00:126::1'), 'fd00:126::');
  t.throws(() => decodeRouterAdvertisement(Buffer.from([133, 0, 0, 0])), { code: 'ERR_RA_DECODE' });
});

test('dhcpv6 ranges: parsed, checked, defaulted inside the /64; the pool hands out each address once', (t) => {
  t.deepEqual(parseDhcp6Range('fd00:126::100 - fd00:126::0101'), { start: 'fd00:126::100', end: 'fd00:126::101' });
  t.throws(() => parseDhcp6Range('fd00::2-fd00::1'), { code: 'ERR_DHCP6_RANGE' });
  t.throws(() => parseDhcp6Range('10.0.0.1-10.0.0.2'), { code: 'ERR_DHCP6_RANGE' });
  t.deepEqual(defaultDhcp6Range('fd00:126::1'), { start: 'fd00:126::1000', end: 'fd00:126::1fff' });
  const pool = new Lease6Pool({ range: { start: 'fd00::1', end: 'fd00::3' }, leaseSeconds: 60 });
  const got = ['a', 'b', 'c'].map((k) => pool.bind(`id:${k}`, '52:54:00:00:00:01', [], 0)?.ip);
  t.deepEqual(new Set(got).size, 3);
  t.is(pool.bind('id:d', '52:54:00:00:00:01', [], 0), undefined, 'exhausted');
  t.truthy(pool.bind('id:d', '52:54:00:00:00:01', [], 61_000), 'expired leases are reused');
});
