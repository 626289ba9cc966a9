/** `GET /healthz` and `GET /metrics` of a running HTTP server (src/http/routes/health.ts): the facts index. */
import test from 'ava';
import { createSilentLogger } from '../../src/log.js';
import { createFactsIndex, type FactsIndex } from '../../src/store/facts-index.js';
import { parseDb } from '../../src/store/schema.js';
import { startHarness } from './helpers.js';

const log = createSilentLogger();

/** The app on a running server (127.0.0.1:0), with `index` behind /healthz and /metrics. */
async function start(index?: FactsIndex) {
  const h = await startHarness(index ? { factsIndexStatus: () => index.status() } : {});
  const get = async (path: string) => {
    const r = await h.req('GET', path);
    return { status: r.status, type: String(r.headers['content-type']), text: r.text };
  };
  return { close: () => h.close(), get };
}

/** An index reading dmi.vendor, bounded to two 30-byte projections. */
async function smallIndex(): Promise<FactsIndex> {
  const index = createFactsIndex({ log, limits: { maxEntryBytes: 64, maxTotalBytes: 64 } });
  const db = parseDb({
    profiles: [{ id: 'plain', kernel: '/assets/vmlinuz' }],
    groups: [{ id: 'dell', profile: 'plain', selector: { facts: ['dmi.vendor == "Dell Inc."'] } }],
  });
  await index.sync(db, { list: () => [], getFacts: async () => undefined });
  return index;
}

/** The value of an unlabelled sample in Prometheus text. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test('the facts index size is in /metrics and /healthz; machines left out by its limits are a warning, not degraded', async (t) => {
  const index = await smallIndex();
  const { close, get } = await start(index);
  t.teardown(close);

  let metrics = await get('/metrics');
  t.is(metrics.status, 200);
  t.regex(metrics.type, /^text\/plain/);
  t.regex(metrics.text, /# HELP netboot_facts_index_machines .+\n# TYPE netboot_facts_index_machines gauge\n/);
  t.is(sample(metrics.text, 'netboot_facts_index_machines'), 0);
  t.is(sample(metrics.text, 'netboot_facts_index_bytes'), 0);
  t.is(sample(metrics.text, 'netboot_facts_index_skipped_machines'), 0);
  let health = JSON.parse((await get('/healthz')).text);
  t.is(health.status, 'ok');
  t.false('warnings' in health);
  t.deepEqual(health.factsIndex, { machines: 0, bytes: 0, skipped: 0 });

  // Each projection is {"dmi":{"vendor":"Dell Inc."}}, 30 bytes: two fit in 64, the third does not.
  for (let i = 1; i <= 3; i++) index.note(`52:54:00:dd:00:0${i}`, { dmi: { vendor: 'Dell Inc.', product: 'R650' } });
  // Read at each scrape, not at start.
  metrics = await get('/metrics');
  t.is(sample(metrics.text, 'netboot_facts_index_machines'), 2);
  t.is(sample(metrics.text, 'netboot_facts_index_bytes'), 60);
  t.is(sample(metrics.text, 'netboot_facts_index_skipped_machines'), 1);
  const r = await get('/healthz');
  t.is(r.status, 200);
  health = JSON.parse(r.text);
  t.is(health.status, 'ok', 'a bound reached is not degraded');
  t.false('problems' in health);
  t.deepEqual(health.factsIndex, { machines: 2, bytes: 60, skipped: 1 });
  t.deepEqual(health.warnings, ['facts index: 1 machine left out by its limits; DHCP chooses their boot file without facts (the boot script still uses them)']);

  // Room again: the warning goes.
  index.note('52:54:00:dd:00:01', undefined);
  index.note('52:54:00:dd:00:03', { dmi: { vendor: 'Dell Inc.' } });
  health = JSON.parse((await get('/healthz')).text);
  t.deepEqual(health.factsIndex, { machines: 2, bytes: 60, skipped: 0 });
  t.false('warnings' in health);
});

test('an app without a facts index reports none', async (t) => {
  const { close, get } = await start();
  t.teardown(close);
  t.notRegex((await get('/metrics')).text, /netboot_facts_index/);
  t.false('factsIndex' in JSON.parse((await get('/healthz')).text));
});
