import test from 'ava';
import { diagnoseRefusedLoader, withBootDiagnosis } from '../../src/boot/diagnosis.js';
import { createEventLog, type BootEvent } from '../../src/events.js';
import { createSilentLogger } from '../../src/log.js';

const MAC = '52:54:00:16:03:01';
const ev = (type: BootEvent['type'], detail: Record<string, unknown>): BootEvent => ({ at: '2026-12-01T12:00:00.000Z', mac: MAC, type, detail });
const offer = (client: string) => ev('dhcp-offer', { arch: 'efi-x64', client, file: '' });
const tftp = (file: string) => ev('tftp-file', { file, bytes: 1000 });

test('unsigned iPXE served, then the firmware DHCPs again: refused, with the explanation and the fix', (t) => {
  const d = diagnoseRefusedLoader([offer('pxe'), ev('dhcp-ack', { client: 'pxe', file: 'snponly.efi' }), tftp('snponly.efi'), offer('http')]);
  t.like(d, { problem: 'unsigned-loader-refused', file: 'snponly.efi' });
  t.regex(d!.explanation, /Access Denied/);
  t.regex(d!.fix, /secureBoot: true.*fetch secureboot/);
});

test('the same binary over UEFI HTTP boot, then PXE again: refused', (t) => {
  t.like(diagnoseRefusedLoader([offer('http'), ev('http-asset', { file: 'snponly.efi', via: 'http-boot' }), offer('pxe')]), { file: 'snponly.efi' });
});

test('iPXE that ran (DHCP as iPXE, script fetched) is no refusal', (t) => {
  t.is(diagnoseRefusedLoader([offer('pxe'), tftp('snponly.efi'), offer('ipxe'), offer('pxe')]), undefined);
  t.is(diagnoseRefusedLoader([offer('pxe'), tftp('snponly.efi'), ev('http-script', { outcome: 'boot' }), offer('pxe')]), undefined);
});

test('shim and signed grub are not diagnosed; neither is a first boot or a non-DHCP event', (t) => {
  t.is(diagnoseRefusedLoader([offer('pxe'), tftp('shimx64.efi'), tftp('grubx64.efi'), offer('pxe')]), undefined);
  t.is(diagnoseRefusedLoader([offer('pxe')]), undefined);
  t.is(diagnoseRefusedLoader([offer('pxe'), tftp('snponly.efi')]), undefined);
  t.is(diagnoseRefusedLoader([]), undefined);
});

test('one diagnosis per refusal: the next firmware request after it is not diagnosed again', (t) => {
  const log = withBootDiagnosis(createEventLog(), createSilentLogger());
  for (const e of [offer('pxe'), tftp('snponly.efi'), offer('http'), offer('pxe')]) log.record(e);
  const found = log.list({ mac: MAC }).filter((e) => e.type === 'boot-diagnosis');
  t.is(found.length, 1);
  t.is(found[0]!.detail?.['file'], 'snponly.efi');
});

test('a PXE ROM retransmitting for a long time: the walk ends at its previous request, and a refusal after it is still found', (t) => {
  const retries = Array.from({ length: 150 }, () => offer('pxe'));
  t.is(diagnoseRefusedLoader([tftp('snponly.efi'), ...retries]), undefined, 'judged at the first retry, not again at each');
  t.like(diagnoseRefusedLoader([...retries, tftp('snponly.efi'), offer('pxe')]), { file: 'snponly.efi' });
  // Through the event log: one diagnosis, however many retries follow it.
  const log = withBootDiagnosis(createEventLog(), createSilentLogger());
  for (const e of [offer('pxe'), tftp('snponly.efi'), ...retries]) log.record(e);
  t.is(log.list({ mac: MAC }).filter((e) => e.type === 'boot-diagnosis').length, 1);
});
