/**
 * The web console's HTTP side (src/http/routes/console.ts): the page and its files come from
 * the package with a strict CSP; every console API needs the token in the Authorization header
 * (never in the URL); the event stream delivers the backlog, then live events, per machine, and
 * lets go of its listener when the client leaves; machine rows, preview and schema.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createEventLog, type BootEvent, type EventLog } from '../../src/events.js';
import { MAX_EVENT_STREAMS } from '../../src/http/routes/console.js';
import { createHttpServer } from '../../src/http/server.js';
import { createSilentLogger } from '../../src/log.js';
import { createMemoryStore } from '../../src/store/store.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import { addRancherAssets, auth, startHarness, TEMPLATES, TOKEN } from './helpers.js';

const MAC = '52:54:00:c0:00:01';
const OTHER = '52:54:00:c0:00:02';

test('GET / serves the console with the token file path, a CSP that admits only its import map, and its files from the package', async (t) => {
  const h = await startHarness({ console: { tokenFile: '/var/lib/netboot/<api-token>' } });
  t.teardown(() => h.close());
  const page = await h.req('GET', '/');
  t.is(page.status, 200);
  t.regex(String(page.headers['content-type']), /^text\/html/);
  // Escaped: the path is text, never markup.
  t.true(page.text.includes('data-token-file="/var/lib/netboot/&#60;api-token&#62;"'));
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(page.text)?.[1] ?? '';
  const csp = String(page.headers['content-security-policy']);
  t.true(csp.includes(`'sha256-${createHash('sha256').update(importMap).digest('base64')}'`), csp);
  t.true(csp.includes("default-src 'none'") && csp.includes("connect-src 'self'") && csp.includes("frame-ancestors 'none'"));
  t.false(csp.includes('unsafe-inline'));
  t.is(page.headers['x-content-type-options'], 'nosniff');
  // Every module the page and the import map name is served by the appliance itself (no CDN).
  for (const src of [...page.text.matchAll(/(?:src|href)="(\/ui\/[^"]+)"/g)]
    .map((m) => m[1]!)
    .concat(Object.values(JSON.parse(importMap).imports as Record<string, string>))) {
    const r = await h.req('GET', src);
    t.is(r.status, 200, src);
    t.regex(String(r.headers['content-type']), /^(text\/javascript|text\/css)/, src);
  }
  const app = await h.req('GET', '/ui/app.js');
  t.is((await h.req('GET', '/ui/app.js', { headers: { 'if-none-match': String(app.headers.etag) } })).status, 304);
  t.false(/https?:\/\//.test(app.text), 'the console must not load anything from elsewhere');
  for (const bad of ['/ui/nope.js', '/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/vendor/../../src/cli.ts'])
    t.is((await h.req('GET', bad)).status, 404, bad);
});

test('console API: no token, a wrong token and a token in the URL are all 401', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  for (const p of [
    '/api/console/machines',
    `/api/console/machines/${MAC}`,
    '/api/console/status',
    '/api/console/schema',
    `/api/console/preview?mac=${MAC}`,
    '/api/console/assets',
    '/api/events/stream',
  ]) {
    t.is((await h.req('GET', p)).status, 401, p);
    t.is((await h.req('GET', p, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401, p);
    const sep = p.includes('?') ? '&' : '?';
    t.is((await h.req('GET', `${p}${sep}token=${TOKEN}&access_token=${TOKEN}`)).status, 401, `${p} with the token in the query`);
  }
  const reader = await startHarness({ apiReadToken: 'read-only-token-0123456789' });
  t.teardown(() => reader.close());
  t.is(
    (await reader.req('GET', '/api/console/machines', { headers: { authorization: 'Bearer read-only-token-0123456789' } })).status,
    200,
    'the read-only token may watch',
  );
  const ok = await h.req('GET', '/api/console/status', { headers: auth });
  t.is(ok.status, 200);
  t.like(ok.json, { address: '10.0.0.1', httpPort: h.port });
});

/** Read an event stream until `until(events)` holds; returns the events and the response. */
function readStream(
  port: number,
  path: string,
  until: (events: Array<{ event: string; data: unknown }>) => boolean,
  onOpen?: (res: http.IncomingMessage) => void,
): Promise<{ events: Array<{ event: string; data: unknown }>; res: http.IncomingMessage; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: auth, agent: false }, (res) => {
      onOpen?.(res);
      const events: Array<{ event: string; data: unknown }> = [];
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`stream never satisfied the condition; got ${JSON.stringify(events)}`)), 5000);
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        const blocks = buf.split('\n\n');
        buf = blocks.pop()!;
        for (const b of blocks) {
          const event = /^event: (.*)$/m.exec(b)?.[1];
          const data = /^data: (.*)$/m.exec(b)?.[1];
          if (event) events.push({ event, data: data ? JSON.parse(data) : null });
        }
        if (until(events)) {
          clearTimeout(timer);
          resolve({ events, res, close: () => req.destroy() });
        }
      });
    });
    req.on('error', reject);
  });
}

