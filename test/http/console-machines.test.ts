/**
 * The console's machine list keeps a digest of each facts report (summary, hostname, the facts
 * fact selectors read), so listing a fleet does not read every report from disk each time; a
 * new report or a new fact selector refreshes it.
 */
import test from 'ava';
import { createEventLog } from '../../src/events.js';
import { consoleMachineRows, selectorFactKeys } from '../../src/http/console-machines.js';
import { createSilentLogger } from '../../src/log.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createStateStore } from '../../src/store/state-store.js';
import { createMemoryStore } from '../../src/store/store.js';

const MACS = ['52:54:00:cc:00:01', '52:54:00:cc:00:02', '52:54:00:cc:00:03'];

test('facts are read once per report: a second listing reads none, a new report or a new fact selector reads again', async (t) => {
  const store = createMemoryStore({ ...createDefaultDb(), machines: [{ mac: MACS[0]!, hostname: 'declared-1' }] });
  const state = createStateStore({ log: createSilentLogger() });
  for (const [i, mac] of MACS.entries()) {
    await state.putFacts(
      mac,
      { hostname: `reported-${i}`, cpu: { count: 2 + i }, memory: { totalKiB: 1024 * 1024 }, pad: 'x'.repeat(4000) },
      undefined,
      i === 0,
      // Verified (a trusted boot's token): only such facts may match fact selectors.
      true,
    );
  }
  let reads = 0;
  const getFacts = state.getFacts.bind(state);
  state.getFacts = (mac) => {
    reads++;
    return getFacts(mac);
  };
  const deps = { store, events: createEventLog() };
  const rows = await consoleMachineRows(deps, state);
  t.is(reads, 3);
  t.deepEqual(
    rows.map((r) => [r.mac, r.hostname, r.facts?.cpus, r.facts?.memoryMiB]),
    [
      [MACS[0], 'declared-1', 2, 1024],
      [MACS[1], 'reported-1', 3, 1024],
      [MACS[2], 'reported-2', 4, 1024],
    ],
  );
  t.deepEqual(await consoleMachineRows(deps, state), rows);
  t.is(reads, 3, 'the second listing read no facts');

  // A new report of one machine: only that one is read, and the row shows it.
  await new Promise((resolve) => setTimeout(resolve, 5));
  await state.putFacts(MACS[1]!, { hostname: 'reported-again', cpu: { count: 32 } }, undefined, false, true);
  const after = await consoleMachineRows(deps, state);
  t.is(reads, 4);
  t.like(after[1], { hostname: 'reported-again', facts: { cpus: 32 } });

  // A group with a fact selector: the facts it names are kept, and selection uses them.
  await store.putGroup({ id: 'big', profile: 'rancheros', selector: { facts: ['cpu.count >= 16'] } });
  const grouped = await consoleMachineRows(deps, state);
  t.is(reads, 7);
  t.deepEqual(
    grouped.map((r) => [r.via, r.group]),
    [
      ['default', null],
      ['group', 'big'],
      ['default', null],
    ],
  );
  t.deepEqual(await consoleMachineRows(deps, state), grouped);
  t.is(reads, 7, 'selector facts come from the digest');
  // One machine alone (the console's machine view) uses the same digest.
  t.like((await consoleMachineRows(deps, state, MACS[1]))[0], { group: 'big', hostname: 'reported-again' });
  t.is(reads, 7);
});

test('selectorFactKeys: the top-level fact names the groups read', (t) => {
  t.deepEqual(
    selectorFactKeys([
      { id: 'a', profile: 'p', selector: { facts: ['cpu.count >= 4', 'dmi.vendor == QEMU'] } },
      { id: 'b', profile: 'p', selector: { facts: ['disks.#.sizeBytes > 100G', 'cpu.model ~ "*Xeon*"'] } },
      { id: 'c', profile: 'p', selector: { mac: '52:54:00:00:00:01' } },
    ]),
    ['cpu', 'disks', 'dmi'],
  );
});
