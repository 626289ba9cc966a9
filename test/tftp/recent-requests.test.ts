/** When each client last asked for each name (src/tftp/recent-requests.ts): bounded, clock passed in. */
import test from 'ava';
import { createRecentRequests } from '../../src/tftp/recent-requests.js';

test('a request counts only after the time asked about; names are per address', (t) => {
  let now = 1000;
  const recent = createRecentRequests(16, () => now);
  recent.note('10.0.0.1', 'ipxe.efi');
  t.true(recent.askedSince('10.0.0.1', 'ipxe.efi', 999));
  t.false(recent.askedSince('10.0.0.1', 'ipxe.efi', 1000));
  t.false(recent.askedSince('10.0.0.2', 'ipxe.efi', 0));
  t.false(recent.askedSince('10.0.0.1', 'undionly.kpxe', 0));
  now = 2000;
  recent.note('10.0.0.1', 'ipxe.efi');
  t.true(recent.askedSince('10.0.0.1', 'ipxe.efi', 1500));
  t.is(recent.size, 1);
});

test('bounded: a flood of distinct names keeps at most the bound, the newest kept and a re-asked name kept as new', (t) => {
  let now = 0;
  const recent = createRecentRequests(4096, () => now);
  recent.note('10.0.0.1', 'kept');
  for (let i = 0; i < 20_000; i++) {
    now += 1;
    recent.note(`10.0.${i >> 8}.${i & 255}`, `file-${i}`);
    // Asked again now and then: moves to the newest end, so the flood never pushes it out.
    if (i % 1000 === 0) recent.note('10.0.0.1', 'kept');
    t.true(recent.size <= 4096);
  }
  // Trimmed in batches (bounded-map.ts): between 15/16 of the bound and the bound.
  t.true(recent.size >= 4096 - 4096 / 16, `${recent.size}`);
  t.true(recent.askedSince('10.0.0.1', 'kept', 0));
  t.true(recent.askedSince('10.0.78.31', 'file-19999', 0));
  t.false(recent.askedSince('10.0.0.0', 'file-0', 0), 'the oldest forgotten');
});

test('names are clipped to 512 characters, so a long name costs no more than a short one', (t) => {
  const recent = createRecentRequests();
  recent.note('10.0.0.1', 'x'.repeat(100_000));
  t.true(recent.askedSince('10.0.0.1', 'x'.repeat(600), -1));
});
