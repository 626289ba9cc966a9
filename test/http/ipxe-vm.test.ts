/**
 * Real firmware against the HTTP app: QEMU's iPXE (BIOS option ROM) and Debian's ipxe.efi under
 * OVMF run /boot.ipxe, fetch /ipxe, the kernel and the initrd, and the kernel reports the
 * command line it received. Networking is QEMU user mode with restrict=on (the guest reaches
 * nothing but a guestfwd to our server on 127.0.0.1); the DHCP "bootfile" is our /boot.ipxe.
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createEventLog, type EventLog } from '../../src/events.js';
import { buildTestInitrd, MARKERS } from '../../src/lab/initrd.js';
import { createSilentLogger } from '../../src/log.js';
import { createHttpServer } from '../../src/http/server.js';
import { createDefaultDb } from '../../src/store/defaults.js';
import type { DbInput } from '../../src/store/schema.js';
import { createMemoryStore } from '../../src/store/store.js';
import { TEMPLATES, TOKEN } from './helpers.js';

const run = promisify(execFile);
const MAC = '52:54:00:12:34:56';
const GUEST_ADDR = '10.0.2.100';

async function buildAssets(root: string, standIn: boolean): Promise<string> {
  const assets = path.join(root, 'assets');
  const dest = path.join(assets, 'rancheros', 'v1.5.8');
  await mkdir(dest, { recursive: true });
  if (standIn) {
    // The lab's stand-in OS (src/lab/initrd.ts): virtio-net, DHCP from QEMU's user network, then
    // it fetches every datasource on its command line and prints what it got.
    const initrd = buildTestInitrd();
    await cp(initrd.kernel.path, path.join(dest, 'vmlinuz'));
    await cp(initrd.path, path.join(dest, 'initrd'));
    return assets;
  }
  const kernel = (await readdir('/boot')).find((f) => /^vmlinuz-.*-amd64$/.test(f));
  if (!kernel) throw new Error('no /boot/vmlinuz-*-amd64 (install linux-image-cloud-amd64)');
  await cp(path.join('/boot', kernel), path.join(dest, 'vmlinuz'));
  // Tiny initrd: static busybox and an /init that prints the kernel command line and powers off.
  const initroot = path.join(root, 'initroot');
  await mkdir(path.join(initroot, 'bin'), { recursive: true });
  await mkdir(path.join(initroot, 'proc'), { recursive: true });
  await cp('/bin/busybox', path.join(initroot, 'bin', 'busybox'));
  await writeFile(
    path.join(initroot, 'init'),
    '#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\necho "NETBOOT-CMDLINE: $(/bin/busybox cat /proc/cmdline)"\n/bin/busybox poweroff -f\n',
  );
  await chmod(path.join(initroot, 'init'), 0o755);
  await run('sh', ['-c', `cd '${initroot}' && find . | cpio -o -H newc --quiet > '${path.join(dest, 'initrd')}'`]);
  return assets;
}

async function bootVm(
  t: import('ava').ExecutionContext,
  mode: 'bios' | 'efi',
  options: { initrdLate?: boolean; db?: DbInput; uuid?: string; standIn?: boolean } = {},
): Promise<{ line: string | undefined; console: string; events: EventLog }> {
  const root = await mkdtemp(path.join(tmpdir(), 'netboot-vm-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const assetsDir = await buildAssets(root, options.standIn === true);
  const initrd = path.join(assetsDir, 'rancheros', 'v1.5.8', 'initrd');
  const events = createEventLog();
  let watcher: NodeJS.Timeout | undefined;
  if (options.initrdLate) {
    // The initrd is "still downloading": the first /ipxe gets the retry script; once that has
    // been served, the file appears and the machine's retry must boot it.
    await rename(initrd, `${initrd}.later`);
    watcher = setInterval(() => {
      if (events.list({ mac: MAC }).some((e) => e.detail?.outcome === 'retry')) {
        clearInterval(watcher);
        void rename(`${initrd}.later`, initrd);
      }
    }, 50);
    t.teardown(() => clearInterval(watcher));
  }
  const server = createHttpServer({
    host: '127.0.0.1',
    port: 0,
    log: createSilentLogger(),
    // QEMU's guestfwd opens one connection to us when the VM starts and carries every guest
    // request over it; it sits silent until the firmware reaches iPXE (over 10 s for OVMF under
    // TCG), so the slowloris and keep-alive timeouts must not close it.
    timeouts: { headersMs: 600_000, requestMs: 600_000, keepAliveMs: 600_000, idleMs: 600_000 },
    // The guest sees us at 10.0.2.100:80 through guestfwd, so that is what scripts advertise.
    deps: {
      store: createMemoryStore(options.db ?? createDefaultDb()),
      events,
      log: createSilentLogger(),
      address: GUEST_ADDR,
      httpPort: () => 80,
      templatesDir: TEMPLATES,
      assetsDir,
      apiToken: TOKEN,
      retrySeconds: 1,
    },
  });
  const { port } = await server.start();
  t.teardown(() => server.stop());

  // A `tcp:` guestfwd is one chardev connection: enough for iPXE (keep-alive), but the stand-in
  // OS's wget opens a connection per fetch, so it gets `cmd:` (a forwarder spawned per guest
  // connection, stdin/stdout being that connection).
  let forward = `tcp:127.0.0.1:${port}`;
  if (options.standIn) {
    const forwarder = path.join(root, 'forward.mjs');
    await writeFile(
      forwarder,
      "import net from 'node:net';\nconst s = net.connect(Number(process.argv[2]), '127.0.0.1');\nprocess.stdin.pipe(s);\ns.pipe(process.stdout);\ns.on('error', () => process.exit(1));\n",
    );
    forward = `cmd:${process.execPath} ${forwarder} ${port}`;
  }
  const netdev = `user,id=n0,restrict=on,guestfwd=tcp:${GUEST_ADDR}:80-${forward},bootfile=http://${GUEST_ADDR}/boot.ipxe`;
  const args = ['-accel', 'tcg', '-m', '512', '-nographic', '-no-reboot', '-netdev', netdev, ...(options.uuid ? ['-uuid', options.uuid] : [])];
  if (mode === 'bios') {
    args.push('-device', `virtio-net-pci,netdev=n0,mac=${MAC},bootindex=1`);
  } else {
    const esp = path.join(root, 'esp', 'EFI', 'BOOT');
    await mkdir(esp, { recursive: true });
    await cp('/usr/lib/ipxe/ipxe.efi', path.join(esp, 'BOOTX64.EFI'));
    args.push(
      '-device',
      `virtio-net-pci,netdev=n0,mac=${MAC}`,
      '-bios',
      '/usr/share/qemu/OVMF.fd',
      '-drive',
      `id=d0,if=none,format=raw,file=fat:rw:${path.join(root, 'esp')}`,
      '-device',
      'ide-hd,drive=d0,bootindex=0',
    );
  }
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let console = '';
  const done = new Promise<void>((resolve) => {
    const limit = setTimeout(() => qemu.kill('SIGKILL'), 120_000);
    const onData = (c: Buffer): void => {
      console += c.toString('utf8');
      if (options.standIn ? console.includes(MARKERS.done) : /NETBOOT-CMDLINE: .*\n/.test(console)) qemu.kill('SIGKILL');
    };
    qemu.stdout.on('data', onData);
    qemu.stderr.on('data', onData);
    qemu.on('exit', () => {
      clearTimeout(limit);
      resolve();
    });
  });
  t.teardown(() => {
    qemu.kill('SIGKILL');
  });
  await done;
  const line = (options.standIn ? / cmdline: (.*)\r?\n/ : /NETBOOT-CMDLINE: (.*)\r?\n/).exec(console)?.[1];
  t.truthy(line, `kernel never printed its command line; console tail:\n${console.slice(-2000)}`);
  if (options.db) return { line, console, events };
  t.regex(line ?? '', new RegExp(`rancher\\.cloud_init\\.datasources=\\[url:http://${GUEST_ADDR.replace(/\./g, '\\.')}:80/cloud-config\\?mac=${MAC}\\]`));
  t.regex(line ?? '', /(^| )initrd=initrd( |$)/);
  const types = events.list({ mac: MAC }).map((e) => `${e.type}:${String(e.detail?.file ?? e.detail?.platform ?? '')}`);
  const boot = [
    `http-script:${mode === 'bios' ? 'pcbios' : 'efi'}`,
    'http-asset:/assets/rancheros/v1.5.8/vmlinuz',
    'http-asset:/assets/rancheros/v1.5.8/initrd',
  ];
  if (options.initrdLate) {
    t.deepEqual(types, ['http-script:', ...boot]);
    // iPXE wraps the console at 80 columns, so match the start of the message.
    t.regex(console, /netboot-appliance: profile rancheros: \/assets\/rancheros\/v1\.5\.8\/initrd is missing/);
    // ... and the message goes on to name the command that fetches the files.
    t.regex(console.replace(/\r?\n/g, ''), /is missing on the appliance\. Run: node bin\/appliance fetch rancheros/);
    t.regex(console, /netboot-appliance: retrying in 1 seconds/);
  } else {
    t.deepEqual(types, boot);
  }
  return { line, console, events };
}

test.serial('real iPXE, BIOS (SeaBIOS + QEMU iPXE ROM): boot.ipxe -> /ipxe -> kernel + initrd', async (t) => {
  await bootVm(t, 'bios');
});
test.serial('real iPXE, BIOS: a missing asset prints the reason on the console, sleeps, and the retry boots', async (t) => {
  await bootVm(t, 'bios', { initrdLate: true });
});
test.serial('real iPXE, UEFI (OVMF + ipxe.efi): initrd= on the kernel line reaches the EFI stub', async (t) => {
  await bootVm(t, 'efi');
});

/** What the stand-in OS printed for each datasource: `=== DATASOURCE NAME URL ===` body `=== DATASOURCE NAME END ===`. */
function datasources(console: string): Map<string, { url: string; body: string }> {
  const out = new Map<string, { url: string; body: string }>();
  const text = console.replace(/\r\n/g, '\n');
  for (const m of text.matchAll(/^=== DATASOURCE (\S+) (\S+) ===\n([\s\S]*?)\n=== DATASOURCE \1 (END|FAILED) ===$/gm)) {
    if (m[4] === 'END') out.set(m[1]!, { url: m[2]!, body: m[3]!.trim() });
  }
  return out;
}