/** An event log that counts its live listeners. */
function countingLog(): EventLog & { listeners: () => number } {
  const base = createEventLog();
  let n = 0;
  return {
    ...base,
    record: (e) => base.record(e),
    subscribe(listener: (event: BootEvent) => void) {
      n++;
      const off = base.subscribe!(listener);
      return () => {
        n--;
        off();
      };
    },
    listeners: () => n,
  };
}

test('event stream: backlog, ready, then live events of that machine only; the listener goes when the client does', async (t) => {
  const events = countingLog();
  const h = await startHarness({ events });
  t.teardown(() => h.close());
  // The app itself listens for good (boot sessions learn DHCP addresses): count beyond it.
  const own = events.listeners();
  events.record({ mac: MAC, type: 'dhcp-offer', ip: '10.0.0.50', detail: { arch: 'bios' } });
  events.record({ mac: OTHER, type: 'dhcp-offer' });
  const stream = await readStream(
    h.port,
    `/api/events/stream?mac=${MAC.replace(/:/g, '-')}`,
    (e) => e.some((x) => x.event === 'ready'),
    (res) => {
      t.is(res.statusCode, 200);
      t.regex(String(res.headers['content-type']), /^text\/event-stream/);
      t.is(res.headers['cache-control'], 'no-store');
    },
  );
  t.deepEqual(
    stream.events.map((e) => e.event),
    ['boot', 'ready'],
  );
  t.like(stream.events[0]!.data, { mac: MAC, type: 'dhcp-offer', detail: { arch: 'bios' } });
  t.is(events.listeners(), own + 1);
  const live = new Promise<unknown>((resolve) => {
    stream.res.on('data', (chunk: string) => {
      if (chunk.includes('tftp-file')) resolve(JSON.parse(/^data: (.*)$/m.exec(chunk)![1]!));
    });
  });
  events.record({ mac: OTHER, type: 'tftp-file', detail: { file: 'other.efi' } });
  events.record({ mac: MAC, type: 'tftp-file', detail: { file: 'snponly.efi' } });
  t.like(await live, { mac: MAC, type: 'tftp-file', detail: { file: 'snponly.efi' } });
  stream.close();
  for (let i = 0; i < 50 && events.listeners() > own; i++) await new Promise((r) => setTimeout(r, 20));
  t.is(events.listeners(), own, 'a closed stream must unsubscribe');
  // Recording after the client left must not throw or write to a dead socket.
  t.notThrows(() => events.record({ mac: MAC, type: 'http-script' }));
  t.is((await h.req('GET', '/api/events/stream?mac=nope', { headers: auth })).status, 400);
});

test(`event stream: at most ${MAX_EVENT_STREAMS} at once, then 503 with Retry-After`, async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const open = [];
  for (let i = 0; i < MAX_EVENT_STREAMS; i++) open.push(await readStream(h.port, '/api/events/stream', (e) => e.some((x) => x.event === 'ready')));
  const refused = await h.req('GET', '/api/events/stream', { headers: auth });
  t.is(refused.status, 503);
  t.is(refused.json.error.code, 'ERR_TOO_MANY_STREAMS');
  t.is(refused.headers['retry-after'], '10');
  open.pop()!.close();
  await new Promise((r) => setTimeout(r, 100));
  const again = await readStream(h.port, '/api/events/stream', (e) => e.some((x) => x.event === 'ready'));
  t.pass();
  for (const s of [...open, again]) s.close();
});

