import test from 'ava';
import { chooseLoader, dhcpUuidText, buildArchOf, type LoaderQuery } from '../../src/boot/loader.js';
import { createSilentLogger } from '../../src/log.js';
import { createFactsIndex } from '../../src/store/facts-index.js';
import { parseDb, type Facts } from '../../src/store/schema.js';

const db = parseDb({
  defaultProfile: 'plain',
  profiles: [
    { id: 'plain', kernel: '/assets/vmlinuz' },
    { id: 'grubby', kernel: '/assets/vmlinuz', bootloader: 'grub' },
    { id: 'signed', kernel: '/assets/vmlinuz', secureBoot: true },
    { id: 'arm', kernel: '/assets/arm64/vmlinuz' },
  ],
  machines: [
    { mac: '52:54:00:00:00:01', profile: 'grubby' },
    { mac: '52:54:00:00:00:02', profile: 'signed' },
    { mac: '52:54:00:00:00:03', profile: 'signed', secureBoot: false },
    { mac: '52:54:00:00:00:04', profile: 'grubby', bootloader: 'ipxe' },
    { mac: '52:54:00:00:00:05', secureBoot: true, bootloader: 'ipxe' },
    { mac: '52:54:00:00:00:06', labels: { rack: 'sb' } },
    { mac: '52:54:00:00:00:07', uuid: '5a1e0003-7f3a-4c2b-9d1e-0123456789ab', profile: 'grubby' },
  ],
  groups: [
    { id: 'arm64', profile: 'arm', selector: { arch: 'arm64' } },
    { id: 'sb-rack', profile: 'plain', selector: { labels: { rack: 'sb' } }, secureBoot: true },
  ],
});

const q = (mac: string, firmware: LoaderQuery['firmware'] = 'efi-x64', client: LoaderQuery['client'] = 'pxe', uuid?: string): LoaderQuery => ({
  mac,
  firmware,
  client,
  ...(uuid ? { uuid } : {}),
});

const table: Array<{ name: string; query: LoaderQuery; sbDefault?: boolean; want: Record<string, unknown> }> = [
  { name: 'unknown x64 machine: default ipxe file', query: q('52:54:00:00:00:99'), want: { kind: 'boot', loader: 'ipxe', secureBoot: false, file: undefined } },
  { name: 'profile says grub: grubx64.efi', query: q('52:54:00:00:00:01'), want: { kind: 'boot', loader: 'grub', secureBoot: false, file: 'grubx64.efi' } },
  { name: 'profile says secure boot: shim', query: q('52:54:00:00:00:02'), want: { kind: 'boot', loader: 'grub', secureBoot: true, file: 'shimx64.efi' } },
  { name: 'machine turns the profile secure boot off', query: q('52:54:00:00:00:03'), want: { kind: 'boot', loader: 'ipxe', secureBoot: false } },
  { name: 'machine bootloader wins over profile', query: q('52:54:00:00:00:04'), want: { kind: 'boot', loader: 'ipxe' } },
  { name: 'ipxe and secure boot at once is refused with the fix', query: q('52:54:00:00:00:05'), want: { kind: 'refuse', secureBoot: true } },
  { name: 'group sets secure boot', query: q('52:54:00:00:00:06'), want: { kind: 'boot', file: 'shimx64.efi', source: 'secure boot from group sb-rack' } },
  {
    name: 'appliance default secure boot',
    query: q('52:54:00:00:00:99'),
    sbDefault: true,
    want: { kind: 'boot', file: 'shimx64.efi', source: 'secure boot from --secure-boot' },
  },
  {
    name: 'machine secureBoot false beats the appliance default',
    query: q('52:54:00:00:00:03'),
    sbDefault: true,
    want: { kind: 'boot', loader: 'ipxe', secureBoot: false },
  },
  { name: 'arm64 pxe defaults to grub', query: q('52:54:00:00:00:99', 'efi-arm64'), want: { kind: 'boot', loader: 'grub', file: 'grubaa64.efi' } },
  { name: 'arm64 secure boot: shimaa64', query: q('52:54:00:00:00:99', 'efi-arm64'), sbDefault: true, want: { kind: 'boot', file: 'shimaa64.efi' } },
  { name: 'arm64 machine that asks for ipxe keeps it', query: q('52:54:00:00:00:04', 'efi-arm64'), want: { kind: 'boot', loader: 'ipxe', file: undefined } },
  { name: 'x64 http boot with ipxe: default file', query: q('52:54:00:00:00:99', 'efi-x64', 'http'), want: { kind: 'boot', loader: 'ipxe' } },
  {
    name: 'secure boot over http boot is refused (no http in signed grub)',
    query: q('52:54:00:00:00:02', 'efi-x64', 'http'),
    want: { kind: 'refuse', loader: 'grub', secureBoot: true },
  },
  { name: 'grub over http boot is refused', query: q('52:54:00:00:00:01', 'efi-x64', 'http'), want: { kind: 'refuse', loader: 'grub' } },
  { name: 'arm64 http boot defaults to grub and is refused', query: q('52:54:00:00:00:99', 'efi-arm64', 'http'), want: { kind: 'refuse' } },
  {
    name: 'bios always ipxe, even with secure boot default',
    query: q('52:54:00:00:00:02', 'bios'),
    sbDefault: true,
    want: { kind: 'boot', loader: 'ipxe', secureBoot: false, file: undefined },
  },
  {
    name: 'machine found by uuid',
    query: q('52:54:00:00:00:98', 'efi-x64', 'pxe', '5a1e0003-7f3a-4c2b-9d1e-0123456789ab'),
    want: { kind: 'boot', loader: 'grub' },
  },
];

for (const c of table) {
  test(`chooseLoader: ${c.name}`, (t) => {
    t.like(chooseLoader(db, c.query, c.sbDefault ?? false), c.want);
  });
}