test.serial(
  'real iPXE expands the settings operators write (bootcfg ${uuid}, RancherOS ${net0/mac}, NoCloud ;, matchbox ${mac:hexhyp}&) and the OS fetches each cloud-config',
  async (t) => {
    const uuid = '5a1e0010-7f3a-4c2b-9d1e-0123456789ab';
    const hexhyp = MAC.replace(/:/g, '-');
    const base = createDefaultDb().profiles[0]!;
    const { line, console, events } = await bootVm(t, 'bios', {
      uuid,
      standIn: true,
      db: {
        defaultProfile: 'forms',
        profiles: [
          {
            ...base,
            id: 'forms',
            cmdline: {
              console: 'ttyS0',
              panic: '-1',
              'cloud-config-url': 'http://10.0.2.100/cloud?uuid=${uuid}',
              'coreos.autologin': '',
              'rancher.cloud_init.datasources': '[url:http://10.0.2.100/cloud-config?mac=${net0/mac}]',
              ds: 'nocloud-net;s=http://10.0.2.100/nocloud/${mac:hexhyp}/',
              'coreos.config.url': 'http://10.0.2.100/ignition?uuid=${uuid}&mac=${mac:hexhyp}',
            },
          },
        ],
        // A declared machine, so every document is this machine's (its hostname and key), not a default.
        machines: [{ mac: MAC, uuid, hostname: 'forms-node', vars: { ssh_authorized_keys: ['ssh-ed25519 AAAA forms@lab'] } }],
      },
    });
    const args = (line ?? '').split(' ');
    t.true(args.includes(`cloud-config-url=http://10.0.2.100/cloud?uuid=${uuid}`), line);
    t.true(args.includes('coreos.autologin'), line);
    t.true(args.includes(`rancher.cloud_init.datasources=[url:http://10.0.2.100/cloud-config?mac=${MAC}]`), line);
    t.true(args.includes(`ds=nocloud-net;s=http://10.0.2.100/nocloud/${hexhyp}/`), line);
    t.true(args.includes(`coreos.config.url=http://10.0.2.100/ignition?uuid=${uuid}&mac=${hexhyp}`), line);

    // The OS fetched each datasource over HTTP and got this machine's documents.
    const fetched = datasources(console);
    const rancher = new RegExp(`${MARKERS.cloudConfigBegin}\r?\n([\\s\\S]*?)\r?\n${MARKERS.cloudConfigEnd}`).exec(console)?.[1]?.trim();
    const bodies: Record<string, string | undefined> = {
      'rancher.cloud_init.datasources': rancher,
      'cloud-config-url': fetched.get('cloud-config-url')?.body,
      'nocloud user-data': fetched.get('nocloud-user-data')?.body,
    };
    for (const [form, body] of Object.entries(bodies)) {
      t.truthy(body, `${form}: nothing fetched; console tail:\n${console.slice(-3000)}`);
      t.true(body!.startsWith('#cloud-config'), form);
      t.regex(body!, /hostname: "forms-node"/, form);
      t.regex(body!, /ssh-ed25519 AAAA forms@lab/, form);
      t.regex(body!, /profile forms/, form);
    }
    t.is(fetched.get('cloud-config-url')?.url, `http://10.0.2.100/cloud?uuid=${uuid}`);
    t.is(fetched.get('nocloud-meta-data')?.url, `http://10.0.2.100/nocloud/${hexhyp}/meta-data`);
    t.regex(fetched.get('nocloud-meta-data')?.body ?? '', /^instance-id: iid-netboot-525400123456\nlocal-hostname: forms-node$/);
    // ... and the appliance's timeline says it served them, to this machine.
    const served = events
      .list({ mac: MAC })
      .filter((e) => e.type === 'http-cloud-config')
      .map((e) => `${String(e.detail?.path)} ${String(e.detail?.profile ?? e.detail?.kind)}`);
    t.deepEqual(served.sort(), ['/cloud forms', '/cloud-config forms', `/nocloud/${hexhyp}/meta-data meta-data`, `/nocloud/${hexhyp}/user-data forms`]);
  },
);