test('console machines: declared, discovered and wire-only machines with profile, why, last seen and the standing failure', async (t) => {
  const store = createMemoryStore({
    ...createDefaultDb(),
    profiles: [...createDefaultDb().profiles, { id: 'gone', kernel: '/assets/nothing/vmlinuz', initrd: [], cmdline: '' }],
    machines: [{ mac: MAC, hostname: 'web-1', profile: 'gone' }],
  });
  const h = await startHarness({ store });
  t.teardown(() => h.close());
  // An unknown machine reporting facts (the agent's POST) is registered as discovered.
  const facts = { dmi: { vendor: 'QEMU' }, cpu: { count: 2 }, memory: { totalKiB: 2097152 }, disks: [{ sizeBytes: 1024 }], nics: [{}, {}] };
  t.is((await h.req('POST', '/api/machines/52:54:00:c0:00:03/facts', { body: facts })).status, 201);
  h.events.record({ mac: OTHER, type: 'dhcp-offer', ip: '10.0.0.77', detail: { arch: 'efi-x64' } });
  // A real boot request for the declared machine whose profile's kernel is missing.
  const script = await h.req('GET', `/ipxe?mac=${MAC}`);
  t.regex(script.text, /missing/);
  const rows = (await h.req('GET', '/api/console/machines', { headers: auth })).json as Array<Record<string, any>>;
  t.deepEqual(
    rows.map((r) => [r.mac, r.kind]),
    [
      [MAC, 'declared'],
      [OTHER, 'seen'],
      ['52:54:00:c0:00:03', 'discovered'],
    ],
  );
  t.like(rows[0], { hostname: 'web-1', profile: 'gone', via: 'machine-mac', lastEvent: 'http-script' });
  t.regex(rows[0]!.failure.message, /profile gone: \/assets\/nothing\/vmlinuz is missing/);
  t.like(rows[1], { lastIp: '10.0.0.77', arch: 'efi-x64', profile: 'rancheros', via: 'default', failure: null });
  t.deepEqual(rows[2]!.facts, { vendor: 'QEMU', cpus: 2, memoryMiB: 2048, disks: 1, diskBytes: 1024, nics: 2 });
  const one = await h.req('GET', `/api/console/machines/${OTHER.toUpperCase()}`, { headers: auth });
  t.is(one.json.mac, OTHER);
  t.is((await h.req('GET', '/api/console/machines/52:54:00:ff:ff:ff', { headers: auth })).status, 404);
});

test('preview: the iPXE script and cloud-config a machine would get, with no boot event and no registration', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const missing = await h.req('GET', `/api/console/preview?mac=${MAC}`, { headers: auth });
  t.is(missing.status, 200);
  t.regex(missing.json.ipxe.error, /Run: node bin\/appliance fetch rancheros/);
  await addRancherAssets(h.assetsDir);
  const p = await h.req('GET', `/api/console/preview?mac=${MAC}`, { headers: auth });
  t.like(p.json, { mac: MAC, profile: 'rancheros', via: 'default' });
  t.regex(p.json.ipxe.text, /^#!ipxe/);
  t.true(p.json.ipxe.text.includes(`http://10.0.0.1:${h.port}/assets/rancheros/v1.5.8/vmlinuz`));
  t.regex(p.json.cloudConfig.text, /^#cloud-config\n/);
  t.deepEqual(h.events.list({ mac: MAC }), [], 'a preview is not a boot');
  t.is(await h.store.getMachine(MAC), undefined, 'a preview registers nothing');
  t.is((await h.req('GET', '/api/console/preview', { headers: auth })).status, 400);
});

test('console schema: the published schema plus the server wording of each pattern', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const s = (await h.req('GET', '/api/console/schema', { headers: auth })).json;
  const published = (await h.req('GET', '/api/schema', { headers: auth })).json;
  const kernel = s.properties.profiles.items.properties.kernel;
  t.is(kernel.pattern, published.properties.profiles.items.properties.kernel.pattern);
  t.regex(kernel['x-message'], /^must be \/assets\/<path>/);
  t.is(s.$id, published.$id);
});

