import test from 'ava';
import { decideAuto, type AutoProbe } from '../../src/dhcp/auto-mode.js';
import { decideAutoMode } from '../../src/dhcp/probe.js';
import { decideAuto6 } from '../../src/dhcp6/probe.js';

const words = {
  notProbed: 'not probed',
  answered: (p: AutoProbe) => `answered after ${p.elapsedMs}`,
  uplink: (p: AutoProbe, where: string) => `uplink ${where} after ${p.elapsedMs}`,
  alone: (p: AutoProbe, where: string) => `alone on ${where} after ${p.elapsedMs}`,
};

test('decideAuto: server only when probed, nobody answered and the interface carries no default route', (t) => {
  const silent = { found: false, elapsedMs: 5 };
  t.deepEqual(decideAuto({ probe: undefined, interface: 'br0', carriesDefaultRoute: false }, words), { mode: 'proxy', reason: 'not probed' });
  t.deepEqual(decideAuto({ probe: { found: true, elapsedMs: 3 }, interface: 'br0', carriesDefaultRoute: false }, words), {
    mode: 'proxy',
    reason: 'answered after 3',
  });
  t.deepEqual(decideAuto({ probe: silent, interface: 'eth0', carriesDefaultRoute: true }, words), { mode: 'proxy', reason: 'uplink eth0 after 5' });
  t.deepEqual(decideAuto({ probe: silent, interface: undefined, carriesDefaultRoute: false }, words), {
    mode: 'server',
    reason: 'alone on this interface after 5',
  });
});

test('--dhcp-mode auto and --dhcp6-mode auto take the same mode for every combination of facts', (t) => {
  for (const probed of [false, true])
    for (const found of [false, true])
      for (const carriesDefaultRoute of [false, true]) {
        const v4 = decideAutoMode({ probe: probed ? { found, servers: [], mac: '', xid: 1, elapsedMs: 1 } : undefined, interface: 'br0', carriesDefaultRoute });
        const v6 = decideAuto6({ probe: probed ? { found, servers: [], elapsedMs: 1 } : undefined, interface: 'br0', carriesDefaultRoute });
        const rule = decideAuto({ probe: probed ? { found, elapsedMs: 1 } : undefined, interface: 'br0', carriesDefaultRoute }, words);
        t.is(v4.mode, rule.mode, JSON.stringify({ probed, found, carriesDefaultRoute }));
        t.is(v6.mode, rule.mode, JSON.stringify({ probed, found, carriesDefaultRoute }));
      }
});
