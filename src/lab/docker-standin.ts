/**
 * A container-engine stand-in for RancherOS in the VM lab: a Debian root filesystem with
 * Debian's `docker.io` (mmdebstrap, no daemon or registry needed to build it) on a virtio disk
 * image, and a small busybox initrd that the appliance netboots with the Debian kernel. The
 * initrd loads the virtio modules, mounts the disk and hands over to `/sbin/netboot-standin`,
 * which does what RancherOS does with the appliance's cloud-config: DHCP, fetch the cloud-config
 * named by `rancher.cloud_init.datasources=[url:...]`, write its `/etc/rc.local`, start
 * dockerd and run rc.local (wait-for-docker, download the image from the appliance, sha256,
 * `docker load`, `docker run --privileged --net=host` with /proc, /sys, /dev at /host-*).
 *
 * dockerd runs with `--bridge=none --iptables=false --storage-driver=vfs`: the microkernel uses
 * the host network, and vfs needs no kernel module beyond what the Debian kernel has built in.
 * The disk is opened `snapshot=on`, so the cached image is never written.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ApplianceError } from '../errors.js';
import { DEFAULT_IMAGE_CACHE, DEFAULT_MICROKERNEL_MIRROR } from '../image/microkernel.js';
import { encodeCpioNewc, findModule, findTestKernel, readModule, UDHCPC_SCRIPT, VIRTIO_NET_MODULES, type CpioEntry, type TestKernel } from './initrd.js';
import { runCommand } from './process.js';

/** Debian packages of the stand-in's root filesystem. */
export const STANDIN_PACKAGES = ['busybox', 'docker.io', 'iproute2', 'jq', 'kmod', 'wget'] as const;

/** Serial markers of the stand-in. */
export const STANDIN_MARKERS = {
  init: '=== DOCKER-STANDIN INIT ===',
  dockerUp: '=== DOCKERD UP ===',
  rcLocalDone: '=== RC.LOCAL DONE',
  containerExited: '=== CONTAINER EXITED',
  failed: '=== DOCKER-STANDIN FAILED',
  done: '=== DOCKER-STANDIN DONE ===',
} as const;

/** Modules the initrd loads before mounting the disk (virtio-net too: they stay loaded). */
const BLOCK_MODULES = ['virtio_blk'] as const;

/** `/sbin/netboot-standin`: RancherOS's part, in the Debian root filesystem. */
export function renderStandinInit(): string {
  const m = STANDIN_MARKERS;
  return `#!/bin/sh
# netboot-appliance lab: RancherOS stand-in (Debian + docker.io). Runs as PID 1.
# Debian's essential set has no mount, ifconfig or poweroff: busybox's applets fill in, last
# in PATH so Debian's own tools (coreutils, GNU wget) win where both exist.
/bin/busybox mkdir -p /usr/local/busybox
/bin/busybox --install -s /usr/local/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/busybox
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo '${m.init}'
fail() { echo "${m.failed}: $* ==="; sync; poweroff -f; }
ip link set lo up
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up
busybox udhcpc -i eth0 -q -n -t 10 -T 2 -s /etc/udhcpc.script || fail "no DHCP answer"
url=$(sed -n 's/.*rancher\\.cloud_init\\.datasources=\\[url:\\([^] ]*\\)\\].*/\\1/p' /proc/cmdline)
[ -n "$url" ] || fail "no rancher.cloud_init.datasources on the command line"
wget -q -T 30 -O /tmp/cloud-config "$url" || fail "cannot fetch $url"
# The cloud-config's write_files entry for /etc/rc.local (the appliance quotes content JSON-style).
awk '/^  - path: \\/etc\\/rc.local$/ { f = 1; next } f && /^    content: / { sub(/^    content: /, ""); print; exit } /^  - path: / { f = 0 }' /tmp/cloud-config | jq -r . >/etc/rc.local
[ -s /etc/rc.local ] || fail "the cloud-config has no /etc/rc.local"
chmod 0755 /etc/rc.local
printf '#!/bin/sh\\ni=0\\nuntil docker info >/dev/null 2>&1; do i=$((i+1)); [ $i -ge 120 ] && exit 1; sleep 1; done\\n' >/usr/local/bin/wait-for-docker
chmod 0755 /usr/local/bin/wait-for-docker
dockerd --bridge=none --iptables=false --ip-masq=false --storage-driver=vfs >/var/log/dockerd.log 2>&1 &
wait-for-docker || { tail -n 20 /var/log/dockerd.log; fail "dockerd did not start"; }
echo '${m.dockerUp}'
start=$(date +%s)
NETBOOT_KMSG=/dev/console sh /etc/rc.local
echo "${m.rcLocalDone} rc=$? in $(( $(date +%s) - start )) s ==="
cat /var/log/netboot-microkernel.log 2>/dev/null
code=$(timeout 240 docker wait discovery 2>/dev/null)
echo "${m.containerExited} $code after $(( $(date +%s) - start )) s ==="
docker logs discovery 2>&1 | tail -n 20
docker inspect --format '{{.HostConfig.Privileged}} {{.HostConfig.NetworkMode}} {{range .Mounts}}{{.Source}}:{{.Destination}}:{{.RW}} {{end}}' discovery
echo '${m.done}'
sync
poweroff -f
`;
}

