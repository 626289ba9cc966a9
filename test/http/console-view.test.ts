/** Pure rules of the console's machine rows (src/http/console-view.ts). */
import test from 'ava';
import type { BootEvent } from '../../src/events.js';
import { explainFailure, machineRow, summarizeFacts } from '../../src/http/console-view.js';

const at = (s: number): string => new Date(Date.UTC(2026, 11, 1, 12, 0, s)).toISOString();
const ev = (s: number, type: BootEvent['type'], detail?: Record<string, unknown>): BootEvent => ({
  at: at(s),
  mac: '52:54:00:00:00:01',
  type,
  ...(detail ? { detail } : {}),
});

test('explainFailure: the standing failure in plain words; later progress clears it', (t) => {
  const retry = ev(2, 'http-script', { outcome: 'retry', reason: 'profile x: /assets/k is missing on the appliance. Run: node bin/appliance fetch rancheros' });
  t.like(explainFailure([ev(1, 'dhcp-offer'), retry]), { source: 'http-script', at: at(2), message: retry.detail!['reason'] });
  t.is(explainFailure([ev(1, 'dhcp-offer'), retry, ev(3, 'http-script', { outcome: 'boot' }), ev(4, 'http-asset')]), null);
  t.regex(explainFailure([ev(1, 'tftp-error', { file: 'snponly.efi', reason: 'not-found' })])!.message, /snponly\.efi failed: not-found .*fetch ipxe/);
  // EDK2's tsize probe aborts with a client error and re-requests: normal, not a failure.
  t.is(explainFailure([ev(1, 'tftp-error', { file: 'snponly.efi', reason: 'client-error', error: 8 })]), null);
  t.regex(explainFailure([ev(1, 'dhcp-decline')])!.message, /declined/);
  t.regex(explainFailure([ev(1, 'dhcp-refused', { reason: 'pool exhausted' })])!.message, /refused it: pool exhausted \(widen --dhcp-range/);
  t.is(explainFailure([ev(1, 'dhcp-refused', { reason: 'pool exhausted' }), ev(2, 'dhcp-ack')]), null);
  t.is(explainFailure([ev(1, 'dhcp-refused', { reason: 'its reserved address was claimed by another mac', claimedBy: '52:54:00:00:00:09' })]), null);
  t.like(explainFailure([ev(1, 'dhcp-offer')], { kind: 'none', reason: 'no profile: no machine record, group or default profile matches' }), {
    source: 'selection',
  });
  t.is(explainFailure([]), null);
});

test('summarizeFacts: the reference agent shape, the test OS shape, and nothing from junk', (t) => {
  t.deepEqual(
    summarizeFacts({
      dmi: { vendor: 'Dell', product: 'R640' },
      cpu: { count: 8 },
      memory: { totalKiB: 1048576 },
      disks: [{ sizeBytes: 10 }, { sizeBytes: 5 }],
      nics: [{}],
    }),
    { vendor: 'Dell', product: 'R640', cpus: 8, memoryMiB: 1024, disks: 2, diskBytes: 15, nics: 1 },
  );
  t.deepEqual(summarizeFacts({ cpus: 1, memoryKiB: 2048 }), { cpus: 1, memoryMiB: 2 });
  t.deepEqual(summarizeFacts({ cpu: 'many', disks: 'x', dmi: [1] }), {});
  t.is(summarizeFacts(undefined), null);
});

test('machineRow: kind, profile and why, last seen from the newest of events and records, arch', (t) => {
  const profile = { id: 'p', kernel: '/assets/k', initrd: [], cmdline: '' };
  const seen = machineRow(
    { mac: '52:54:00:00:00:01' },
    { kind: 'profile', profile, via: 'default' },
    [ev(1, 'dhcp-offer', { arch: 'bios' }), ev(5, 'http-script', { platform: 'pcbios' })],
    '10.0.0.9',
  );
  t.like(seen, {
    kind: 'seen',
    state: 'seen',
    profile: 'p',
    via: 'default',
    lastSeen: at(5),
    lastIp: '10.0.0.9',
    lastEvent: 'http-script',
    arch: 'pcbios',
    facts: null,
  });
  const discovered = machineRow(
    { mac: '52:54:00:00:00:01', runtime: { discovered: true, lastSeen: at(9), lastIp: '10.0.0.8' }, facts: { hostname: 'h1' } },
    { kind: 'none', reason: 'nothing' },
    [ev(1, 'dhcp-offer')],
    undefined,
  );
  t.like(discovered, { kind: 'discovered', hostname: 'h1', lastSeen: at(9), lastIp: '10.0.0.8', profile: null, via: null });
  t.like(discovered.failure, { source: 'selection', message: 'nothing' });
  const declared = machineRow(
    {
      mac: '52:54:00:00:00:01',
      declared: { mac: '52:54:00:00:00:01', hostname: 'web', uuid: '5a1e0003-7f3a-4c2b-9d1e-0123456789ab' },
      runtime: { discovered: false, uuid: '00000000-0000-0000-0000-000000000001' },
    },
    { kind: 'profile', profile, via: 'machine-uuid' },
    [],
    undefined,
  );
  t.like(declared, { kind: 'declared', state: null, hostname: 'web', uuid: '5a1e0003-7f3a-4c2b-9d1e-0123456789ab', via: 'machine-uuid', lastSeen: null });
});

test('machineRow: the matched group and its reasons; whether the facts shown may drive selection', (t) => {
  const profile = { id: 'p', kernel: '/assets/k', initrd: [], cmdline: '' };
  const group = { id: 'g', profile: 'p', selector: { facts: ['cpu.count >= 2'] } };
  const matched = machineRow(
    { mac: '52:54:00:00:00:01', runtime: { discovered: true, factsVerified: true }, facts: { cpu: { count: 4 } } },
    { kind: 'profile', profile, via: 'group', group, reasons: ['facts: cpu.count >= 2 (got 4)'] },
    [],
    undefined,
  );
  t.like(matched, { group: 'g', via: 'group', reasons: ['facts: cpu.count >= 2 (got 4)'], factsVerified: true });
  const unverified = machineRow(
    { mac: '52:54:00:00:00:02', runtime: { discovered: true }, facts: { cpu: { count: 4 } } },
    { kind: 'profile', profile, via: 'default' },
    [],
    undefined,
  );
  t.like(unverified, { reasons: [], factsVerified: false });
  t.is(machineRow({ mac: '52:54:00:00:00:03' }, { kind: 'profile', profile, via: 'default' }, [], undefined).factsVerified, null);
});