test('console assets: each profile file present or missing with its fix, size and sha256 on request; iPXE binaries per firmware and where found', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'netboot-tftproot-'));
  const system = await mkdtemp(path.join(tmpdir(), 'netboot-system-'));
  t.teardown(() => Promise.all([rm(root, { recursive: true, force: true }), rm(system, { recursive: true, force: true })]));
  await writeFile(path.join(root, 'snponly.efi'), 'efi');
  await writeFile(path.join(system, 'undionly.kpxe'), 'bios');
  const store = createMemoryStore({
    ...createDefaultDb(),
    profiles: [...createDefaultDb().profiles, { id: 'remote', kernel: 'http://10.0.0.9/vmlinuz', initrd: [], cmdline: '' }],
  });
  const h = await startHarness({ store, bootDirs: [root, system] });
  t.teardown(() => h.close());
  const before = (await h.req('GET', '/api/console/assets', { headers: auth })).json;
  const rancher = before.profiles.find((p: { id: string }) => p.id === 'rancheros');
  t.deepEqual(
    rancher.files.map((f: { role: string; present: boolean }) => [f.role, f.present]),
    [
      ['kernel', false],
      ['initrd', false],
    ],
  );
  t.regex(rancher.files[0].fix, /Run: node bin\/appliance fetch rancheros/);
  t.like(before.profiles.find((p: { id: string }) => p.id === 'remote').files[0], { where: 'remote', present: null });
  t.deepEqual(
    before.bootFiles.map((f: { firmware: string; source: string }) => [f.firmware, f.source]),
    [
      ['bios', 'system'],
      ['efi-x64', 'tftp-root'],
      ['efi-ia32', 'missing'],
      ['efi-arm64', 'missing'],
    ],
  );
  t.is(before.bootFiles[0].path, path.join(system, 'undionly.kpxe'));
  await addRancherAssets(h.assetsDir);
  const after = (await h.req('GET', '/api/console/assets?sha256=1', { headers: auth })).json;
  const kernel = after.profiles.find((p: { id: string }) => p.id === 'rancheros').files[0];
  t.like(kernel, { present: true, size: 4096, sha256: createHash('sha256').update(Buffer.alloc(4096, 7)).digest('hex') });
  t.is((await h.req('GET', '/api/console/assets', { headers: auth })).json.profiles[0].files[0].sha256, undefined, 'sha256 only when asked');
});

test('event stream: a quiet stream outlives the server idle and request timeouts (heartbeat), and stop() ends it', async (t) => {
  const events = createEventLog();
  let port = 0;
  const log = createSilentLogger();
  const server = createHttpServer({
    host: '127.0.0.1',
    port: 0,
    log,
    timeouts: { headersMs: 300, requestMs: 300, keepAliveMs: 100, idleMs: 600 },
    deps: {
      store: createMemoryStore(createDefaultDb()),
      events,
      log,
      address: '127.0.0.1',
      httpPort: () => port,
      templatesDir: TEMPLATES,
      assetsDir: TEMPLATES,
      apiToken: TOKEN,
    },
  });
  port = (await server.start()).port;
  t.teardown(() => server.stop());
  const stream = await readStream(port, '/api/events/stream', (e) => e.some((x) => x.event === 'ready'));
  let ended = false;
  stream.res.on('close', () => (ended = true));
  let text = '';
  stream.res.on('data', (c: string) => (text += c));
  await new Promise((r) => setTimeout(r, 2000));
  t.false(ended, 'the stream was cut by a server timeout');
  t.true(text.includes(': ping'), 'no heartbeat within four idle periods');
  events.record({ mac: MAC, type: 'http-script', detail: { outcome: 'boot' } });
  await new Promise((r) => setTimeout(r, 100));
  t.true(text.includes('"type":"http-script"'));
  await server.stop();
  await new Promise((r) => setTimeout(r, 100));
  t.true(ended, 'stop() must end open streams');
});
