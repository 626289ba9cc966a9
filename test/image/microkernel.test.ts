/**
 * The discovery image, built for real (mmdebstrap from the Debian mirror; the root filesystem
 * cached in /var/cache/netboot-appliance keyed by its inputs and the mirror's InRelease) and
 * checked with tools nobody here wrote: sha256sum, skopeo (docker-archive transport), GNU tar.
 * podman cannot start containers on these hosts (crun's setrlimit is refused, NETBOOT-FACTS
 * §9), so the image is then run the way `docker run --privileged --net=host -v /proc:/host-proc
 * ...` runs it: its layers unpacked in order, /proc, /sys, /dev and the host mounts bound in a
 * private mount namespace, its config's Entrypoint and Env executed in a chroot. Its facts
 * must reach a real appliance HTTP server.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, release, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MICROKERNEL_ASSET, MICROKERNEL_REF, type MicrokernelBuild } from '../../src/image/microkernel.js';
import { startApplianceHttp } from '../helpers/appliance-http.js';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/appliance', import.meta.url));
const MAC = '52:54:00:14:14:01';
const BUILD_TIMEOUT_MS = 15 * 60_000;

let work = '';
let cached: MicrokernelBuild | undefined;
let scratch: MicrokernelBuild | undefined;

async function build(assets: string, extra: string[]): Promise<MicrokernelBuild> {
  await mkdir(assets, { recursive: true });
  const { stdout } = await run(process.execPath, [BIN, 'build', 'microkernel', '--assets', assets, '--log-level', 'warn', ...extra], {
    timeout: BUILD_TIMEOUT_MS,
    maxBuffer: 1 << 20,
  });
  return JSON.parse(stdout) as MicrokernelBuild;
}

test.before(async () => {
  // Missing tools fail the tests loudly (scripts/install installs them).
  for (const tool of ['mmdebstrap', 'skopeo', 'unshare', 'chroot'])
    await run('sh', ['-c', `command -v ${tool}`]).catch(() => {
      throw new Error(`${tool} is not installed; run scripts/install`);
    });
  work = await mkdtemp(path.join(tmpdir(), 'netboot-image-'));
});

test.after.always(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

test.serial('build microkernel twice, cached and from scratch: the same bytes, sha256 published beside the tarball', async (t) => {
  t.timeout(BUILD_TIMEOUT_MS * 2);
  cached = await build(path.join(work, 'a'), []);
  scratch = await build(path.join(work, 'b'), ['--no-cache']);
  t.false(scratch.cached);
  t.log(`image ${cached.size} bytes, sha256 ${cached.sha256} (cached root filesystem: ${cached.cached})`);
  // Reproducible: an independent mmdebstrap run (or the cached one) gives the same archive.
  t.is(scratch.sha256, cached.sha256);
  t.deepEqual(scratch.diffIds, cached.diffIds);
  const file = path.join(work, 'a', MICROKERNEL_ASSET);
  t.is(cached.file, file);
  // sha256sum -c checks the published sum against the file.
  const { stdout } = await run('sha256sum', ['-c', `${path.basename(file)}.sha256`], { cwd: path.dirname(file) });
  t.regex(stdout, /discovery\.tar: OK/);
  const meta = JSON.parse(await readFile(path.join(path.dirname(file), 'discovery.json'), 'utf8')) as MicrokernelBuild;
  t.is(meta.sha256, cached.sha256);
  t.true(meta.inputs.packages.includes('lldpd'));
});

test.serial('skopeo reads the tarball as a docker archive: tag, layers, entrypoint, architecture', async (t) => {
  if (!cached) return t.fail('the build failed');
  const archive = `docker-archive:${cached.file}:${MICROKERNEL_REF}`;
  const inspect = JSON.parse((await run('skopeo', ['inspect', archive])).stdout) as {
    Name: string;
    Architecture: string;
    Os: string;
    Layers: string[];
    Env: string[];
  };
  t.is(inspect.Name, `docker.io/${MICROKERNEL_REF.split(':')[0]}`);
  t.is(inspect.Architecture, 'amd64');
  t.is(inspect.Os, 'linux');
  t.deepEqual(inspect.Layers, cached.diffIds);
  t.true(inspect.Env.some((e) => e.startsWith('PATH=')));
  const config = JSON.parse((await run('skopeo', ['inspect', '--config', archive])).stdout) as {
    config: { Entrypoint: string[] };
    rootfs: { diff_ids: string[] };
  };
  t.deepEqual(config.config.Entrypoint, ['/bin/sh', '/usr/local/bin/discover.sh']);
  t.deepEqual(config.rootfs.diff_ids, cached.diffIds);
  // A tag the archive does not hold is not found: skopeo really read the manifest.
  await t.throwsAsync(run('skopeo', ['inspect', `docker-archive:${cached.file}:netboot/other:1`]));
  // skopeo copy recomputes every blob digest while converting to an OCI layout.
  await run('skopeo', ['copy', '--quiet', archive, `oci:${path.join(work, 'oci')}:1`], { timeout: 120_000 });
  t.true(existsSync(path.join(work, 'oci', 'index.json')));
});

/** Unpack the image's layers in manifest order into `root` (what a runtime's graph driver does). */
async function unpack(file: string, root: string): Promise<string[]> {
  const manifest = JSON.parse((await run('tar', ['-xOf', file, 'manifest.json'])).stdout) as Array<{ Layers: string[] }>;
  const layers = manifest[0]!.Layers;
  await run('mkdir', ['-p', root]);
  for (const layer of layers) await run('sh', ['-c', 'tar -xOf "$1" "$2" | tar -xf - -C "$3"', 'sh', file, layer, root], { timeout: 120_000 });
  return layers;
}

