import test from 'ava';
import { diagnoseGrubElsewhere, GRUB_FIRST_REQUEST_MS, withGrubWatch } from '../../src/boot/grub-watch.js';
import { createEventLog, type BootEvent } from '../../src/events.js';
import { createSilentLogger } from '../../src/log.js';

const MAC = '52:54:00:16:05:01';
const T0 = Date.parse('2026-12-01T12:00:00.000Z');
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();
const ev = (s: number, type: BootEvent['type'], detail: Record<string, unknown>): BootEvent => ({ at: at(s), mac: MAC, type, detail });
const served = (s: number, file: string) => ev(s, 'tftp-file', { file, bytes: 3843520 });

// The timeline of the proxy-mode lab run without next-server: shim, shim's probes, grub, then nothing.
const proxyRun: BootEvent[] = [
  ev(0, 'dhcp-offer', { client: 'pxe', file: '' }),
  ev(1, 'dhcp-ack', { client: 'pxe', file: 'shimx64.efi', port: 4011 }),
  served(2, 'shimx64.efi'),
  ev(3, 'tftp-error', { file: 'revocations_sku.efi', reason: 'not-found' }),
  served(14, 'grubx64.efi'),
];

test('grub downloaded, then no grub request for 30 s: grub asked another server, with the next-server fix', (t) => {
  const d = diagnoseGrubElsewhere(proxyRun, T0 + 14_000 + GRUB_FIRST_REQUEST_MS);
  t.like(d, { problem: 'grub-asked-another-server', file: 'grubx64.efi' });
  t.regex(d!.explanation, /next-server/);
  t.regex(d!.fix, /server-ip-address.*--dhcp-mode server/);
});

test('not before the wait is over', (t) => {
  t.is(diagnoseGrubElsewhere(proxyRun, T0 + 14_000 + GRUB_FIRST_REQUEST_MS - 1), undefined);
});

test('grub that asked for its prefix files (found or not) is not diagnosed', (t) => {
  const later = T0 + 120_000;
  t.is(diagnoseGrubElsewhere([...proxyRun, ev(16, 'tftp-error', { file: '/grub/x86_64-efi/command.lst', reason: 'not-found' })], later), undefined);
  t.is(diagnoseGrubElsewhere([...proxyRun, ev(16, 'tftp-file', { file: 'grub/grub.cfg' })], later), undefined);
  t.is(diagnoseGrubElsewhere([served(0, 'grubaa64.efi'), ev(5, 'tftp-file', { file: 'grub/machines/arm64/52:54:00:16:05:01.cfg' })], later), undefined);
});

test('shim alone, iPXE, or no download at all is not diagnosed; arm64 grub is', (t) => {
  const later = T0 + 120_000;
  t.is(diagnoseGrubElsewhere(proxyRun.slice(0, 4), later), undefined);
  t.is(diagnoseGrubElsewhere([served(0, 'snponly.efi')], later), undefined);
  t.is(diagnoseGrubElsewhere([], later), undefined);
  t.like(diagnoseGrubElsewhere([served(0, 'grubaa64.efi')], later), { file: 'grubaa64.efi' });
});

test('the event log wrapper diagnoses once, when the timer fires, and only for a grub download', (t) => {
  let clock = T0;
  const timers: Array<{ fn: () => void; ms: number }> = [];
  const base = createEventLog({ now: () => new Date(clock) });
  const log = withGrubWatch(base, createSilentLogger(), { now: () => clock, setTimer: (fn, ms) => (timers.push({ fn, ms }), {}) });
  // The DHCP side saw the machine at 10.0.0.9 (TFTP events name the MAC DHCP saw there; they teach no address).
  log.record({ type: 'dhcp-ack', mac: MAC, ip: '10.0.0.9' });
  log.record({ type: 'tftp-file', mac: MAC, ip: '10.0.0.9', detail: { file: 'shimx64.efi' } });
  t.is(timers.length, 0);
  log.record({ type: 'tftp-file', mac: MAC, ip: '10.0.0.9', detail: { file: 'grubx64.efi' } });
  t.is(timers.length, 1);
  t.true(timers[0]!.ms >= GRUB_FIRST_REQUEST_MS);
  clock += timers[0]!.ms;
  timers.shift()!.fn();
  const found = base.list({ mac: MAC }).filter((e) => e.type === 'boot-diagnosis');
  t.is(found.length, 1);
  t.like(found[0], { ip: '10.0.0.9', detail: { problem: 'grub-asked-another-server', file: 'grubx64.efi' } });
  t.is(diagnoseGrubElsewhere(base.list({ mac: MAC }), clock + 60_000), undefined, 'diagnosed twice');
});

test('a grub download again before the timer fires: the check waits for the newer one', (t) => {
  let clock = T0;
  const timers: Array<{ fn: () => void; ms: number }> = [];
  const base = createEventLog({ now: () => new Date(clock) });
  const log = withGrubWatch(base, createSilentLogger(), { now: () => clock, setTimer: (fn, ms) => (timers.push({ fn, ms }), {}) });
  log.record({ type: 'tftp-file', mac: MAC, detail: { file: 'grubx64.efi' } });
  clock += 20_000;
  log.record({ type: 'tftp-file', mac: MAC, detail: { file: 'grubx64.efi' } });
  t.is(timers.length, 1, 'one timer per machine');
  clock = T0 + timers[0]!.ms;
  timers.shift()!.fn();
  t.is(base.list({ mac: MAC }).filter((e) => e.type === 'boot-diagnosis').length, 0);
  t.is(timers.length, 1, 'rearmed for the newer download');
  clock += timers[0]!.ms;
  timers.shift()!.fn();
  t.is(base.list({ mac: MAC }).filter((e) => e.type === 'boot-diagnosis').length, 1);
});

test('downloads without a known MAC are not watched', (t) => {
  const timers: unknown[] = [];
  const log = withGrubWatch(createEventLog(), createSilentLogger(), { setTimer: (fn, ms) => (timers.push([fn, ms]), {}) });
  log.record({ type: 'tftp-file', mac: '', ip: '10.0.0.9', detail: { file: 'grubx64.efi' } });
  t.is(timers.length, 0);
});

test('a timeline that fails when the timer fires (appliance stopping) costs a debug line, never a throw', (t) => {
  const timers: Array<() => void> = [];
  const base = createEventLog();
  const closed = {
    ...base,
    list: () => {
      throw new Error('timeline closed');
    },
  };
  const log = withGrubWatch(closed, createSilentLogger(), { setTimer: (fn) => (timers.push(fn), {}) });
  log.record({ type: 'tftp-file', mac: MAC, detail: { file: 'grubx64.efi' } });
  t.notThrows(() => timers[0]!());
});
