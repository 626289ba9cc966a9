/**
 * What grub reads from the appliance's TFTP server, fetched with curl's TFTP client (a client
 * nobody here wrote), through the real TFTP server with the grub virtual files mounted.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createGrubFiles, type GrubFilesDeps } from '../../src/boot/grub-files.js';
import { createEventLog, type EventLog } from '../../src/events.js';
import { createBootSessions } from '../../src/http/boot-sessions.js';
import { grantCallback } from '../../src/http/callback-grant.js';
import { settleServedOneShot } from '../../src/http/one-shot.js';
import { createRenderer } from '../../src/http/render.js';
import { createSilentLogger } from '../../src/log.js';
import { createMemoryStore } from '../../src/store/store.js';
import { startServer, tempDir } from '../tftp/helpers.js';

const run = promisify(execFile);
const TEMPLATES = fileURLToPath(new URL('../../templates', import.meta.url));
const MAC = '52:54:00:16:05:01';

async function tftpGet(port: number, name: string): Promise<{ ok: boolean; body: string; code: number | string | undefined }> {
  try {
    const { stdout } = await run('curl', ['-sS', '--fail', `tftp://127.0.0.1:${port}/${name}`], { timeout: 20_000, maxBuffer: 64 * 1024 * 1024 });
    return { ok: true, body: stdout, code: 0 };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { code?: number | string };
    if (e.code === 'ENOENT') throw new Error('curl is not installed (scripts/install installs it)');
    return { ok: false, body: '', code: e.code };
  }
}

async function setup(
  t: { teardown(fn: () => unknown): void },
  db: Parameters<typeof createMemoryStore>[0],
  secureBootDefault = false,
  extra: (events: EventLog) => Partial<GrubFilesDeps> = () => ({}),
  withStore: (store: ReturnType<typeof createMemoryStore>) => void = () => undefined,
) {
  const assets = await tempDir('grub-assets-');
  await mkdir(path.join(assets, 'os'));
  // A real signed kernel head is not needed for these cases: plain bytes stand in for files.
  await writeFile(path.join(assets, 'os', 'vmlinuz'), Buffer.alloc(70_000, 7));
  await writeFile(path.join(assets, 'os', 'initrd.img'), 'initrd-bytes');
  await writeFile(path.join(path.dirname(assets), `${path.basename(assets)}-secret`), 'outside');
  const events = createEventLog();
  const store = createMemoryStore(db);
  withStore(store);
  const s = await startServer({
    events,
    virtualFiles: createGrubFiles({
      store,
      renderer: createRenderer(TEMPLATES),
      assetsDir: assets,
      server: () => ({ address: '10.99.0.1', port: 8080 }),
      secureBootDefault,
      log: createSilentLogger(),
      events,
      ...extra(events),
    }),
  });
  t.teardown(() => s.close());
  return { s, assets, events };
}

const PROFILE = {
  id: 'os',
  kernel: '/assets/os/vmlinuz',
  initrd: ['/assets/os/initrd.img'],
  cmdline: { console: 'ttyS0', ds: '[url:http://{{ address }}:{{ port }}/cloud-config?mac={{ mac }}]' },
};

test('grub.cfg, the machine script and the assets it names are served over tftp', async (t) => {
  const { s, assets, events } = await setup(t, { defaultProfile: 'os', profiles: [PROFILE] });
  const entry = await tftpGet(s.port, 'grub/grub.cfg');
  t.true(entry.ok);
  t.true(entry.body.includes('source (tftp,10.99.0.1)/grub/machines/$grub_cpu/$net_default_mac.cfg'));
  const script = await tftpGet(s.port, `grub/machines/x86_64/${MAC}.cfg`);
  t.true(
    script.body.includes(`linux (tftp,10.99.0.1)/assets/os/vmlinuz 'console=ttyS0' 'ds=[url:http://10.99.0.1:8080/cloud-config?mac=${MAC}]'`),
    script.body,
  );
  t.true(script.body.includes('initrd (tftp,10.99.0.1)/assets/os/initrd.img'));
  const kernel = await tftpGet(s.port, 'assets/os/vmlinuz');
  t.is(Buffer.from(kernel.body, 'latin1').length, 70_000);
  t.is((await tftpGet(s.port, 'assets/os/initrd.img')).body, await readFile(path.join(assets, 'os', 'initrd.img'), 'utf8'));
  t.like(events.list({ mac: MAC }).find((e) => e.type === 'grub-script')?.detail, { outcome: 'boot', profile: 'os', via: 'default', arch: 'x86_64' });
});

test('nothing outside the assets directory is served, and unknown grub paths are not files', async (t) => {
  const { s, assets } = await setup(t, { defaultProfile: 'os', profiles: [PROFILE] });
  t.false((await tftpGet(s.port, `assets/../${path.basename(assets)}-secret`)).ok);
  t.false((await tftpGet(s.port, 'assets/os/missing')).ok);
  // grub probes these module lists at start; not found is what it expects.
  t.false((await tftpGet(s.port, 'grub/x86_64-efi/command.lst')).ok);
});

test('a machine that cannot boot yet gets a grub script saying why, which retries', async (t) => {
  // A default profile that does not exist is refused at write time now; no default at all is
  // what still leaves a machine without a profile.
  const { s, events } = await setup(t, {
    profiles: [{ ...PROFILE, id: 'nokernel', kernel: '/assets/none/vmlinuz' }],
    machines: [{ mac: '52:54:00:16:05:02', profile: 'nokernel' }],
  });
  const none = await tftpGet(s.port, `grub/machines/x86_64/${MAC}.cfg`);
  t.regex(none.body, /echo 'netboot-appliance: no machine record, group or default profile matches this machine'/);
  t.true(none.body.includes('configfile (tftp,10.99.0.1)/grub/grub.cfg'));
  const missing = await tftpGet(s.port, 'grub/machines/x86_64/52:54:00:16:05:02.cfg');
  t.regex(missing.body, /\/assets\/none\/vmlinuz is missing on the appliance/);
  t.like(events.list({ mac: '52:54:00:16:05:02' }).find((e) => e.type === 'grub-script')?.detail, { outcome: 'retry', asset: '/assets/none/vmlinuz' });
});

test('under secure boot an unsigned kernel is refused before shim would refuse it', async (t) => {
  const { s } = await setup(t, { defaultProfile: 'os', profiles: [PROFILE] }, true);
  const script = await tftpGet(s.port, `grub/machines/x86_64/${MAC}.cfg`);
  t.regex(script.body, /secure boot is on and kernel \/assets\/os\/vmlinuz carries no authenticode signature/);
  t.false(script.body.includes('linux '));
});

test('grub selects with the machine’s verified facts and carries the callback only to the address DHCP saw for it', async (t) => {
  const SEEN = '52:54:00:16:05:0a';
  const UNSEEN = '52:54:00:16:05:0b';
  const TOKEN = 'abcdef0123456789abcdef0123456789';
  const since = new Date().toISOString();
  const withCallback = { ...PROFILE, id: 'installer', cmdline: { console: 'ttyS0', 'netboot.callback': '{{ callback_url? }}' } };
  const { s, events } = await setup(
    t,
    {
      defaultProfile: 'os',
      profiles: [PROFILE, withCallback],
      groups: [{ id: 'acme', profile: 'installer', selector: { facts: ['dmi.vendor == Acme'] } }],
      machines: [SEEN, UNSEEN].map((mac) => ({
        mac,
        profile: 'installer',
        state: 'provisioning' as const,
        provisioning: { profile: 'installer', since, token: TOKEN },
      })),
    },
    false,
    (log) => {
      const sessions = createBootSessions({ history: (mac) => log.list({ mac }) });
      log.subscribe?.((e) => sessions.noteEvent(e));
      return {
        facts: async (mac) => (mac === MAC ? { dmi: { vendor: 'Acme' } } : undefined),
        grantCallback: (machine, mac, ip) => grantCallback({ sessions, lifetimeSeconds: 3600 }, machine, mac, ip),
      };
    },
  );
  const linux = (body: string) => /^\s*linux .*$/m.exec(body)?.[0] ?? body;
  // Facts: the group's profile for the machine whose facts match; the default for another.
  t.regex(linux((await tftpGet(s.port, `grub/machines/x86_64/${MAC}.cfg`)).body), /'console=ttyS0'$/);
  t.like(events.list({ mac: MAC }).find((e) => e.type === 'grub-script')?.detail, {
    profile: 'installer',
    via: 'group',
    group: 'acme',
    why: ['facts: dmi.vendor == Acme (got "Acme")'],
  });
  t.is(/profile (\S+)/.exec((await tftpGet(s.port, 'grub/machines/x86_64/52:54:00:16:05:0c.cfg')).body)?.[1], 'os');

  // The callback: DHCP saw SEEN at 127.0.0.1 (where the TFTP request comes from), never UNSEEN.
  events.record({ type: 'dhcp-ack', mac: SEEN, ip: '127.0.0.1' });
  t.true(
    linux((await tftpGet(s.port, `grub/machines/x86_64/${SEEN}.cfg`)).body).includes(
      `'netboot.callback=http://10.99.0.1:8080/api/machines/${SEEN}/callback?token=${TOKEN}'`,
    ),
  );
  const unseen = (await tftpGet(s.port, `grub/machines/x86_64/${UNSEEN}.cfg`)).body;
  t.false(unseen.includes(TOKEN), unseen);
  t.like(events.list({ mac: UNSEEN }).find((e) => e.type === 'grub-script')?.detail, {
    callback: 'withheld',
    callbackWhy: `DHCP never saw ${UNSEEN} at 127.0.0.1`,
  });
});

test('a one-shot served by grub is consumed when the script went to the address DHCP saw for the machine, kept for a stranger', async (t) => {
  const MINE = '52:54:00:16:05:1a';
  const OTHER = '52:54:00:16:05:1b';
  const installer = { ...PROFILE, id: 'installer' };
  const setAt = new Date().toISOString();
  let store: ReturnType<typeof createMemoryStore> | undefined;
  const { s, events } = await setup(
    t,
    {
      defaultProfile: 'os',
      profiles: [PROFILE, installer],
      machines: [MINE, OTHER].map((mac) => ({ mac, profile: 'os', nextBoot: { profile: 'installer', setAt, token: 'feedfacefeedfacefeedfacefeedface' } })),
    },
    false,
    (log) => {
      const sessions = createBootSessions({ history: (mac) => log.list({ mac }) });
      log.subscribe?.((e) => sessions.noteEvent(e));
      return {
        settleOneShot: (mac, ip) =>
          settleServedOneShot(
            {
              deps: { store: store! },
              sessions,
              log: createSilentLogger(),
              record: (type, m, i, detail) => log.record({ type, mac: m, ...(i ? { ip: i } : {}), ...(detail ? { detail } : {}) }),
            },
            mac,
            ip,
            'grub',
          ),
      };
    },
    (st) => {
      store = st;
    },
  );
  const profileOf = async (mac: string) => /profile (\S+)/.exec((await tftpGet(s.port, `grub/machines/x86_64/${mac}.cfg`)).body)?.[1];
  // DHCP saw MINE at 127.0.0.1, where the TFTP requests come from: its first grub boot takes the
  // one-shot, the next goes back to its own profile.
  events.record({ type: 'dhcp-ack', mac: MINE, ip: '127.0.0.1' });
  t.is(await profileOf(MINE), 'installer');
  t.like(events.list({ mac: MINE }).find((e) => e.type === 'grub-script')?.detail, { via: 'once', oneShot: 'consumed' });
  t.like(events.list({ mac: MINE }).find((e) => e.type === 'state')?.detail, { from: null, to: 'provisioning', by: 'grub' });
  t.is((await store!.getMachine(MINE))?.nextBoot, undefined);
  t.is(await profileOf(MINE), 'os', 'the next boot goes back to the machine’s own profile');
  // OTHER was never seen at this address: a stranger's request gets the script and consumes nothing.
  t.is(await profileOf(OTHER), 'installer');
  t.like(events.list({ mac: OTHER }).find((e) => e.type === 'grub-script')?.detail, { via: 'once', oneShot: 'kept' });
  t.truthy((await store!.getMachine(OTHER))?.nextBoot);
});