test.serial('the image runs like docker run --privileged --net=host with the host mounts, and its facts reach the appliance', async (t) => {
  if (!cached) return t.fail('the build failed');
  t.timeout(300_000);
  const root = path.join(work, 'root');
  t.is((await unpack(cached.file, root)).length, 2);
  // The tools the issue names are in the image and start.
  const tools = 'dmidecode lshw lldpd lldpctl ipmitool lspci ethtool lsblk ip curl';
  const { stdout: found } = await run(
    'chroot',
    [root, '/bin/sh', '-c', `for t in ${tools}; do command -v $t || exit 1; done; lspci -V >/dev/null 2>&1 || lspci --version`],
    { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } },
  );
  t.is(found.trim().split('\n').length >= tools.split(' ').length, true, found);

  const { store, state, port } = await startApplianceHttp(t, { assetsDir: work });

  const config = JSON.parse((await run('skopeo', ['inspect', '--config', `docker-archive:${cached.file}`])).stdout) as {
    config: { Entrypoint: string[]; Env: string[] };
  };
  // --privileged --net=host: host network (no netns), all devices, sysfs; -v X:/host-X:ro.
  const mounts = [
    'mount -t proc proc "$R/proc"',
    'mount --rbind /sys "$R/sys"',
    'mount --rbind /dev "$R/dev"',
    'for d in proc sys dev; do mount --rbind /$d "$R/host-$d" && mount -o remount,bind,ro "$R/host-$d"; done',
  ].join(' && ');
  const env = [...config.config.Env, `APPLIANCE_URL=http://127.0.0.1:${port}`, `MACHINE_MAC=${MAC}`, 'DISCOVER_ATTEMPTS=2', 'DISCOVER_RETRY_SECONDS=1'];
  const { stderr } = await run(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      `${mounts} && exec env -i "$@" chroot "$R" ${config.config.Entrypoint.map((a) => `'${a}'`).join(' ')}`,
      'sh',
      ...env,
    ],
    {
      env: { ...process.env, R: root },
      timeout: 120_000,
    },
  );
  t.regex(stderr, new RegExp(`facts for ${MAC} posted`));
  // Facts go to the runtime state store, never into the operator's records.
  t.is(await store.getMachine(MAC), undefined);
  const facts = (await state.getFacts(MAC)) as unknown as {
    agent: { tools: string };
    kernel: { release: string };
    cpu: { count: number };
    dmi: { vendor: string | null };
    nics: Array<{ name: string }>;
    memory: { totalKiB: number };
  };
  t.is(state.get(MAC)?.discovered, true);
  t.is(facts.agent.tools, 'auto');
  t.is(facts.kernel.release, release());
  t.is(facts.cpu.count, cpus().length);
  t.true(facts.memory.totalKiB > 0);
  t.true(facts.nics.length > 0);
  // dmidecode inside the image read the host's SMBIOS tables (as the host's sysfs reports them).
  const vendorFile = '/sys/class/dmi/id/sys_vendor';
  if (existsSync(vendorFile)) t.is(facts.dmi.vendor, (await readFile(vendorFile, 'utf8')).trim());
  else t.log(`this host has no SMBIOS (${vendorFile} is absent): dmi facts are null, as the agent reports them`);
});