/** The initrd's `/init`: load virtio modules, mount the disk, switch to the stand-in. */
function renderBootInit(modules: readonly string[]): string {
  return `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev
for m in ${modules.join(' ')}; do /bin/busybox insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
i=0; while [ ! -e /dev/vda ] && [ $i -lt 100 ]; do /bin/busybox sleep 0.1; i=$((i+1)); done
/bin/busybox mount -t ext4 -o rw /dev/vda /newroot || { echo '${STANDIN_MARKERS.failed}: cannot mount /dev/vda ==='; /bin/busybox poweroff -f; }
/bin/busybox umount /proc
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /sbin/netboot-standin
`;
}

/** What {@link buildDockerStandin} made. */
export interface DockerStandin {
  kernel: TestKernel;
  /** gzip newc initrd (busybox, virtio modules, /init). */
  initrd: string;
  /** Raw ext4 image of the root filesystem (open it snapshot=on). */
  disk: string;
  /** Seconds each step took (0 when cached). */
  seconds: { rootfs: number; disk: number };
}

/**
 * Build (or take from the cache) the stand-in: the root filesystem tarball (mmdebstrap), the
 * ext4 disk image made from it (`mke2fs -d`, no loop mount) and the initrd. Needs root (mmdebstrap
 * as root keeps ownership) and network access to the Debian mirror the first time.
 */
export async function buildDockerStandin(options: { cacheDir?: string; mirror?: string } = {}): Promise<DockerStandin> {
  const cacheDir = join(options.cacheDir ?? DEFAULT_IMAGE_CACHE, 'docker-standin');
  mkdirSync(cacheDir, { recursive: true });
  const mirror = options.mirror ?? DEFAULT_MICROKERNEL_MIRROR;
  const kernel = findTestKernel();
  const modulesDir = join('/lib/modules', kernel.version);
  const init = renderStandinInit();
  const key = createHash('sha256')
    .update(JSON.stringify({ packages: STANDIN_PACKAGES, mirror }))
    .digest('hex')
    .slice(0, 16);
  const rootfs = join(cacheDir, `rootfs-${key}.tar`);
  const seconds = { rootfs: 0, disk: 0 };
  if (!existsSync(rootfs)) {
    const t0 = Date.now();
    const tmp = `${rootfs}.${process.pid}.tmp`;
    await runCommand(
      'mmdebstrap',
      [
        '--variant=essential',
        '--format=tar',
        `--include=${STANDIN_PACKAGES.join(',')}`,
        '--dpkgopt=path-exclude=/usr/share/doc/*',
        '--dpkgopt=path-exclude=/usr/share/man/*',
        '--dpkgopt=path-exclude=/usr/share/locale/*',
        'bookworm',
        tmp,
        mirror,
      ],
      { timeoutMs: 15 * 60_000 },
    ).catch((err: unknown) => {
      rmSync(tmp, { force: true });
      throw new ApplianceError('ERR_LAB_PREREQ', `cannot build the docker stand-in root filesystem: ${(err as Error).message}`, {}, { cause: err });
    });
    renameSync(tmp, rootfs);
    seconds.rootfs = (Date.now() - t0) / 1000;
  }
  const diskKey = createHash('sha256').update(key).update(init).update(UDHCPC_SCRIPT).digest('hex').slice(0, 16);
  const disk = join(cacheDir, `disk-${diskKey}.img`);
  if (!existsSync(disk)) {
    const t0 = Date.now();
    const dir = join(cacheDir, `root-${process.pid}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    try {
      await runCommand('tar', ['-x', '--numeric-owner', '-p', '-f', rootfs, '-C', dir], { timeoutMs: 5 * 60_000 });
      writeFileSync(join(dir, 'sbin', 'netboot-standin'), init, { mode: 0o755 });
      writeFileSync(join(dir, 'etc', 'udhcpc.script'), UDHCPC_SCRIPT, { mode: 0o755 });
      const tmp = `${disk}.${process.pid}.tmp`;
      // 3 GiB, sparse: the root filesystem, the image tarball and its vfs copy.
      await runCommand('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', dir, '-L', 'standin', tmp, '3G'], { timeoutMs: 5 * 60_000 });
      renameSync(tmp, disk);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    seconds.disk = (Date.now() - t0) / 1000;
  }
  const modules = [...VIRTIO_NET_MODULES, ...BLOCK_MODULES];
  const busybox = readFileSync('/bin/busybox');
  const dirs = ['bin', 'dev', 'proc', 'sys', 'newroot', 'lib', 'lib/modules'].map((name): CpioEntry => ({ name, mode: 0o040755 }));
  const entries: CpioEntry[] = [
    ...dirs,
    { name: 'dev/console', mode: 0o020600, rdevMajor: 5, rdevMinor: 1 },
    { name: 'bin/busybox', mode: 0o100755, data: busybox },
    { name: 'init', mode: 0o100755, data: Buffer.from(renderBootInit(modules)) },
    ...modules.map((m): CpioEntry => ({ name: `lib/modules/${m}.ko`, mode: 0o100644, data: readModule(findModule(modulesDir, m)) })),
  ];
  const initrd = join(cacheDir, `initrd-${kernel.version}.img`);
  writeFileSync(initrd, gzipSync(encodeCpioNewc(entries), { level: 6 }));
  return { kernel, initrd, disk, seconds };
}