test('refusals name the record and the fix', (t) => {
  const r = chooseLoader(db, q('52:54:00:00:00:05'), false);
  t.is(r.kind, 'refuse');
  if (r.kind === 'refuse') t.regex(r.reason, /machine 52:54:00:00:00:05 asks for ipxe but secure boot is on .*set bootloader grub or secureBoot false/);
  const h = chooseLoader(db, q('52:54:00:00:00:02', 'efi-x64', 'http'), false);
  if (h.kind === 'refuse') t.regex(h.reason, /falls back to pxe/);
});

test('dhcpUuidText reads option 97 in SMBIOS byte order (what iPXE ${uuid} and dmidecode print)', (t) => {
  // QEMU -uuid 5a1e0003-7f3a-4c2b-9d1e-0123456789ab: EDK2 sends 03 00 1e 5a 3a 7f 2b 4c 9d 1e 01 23 ...
  const raw = Buffer.from('0003001e5a3a7f2b4c9d1e0123456789ab', 'hex');
  t.is(dhcpUuidText(raw), '5a1e0003-7f3a-4c2b-9d1e-0123456789ab');
  t.is(dhcpUuidText(Buffer.alloc(5)), undefined);
  t.is(dhcpUuidText(Buffer.concat([Buffer.from([1]), Buffer.alloc(16)])), undefined);
});

test('buildArchOf matches iPXE buildarch names used by group selectors', (t) => {
  t.is(buildArchOf('efi-x64'), 'x86_64');
  t.is(buildArchOf('efi-arm64'), 'arm64');
  t.is(buildArchOf('bios'), 'i386');
});

/** Groups chosen by facts alone, each with its own loader (the README's fact-selector examples). */
const factDb = parseDb({
  defaultProfile: 'plain',
  profiles: [
    { id: 'plain', kernel: '/assets/vmlinuz' },
    { id: 'installer', kernel: '/assets/vmlinuz' },
  ],
  machines: [{ mac: '52:54:00:00:01:03', bootloader: 'ipxe', secureBoot: false }],
  groups: [
    { id: 'dell-secure', profile: 'installer', selector: { facts: ['dmi.vendor == "Dell Inc."'] }, bootloader: 'grub', secureBoot: true },
    { id: 'big-intel', profile: 'installer', selector: { facts: ['memory.totalKiB >= 64Mi', 'nics.#.vendor == 0x8086'] }, bootloader: 'grub' },
  ],
});
const dell: Facts = { dmi: { vendor: 'Dell Inc.', product: 'PowerEdge R650', serial: 'X1' }, memory: { totalKiB: 8_000_000 }, nics: [{ vendor: '0x14e4' }] };
const bigIntel: Facts = { dmi: { vendor: 'Supermicro' }, memory: { totalKiB: 200_000_000 }, nics: [{ vendor: '0x14e4' }, { vendor: '0x8086' }] };

test('chooseLoader with facts: a fact-selected group sets the loader; without facts the machine gets the default', (t) => {
  const withFacts = (mac: string, facts: Facts | undefined, firmware: LoaderQuery['firmware'] = 'efi-x64') =>
    chooseLoader(factDb, { ...q(mac, firmware), facts }, false);
  t.like(withFacts('52:54:00:00:01:01', dell), {
    kind: 'boot',
    loader: 'grub',
    secureBoot: true,
    file: 'shimx64.efi',
    source: 'secure boot from group dell-secure',
  });
  t.like(withFacts('52:54:00:00:01:01', dell, 'efi-arm64'), { kind: 'boot', file: 'shimaa64.efi' });
  t.like(withFacts('52:54:00:00:01:02', bigIntel), { kind: 'boot', loader: 'grub', secureBoot: false, file: 'grubx64.efi', source: 'group big-intel' });
  t.like(withFacts('52:54:00:00:01:01', undefined), { kind: 'boot', loader: 'ipxe', file: undefined, source: 'default' });
  // A machine record's own bootloader/secureBoot still win over the group its facts select.
  t.like(withFacts('52:54:00:00:01:03', dell), { kind: 'boot', loader: 'ipxe', secureBoot: false, file: undefined });
  // BIOS always gets iPXE, whatever the facts say.
  t.like(withFacts('52:54:00:00:01:01', dell, 'bios'), { kind: 'boot', loader: 'ipxe', file: undefined });
});

test('chooseLoader on the DHCP facts index gives the choice the whole report gives, for every machine', async (t) => {
  const index = createFactsIndex({ log: createSilentLogger() });
  await index.sync(factDb, { list: () => [], getFacts: async () => undefined });
  const machines: Array<[string, Facts]> = [
    ['52:54:00:00:01:01', dell],
    ['52:54:00:00:01:02', bigIntel],
    ['52:54:00:00:01:03', dell],
    ['52:54:00:00:01:04', { dmi: { vendor: 'QEMU' } }],
  ];
  for (const [mac, facts] of machines) {
    index.note(mac, facts);
    for (const firmware of ['efi-x64', 'efi-arm64', 'bios'] as const) {
      for (const client of ['pxe', 'http'] as const) {
        for (const sb of [false, true]) {
          const query = { mac, firmware, client };
          t.deepEqual(
            chooseLoader(factDb, { ...query, facts: index.get(mac) }, sb),
            chooseLoader(factDb, { ...query, facts }, sb),
            `${mac} ${firmware} ${client} ${sb}`,
          );
        }
      }
    }
  }
  // The index holds what the selectors read, no more.
  t.is(JSON.stringify(index.get('52:54:00:00:01:01')), '{"dmi":{"vendor":"Dell Inc."},"memory":{"totalKiB":8000000},"nics":[{"vendor":"0x14e4"}]}');
});
