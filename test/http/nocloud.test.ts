/**
 * cloud-init NoCloud seed paths (`ds=nocloud-net;s=http://A:P/nocloud/ID/`): user-data is the
 * machine's cloud-config, meta-data its instance-id and hostname, vendor-data empty; the ID may
 * be the MAC in iPXE's notations or a declared machine's UUID; without one the client's address
 * or the query names the machine.
 */
import test from 'ava';
import { parse as parseYaml } from 'yaml';
import { createDefaultDb } from '../../src/store/defaults.js';
import { createMemoryStore } from '../../src/store/store.js';
import { nocloudInstanceId, renderNoCloudMetaData } from '../../src/http/routes/nocloud.js';
import { startHarness } from './helpers.js';

const MAC = '52:54:00:aa:00:31';
const UUID = '5a1e0031-7f3a-4c2b-9d1e-0123456789ab';

async function harness(t: import('ava').ExecutionContext) {
  const store = createMemoryStore({
    ...createDefaultDb(),
    machines: [{ mac: MAC, uuid: UUID, hostname: 'node31', vars: { ssh_authorized_keys: ['ssh-ed25519 AAAA n31@lab'] } }],
  });
  const h = await startHarness({ store, fixedPort: 8080 });
  t.teardown(() => h.close());
  return h;
}

test('user-data under /nocloud/ID/ is the machine cloud-config for each ID form iPXE expands (MAC, hexhyp, UUID)', async (t) => {
  const h = await harness(t);
  const direct = await h.req('GET', `/cloud-config?mac=${MAC}`);
  for (const id of [MAC, MAC.replace(/:/g, '-'), MAC.replace(/:/g, ''), UUID, UUID.toUpperCase()]) {
    const r = await h.req('GET', `/nocloud/${id}/user-data`);
    t.is(r.status, 200, id);
    t.true(r.text.startsWith('#cloud-config\n'), id);
    t.is(r.text, direct.text, id);
    t.regex(r.text, /hostname: "node31"/, id);
    t.regex(r.text, /ssh-ed25519 AAAA n31@lab/, id);
  }
  const served = h.events.list({ mac: MAC }).filter((e) => e.type === 'http-cloud-config');
  t.deepEqual(
    served.map((e) => e.detail?.path),
    [
      '/cloud-config',
      `/nocloud/${MAC}/user-data`,
      `/nocloud/${MAC.replace(/:/g, '-')}/user-data`,
      `/nocloud/${MAC.replace(/:/g, '')}/user-data`,
      `/nocloud/${UUID}/user-data`,
      `/nocloud/${UUID.toUpperCase()}/user-data`,
    ],
  );
});

test('meta-data is YAML with a per-MAC instance-id and the declared hostname; vendor-data is empty; network-config is not served', async (t) => {
  const h = await harness(t);
  const r = await h.req('GET', `/nocloud/${UUID}/meta-data`);
  t.is(r.status, 200);
  t.deepEqual(parseYaml(r.text), { 'instance-id': 'iid-netboot-525400aa0031', 'local-hostname': 'node31' });
  // An undeclared machine gets an instance-id and no hostname (cloud-init keeps its own).
  t.deepEqual(parseYaml((await h.req('GET', '/nocloud/52-54-00-aa-00-99/meta-data')).text), { 'instance-id': 'iid-netboot-525400aa0099' });
  const vd = await h.req('GET', `/nocloud/${MAC}/vendor-data`);
  t.is(vd.status, 200);
  t.is(vd.text, '');
  t.is((await h.req('GET', `/nocloud/${MAC}/network-config`)).status, 404);
  t.is(nocloudInstanceId(MAC), 'iid-netboot-525400aa0031');
  t.is(renderNoCloudMetaData(MAC, undefined), 'instance-id: iid-netboot-525400aa0031\n');
});

test('a seed URL without an ID finds the machine by the client address or the query; bad IDs are 4xx, never 500', async (t) => {
  const h = await harness(t);
  // No MAC known for 127.0.0.1 yet: refused with the fix.
  const unknown = await h.req('GET', '/nocloud/user-data');
  t.is(unknown.status, 400);
  t.regex(unknown.json.error.message, /nocloud\/\$\{net0\/mac\}\//);
  // DHCP saw the machine at this address: the OS's seed fetch from it is that machine's.
  h.dhcpSaw(MAC);
  const byIp = await h.req('GET', '/nocloud/user-data');
  t.is(byIp.status, 200);
  t.regex(byIp.text, /hostname: "node31"/);
  t.regex((await h.req('GET', `/nocloud/meta-data?mac=52:54:00:aa:00:77`)).text, /iid-netboot-525400aa0077/);
  for (const [p, status] of [
    ['/nocloud/not-a-mac/user-data', 400],
    ['/nocloud/%zz/user-data', 400],
    ['/nocloud/%7B%7B%20constructor%20%7D%7D/meta-data', 400],
    ['/nocloud/5a1e0000-0000-4000-8000-00000000dead/user-data', 404],
  ] as const) {
    const r = await h.req('GET', p);
    t.is(r.status, status, p);
    t.truthy(r.json?.error?.code, p);
  }
});
