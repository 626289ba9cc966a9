import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hasCode } from '../../src/errors.js';
import { createLeaseFileWriter, loadLeaseFile, parseLeases, saveLeaseFile, serializeLeases } from '../../src/dhcp/lease-file.js';
import type { LeaseSnapshot } from '../../src/dhcp/leases.js';

const SNAP: LeaseSnapshot = {
  leases: [
    { key: 'mac:52:54:00:00:00:0a', mac: '52:54:00:00:00:0a', ip: '10.99.0.10', state: 'bound', expiresAt: Date.parse('2026-01-01T01:00:00.000Z'), bound: true },
    { key: 'id:ff00000001', mac: '52:54:00:00:00:0b', ip: '10.99.0.11', state: 'released', expiresAt: Date.parse('2026-01-01T00:30:00.000Z'), bound: true },
  ],
  declined: [{ ip: '10.99.0.12', until: Date.parse('2026-01-01T00:10:00.000Z'), mac: '52:54:00:00:00:0c' }],
};

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'leases-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('serialize and parse round-trip; times are ISO 8601 in the file', (t) => {
  const text = serializeLeases(SNAP);
  t.regex(text, /"expires": "2026-01-01T01:00:00.000Z"/);
  t.deepEqual(parseLeases(text), SNAP);
});

test('parseLeases: every broken field is a coded error naming it', (t) => {
  const good = JSON.parse(serializeLeases(SNAP)) as { leases: Array<Record<string, unknown>>; declined: Array<Record<string, unknown>> };
  const cases: Array<[string, string, RegExp]> = [
    ['not json', '{', /not json/],
    ['version', JSON.stringify({ ...good, version: 2 }), /version 2, expected 1/],
    ['ip', JSON.stringify({ ...good, leases: [{ ...good.leases[0], ip: '10.99.0.300' }] }), /leases.0.ip is not an ipv4/],
    ['mac', JSON.stringify({ ...good, leases: [{ ...good.leases[0], mac: 'zz' }] }), /leases.0.mac/],
    ['state', JSON.stringify({ ...good, leases: [{ ...good.leases[0], state: 'x' }] }), /leases.0.state/],
    ['expires', JSON.stringify({ ...good, leases: [{ ...good.leases[0], expires: 'soon' }] }), /leases.0.expires/],
    ['key', JSON.stringify({ ...good, leases: [{ ...good.leases[0], key: 'x' }] }), /leases.0.key/],
    ['declined', JSON.stringify({ ...good, declined: [{ ip: 'a', until: 'b' }] }), /declined.0.ip/],
    ['list', JSON.stringify({ ...good, leases: {} }), /leases is not a list/],
  ];
  for (const [name, text, msg] of cases) {
    const err = t.throws(() => parseLeases(text, 'x.json'), undefined, name);
    t.true(hasCode(err, 'ERR_LEASE_FILE'), name);
    t.regex(err!.message, msg, name);
  }
});

test('load: a missing file is an empty table; save then load gives the same table, leaving no temp files', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'sub', 'leases.json');
  t.deepEqual(await loadLeaseFile(file), { leases: [], declined: [] });
  await saveLeaseFile(file, SNAP);
  t.deepEqual(await loadLeaseFile(file), SNAP);
  t.deepEqual(await readdir(path.dirname(file)), ['leases.json']);
});

test('a failed write leaves the previous file intact and raises ERR_LEASE_FILE', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'leases.json');
  await saveLeaseFile(file, SNAP);
  const before = await readFile(file, 'utf8');
  // A directory where the temp file's name would need a file: rename over a directory fails.
  const blocked = path.join(dir, 'blocked');
  await writeFile(blocked, 'not a directory');
  const err = await t.throwsAsync(saveLeaseFile(path.join(blocked, 'leases.json'), { leases: [], declined: [] }));
  t.true(hasCode(err, 'ERR_LEASE_FILE'));
  t.is(await readFile(file, 'utf8'), before);
  await writeFile(file, '{ broken');
  await t.throwsAsync(loadLeaseFile(file), { code: 'ERR_LEASE_FILE', message: /not json/ } as never);
});

test('writer: bursts coalesce, and save() resolves only after a write that includes the change', async (t) => {
  const writes: string[] = [];
  let value = 0;
  let release: (() => void) | undefined;
  const gate = (): Promise<void> => new Promise((r) => (release = r));
  let blocking = true;
  const writer = createLeaseFileWriter(
    'unused',
    () => ({ leases: [], declined: [{ ip: `10.0.0.${value}`, until: 0 }] }),
    async (_file, snap) => {
      writes.push(snap.declined[0]!.ip);
      if (blocking) await gate();
    },
  );
  value = 1;
  const first = writer.save();
  value = 2;
  const second = writer.save();
  value = 3;
  const third = writer.save();
  t.is(second, third, 'calls during a write share the next write');
  blocking = false;
  release!();
  await Promise.all([first, second, third]);
  t.deepEqual(writes, ['10.0.0.1', '10.0.0.3'], 'two writes for three saves; the last one has the newest state');
  await writer.idle();
});
