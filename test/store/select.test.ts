import test from 'ava';
import { parseDb, type Db } from '../../src/store/schema.js';
import { selectProfile, normalizeUuid, type SelectedVia } from '../../src/store/select.js';

const U1 = '11111111-2222-3333-4444-555555555555';
const U2 = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';

// Records naming a missing profile cannot be written any more (refused at write time); the
// selection still reports them as `none` should one reach it, so they are added past parseDb.
const parsed: Db = parseDb({
  defaultProfile: 'fallback',
  profiles: ['fallback', 'by-uuid', 'by-mac', 'g-arch', 'g-label', 'g-two', 'g-mac', 'g-a', 'g-b'].map((id) => ({ id, kernel: `/assets/${id}/vmlinuz` })),
  machines: [
    { mac: '52:54:00:00:00:01', uuid: U1, profile: 'by-uuid' },
    { mac: '52:54:00:00:00:02', profile: 'by-mac' },
    { mac: '52:54:00:00:00:03', labels: { role: 'worker', rack: 'r1' } },
    { mac: '52:54:00:00:00:05', labels: { tie: 'yes' } },
  ],
  groups: [
    { id: 'arch', profile: 'g-arch', selector: { arch: 'arm64' } },
    { id: 'workers', profile: 'g-label', selector: { labels: { role: 'worker' } } },
    { id: 'workers-r1', profile: 'g-two', selector: { labels: { role: 'worker', rack: 'r1' } } },
    { id: 'one-mac', profile: 'g-mac', selector: { mac: '52-54-00-00-00-09' } },
    { id: 'zzz', profile: 'g-b', selector: { labels: { tie: 'yes' } } },
    { id: 'aaa', profile: 'g-a', selector: { labels: { tie: 'yes' } } },
  ],
});
const db: Db = {
  ...parsed,
  machines: [...parsed.machines, { mac: '52:54:00:00:00:04', profile: 'ghost' }],
  groups: [...parsed.groups, { id: 'broken', profile: 'missing', selector: { mac: '52:54:00:00:00:0a' } }],
};

const cases: { name: string; query: Parameters<typeof selectProfile>[1]; want: string; via?: SelectedVia }[] = [
  { name: 'machine by uuid wins over its mac', query: { uuid: U1, mac: '52:54:00:00:00:02' }, want: 'by-uuid', via: 'machine-uuid' },
  { name: 'uuid is case-insensitive', query: { uuid: U1.toUpperCase() }, want: 'by-uuid', via: 'machine-uuid' },
  { name: 'unknown uuid falls back to mac', query: { uuid: U2, mac: '52:54:00:00:00:02' }, want: 'by-mac', via: 'machine-mac' },
  { name: 'mac in hyphen notation (iPXE hexhyp)', query: { mac: '52-54-00-00-00-02' }, want: 'by-mac', via: 'machine-mac' },
  { name: 'all-zero uuid is ignored', query: { uuid: '00000000-0000-0000-0000-000000000000', mac: '52:54:00:00:00:02' }, want: 'by-mac' },
  { name: 'most specific label group', query: { mac: '52:54:00:00:00:03' }, want: 'g-two', via: 'group' },
  { name: 'group by mac selector (no machine record)', query: { mac: '52:54:00:00:00:09' }, want: 'g-mac', via: 'group' },
  { name: 'group by arch', query: { mac: '52:54:00:99:99:99', arch: 'arm64' }, want: 'g-arch', via: 'group' },
  { name: 'tie broken by group id order', query: { mac: '52:54:00:00:00:05' }, want: 'g-a', via: 'group' },
  { name: 'nothing matches: default', query: { mac: '52:54:00:99:99:99', arch: 'x86_64' }, want: 'fallback', via: 'default' },
  { name: 'no query at all: default', query: {}, want: 'fallback', via: 'default' },
  { name: 'machine names missing profile', query: { mac: '52:54:00:00:00:04' }, want: 'none' },
  { name: 'group names missing profile', query: { mac: '52:54:00:00:00:0a' }, want: 'none' },
];

for (const c of cases) {
  test(`selectProfile: ${c.name}`, (t) => {
    const sel = selectProfile(db, c.query);
    if (c.want === 'none') {
      t.is(sel.kind, 'none');
      if (sel.kind === 'none') t.regex(sel.reason, /does not exist/);
      return;
    }
    t.is(sel.kind, 'profile');
    if (sel.kind === 'profile') {
      t.is(sel.profile.id, c.want);
      if (c.via) t.is(sel.via, c.via);
    }
  });
}

test('selectProfile: no default and nothing matches gives none with a reason', (t) => {
  const sel = selectProfile(parseDb({ profiles: [] }), { mac: '52:54:00:00:00:01' });
  t.deepEqual(sel, { kind: 'none', reason: 'no machine record, group or default profile matches this machine' });
});

test('selectProfile: the order of groups in the file does not change the answer', (t) => {
  const reversed = { ...db, groups: [...db.groups].reverse() };
  for (const c of cases) t.deepEqual(selectProfile(reversed, c.query), selectProfile(db, c.query), c.name);
});

test('selectProfile: an empty selector is a catch-all that beats the default but loses to any specific group', (t) => {
  const withCatchAll: Db = { ...db, groups: [...db.groups, { id: 'all', profile: 'g-b', selector: {} }] };
  const a = selectProfile(withCatchAll, { mac: '52:54:00:99:99:99' });
  t.true(a.kind === 'profile' && a.profile.id === 'g-b' && a.via === 'group');
  const b = selectProfile(withCatchAll, { mac: '52:54:00:99:99:99', arch: 'arm64' });
  t.true(b.kind === 'profile' && b.profile.id === 'g-arch');
});

test('normalizeUuid rejects placeholders and junk', (t) => {
  t.is(normalizeUuid('FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF'), undefined);
  t.is(normalizeUuid('not-a-uuid'), undefined);
  t.is(normalizeUuid(U1.toUpperCase()), U1);
});
