import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ApplianceError } from '../errors.js';
import { APPLIANCE_HOME } from '../config.js';

/**
 * Serial-console markers printed by the test OS's `/init`. Tests and the bench wait for them;
 * they are plain lines so they survive interleaving with kernel messages.
 */
export const MARKERS = {
  /** `/init` started (kernel and initrd were loaded). */
  initStarted: '=== NETBOOT-TEST-OS INIT ===',
  /** udhcpc obtained an address; followed by the address. */
  dhcpBound: '=== DHCP BOUND',
  /** Printed before the cloud-config body. */
  cloudConfigBegin: '=== CLOUD-CONFIG BEGIN ===',
  /** Printed after the cloud-config body. */
  cloudConfigEnd: '=== CLOUD-CONFIG END ===',
  /** The cloud-config was fetched; the boot-time measurement stops here. */
  cloudConfigFetched: '=== CLOUD-CONFIG FETCHED ===',
  /** No datasource on the command line, or the fetch failed. */
  cloudConfigFailed: '=== CLOUD-CONFIG FAILED',
  /**
   * Other datasources a profile names (`cloud-config-url=`, NoCloud's `ds=nocloud-net;s=SEED`):
   * `=== DATASOURCE NAME URL ===`, the body, then `=== DATASOURCE NAME END ===` (or `FAILED`).
   */
  datasource: '=== DATASOURCE',
  /** The facts report was accepted (2xx) by the server. */
  factsPosted: '=== FACTS POSTED ===',
  /** The facts report was refused or the server was unreachable. */
  factsFailed: '=== FACTS POST FAILED ===',
  /** `netboot.callback=URL` was on the command line and the POST to it succeeded. */
  callbackPosted: '=== CALLBACK POSTED ===',
  /** `/init` is about to power off. */
  done: '=== NETBOOT-TEST-OS DONE ===',
} as const;

/** Kernel modules the test OS loads, in dependency order (docs/NETBOOT-FACTS.md section 5). */
export const VIRTIO_NET_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
] as const;

/** The Debian kernel used as the test OS kernel. */
export interface TestKernel {
  /** Path of `/boot/vmlinuz-VERSION`. */
  path: string;
  /** VERSION, also the `/lib/modules` directory name. */
  version: string;
}

/**
 * Find the test OS kernel: the newest `/boot/vmlinuz-*` that has a matching `/lib/modules`
 * directory (the running kernel is irrelevant; the VM boots this one).
 */
export function findTestKernel(bootDir = '/boot', modulesRoot = '/lib/modules'): TestKernel {
  let names: string[] = [];
  try {
    names = readdirSync(bootDir).filter((n) => n.startsWith('vmlinuz-'));
  } catch {
    // Reported below.
  }
  const candidates = names
    .map((n) => ({ path: join(bootDir, n), version: n.slice('vmlinuz-'.length) }))
    .filter((k) => existsSync(join(modulesRoot, k.version)))
    .sort((a, b) => b.version.localeCompare(a.version, 'en', { numeric: true }));
  const found = candidates[0];
  if (!found) {
    throw new ApplianceError('ERR_LAB_PREREQ', `no ${bootDir}/vmlinuz-* with modules in ${modulesRoot}; install linux-image-cloud-amd64`, {
      bootDir,
      modulesRoot,
    });
  }
  return found;
}

/** One entry of a newc cpio archive. */
export interface CpioEntry {
  name: string;
  /** Full st_mode including the file type bits. */
  mode: number;
  data?: Buffer;
  /** Device numbers for character devices. */
  rdevMajor?: number;
  rdevMinor?: number;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/**
 * Encode entries as a cpio "newc" archive (the format the kernel's initramfs unpacker reads,
 * Documentation/driver-api/early-userspace/buffer-format.rst). Pure Node so that device nodes
 * such as /dev/console can be included without mknod.
 */
export function encodeCpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const hex = (v: number) => v.toString(16).padStart(8, '0');
  let ino = 1;
  const all: CpioEntry[] = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  for (const e of all) {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`, 'utf8');
    const isTrailer = e.name === 'TRAILER!!!';
    const header =
      '070701' +
      hex(isTrailer ? 0 : ino++) +
      hex(e.mode) +
      hex(0) + // uid
      hex(0) + // gid
      hex((e.mode & 0o170000) === S_IFDIR ? 2 : 1) +
      hex(0) + // mtime: fixed so that the archive is reproducible and cacheable
      hex(data.length) +
      hex(0) +
      hex(0) +
      hex(e.rdevMajor ?? 0) +
      hex(e.rdevMinor ?? 0) +
      hex(name.length) +
      hex(0);
    parts.push(Buffer.from(header, 'ascii'), name, Buffer.alloc(pad4(110 + name.length)));
    parts.push(data, Buffer.alloc(pad4(data.length)));
  }
  return Buffer.concat(parts);
}

/**
 * The `/init` of the test OS. It behaves like RancherOS where the appliance can see it: takes
 * its network config by DHCP, reads `rancher.cloud_init.datasources=[url:URL]` from the kernel
 * command line, fetches URL over HTTP, then reports facts back to the same server with
 * `POST /api/machines/MAC/facts` (JSON: mac, hostname, kernel, cpus, memoryKiB, ip, source;
 * `netboot.facts_url=` / `netboot.facts_token=` on the command line override the URL / add a
 * bearer token) and powers off. With `netboot.agent=1` on the command line the report is made by
 * the appliance's reference agent (agent/discover.sh, shipped in the initrd) instead. It also
 * fetches and prints the datasources other OSes read (`cloud-config-url=`, NoCloud's `s=` seed),
 * so a test sees that each form a profile is written in reaches the right document.
 */
export function renderInitScript(modules: readonly string[]): string {
  return `#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo '${MARKERS.initStarted}'
echo "kernel $(uname -r) cmdline: $(cat /proc/cmdline)"
for m in ${modules.join(' ')}; do
  insmod /lib/modules/$m.ko || echo "insmod $m failed"
done
# From here on kernel messages stay off the console: they would land inside the
# cloud-config block the tests compare byte for byte.
dmesg -n 1
ip link set lo up
# virtio_net probes asynchronously: wait (bounded) for eth0 to appear.
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up
mac=$(cat /sys/class/net/eth0/address)
hostname "netboot-test-$(echo $mac | tr -d :)"
udhcpc -i eth0 -q -n -t 10 -T 2 -s /etc/udhcpc.script || echo '=== DHCP FAILED ==='
# Up to the last ] of the word: an IPv6 URL (http://[fd99::1]:8080/...) has its own brackets.
url=$(sed -n 's/.*rancher\\.cloud_init\\.datasources=\\[url:\\([^ ]*\\)\\].*/\\1/p' /proc/cmdline)
if [ -z "$url" ]; then
  echo '${MARKERS.cloudConfigFailed}: no rancher.cloud_init.datasources=[url:...] on the command line ==='
elif timeout 30 wget -q -O /tmp/cloud-config "$url"; then
  echo '${MARKERS.cloudConfigBegin}'
  cat /tmp/cloud-config
  echo
  echo '${MARKERS.cloudConfigEnd}'
  echo '${MARKERS.cloudConfigFetched}'
else
  echo "${MARKERS.cloudConfigFailed}: $url ==="
fi
# The datasources other OSes read, fetched as they would: CoreOS/bootcfg's cloud-config-url=URL,
# and cloud-init NoCloud's ds=nocloud-net;s=SEED (SEEDmeta-data, then SEEDuser-data; a SEED
# without its trailing / gets one, as cloud-init does).
fetch_datasource() {
  echo "${MARKERS.datasource} $1 $2 ==="
  if timeout 30 wget -q -O /tmp/datasource "$2"; then
    cat /tmp/datasource
    echo
    echo "${MARKERS.datasource} $1 END ==="
  else
    echo "${MARKERS.datasource} $1 FAILED ==="
  fi
}
set -f
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    cloud-config-url=*) fetch_datasource cloud-config-url "\${arg#cloud-config-url=}" ;;
    ds=nocloud*)
      seed=$(echo "\${arg#ds=}" | tr ';' '\\n' | sed -n -e 's/^s=//p' -e 's/^seedfrom=//p' | head -n 1)
      case "$seed" in '') ;; */) ;; *) seed="$seed/" ;; esac
      if [ -n "$seed" ]; then
        fetch_datasource nocloud-meta-data "\${seed}meta-data"
        fetch_datasource nocloud-user-data "\${seed}user-data"
      fi
      ;;
  esac
done
set +f
if [ -n "$url" ] && grep -q 'netboot.agent=1' /proc/cmdline; then
  # The appliance's reference discovery agent (agent/discover.sh), as the RancherOS
  # microkernel container would run it, posting to the server the cloud-config came from.
  server=$(echo "$url" | sed -n 's#^http://\\([^/]*\\).*#\\1#p')
  echo "facts: agent POST http://$server/api/machines/$mac/facts"
  # netboot.facts_token=T (the appliance's {{ facts_token }}) makes the report verified.
  facts_token=$(sed -n 's/.*netboot\\.facts_token=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
  if APPLIANCE_URL="http://$server" MACHINE_MAC="$mac" FACTS_TOKEN="$facts_token" sh /usr/bin/netboot-discover; then
    echo '${MARKERS.factsPosted}'
  else
    echo '${MARKERS.factsFailed}'
  fi
elif [ -n "$url" ]; then
  server=$(echo "$url" | sed -n 's#^http://\\([^/]*\\).*#\\1#p')
  cpus=$(grep -c '^processor' /proc/cpuinfo)
  mem=$(sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo)
  addr=$(ip -4 -o addr show dev eth0 | sed -n 's#.* inet \\([0-9.]*\\)/.*#\\1#p' | head -n 1)
  body="{\\"mac\\":\\"$mac\\",\\"hostname\\":\\"$(hostname)\\",\\"kernel\\":\\"$(uname -r)\\",\\"cpus\\":$cpus,\\"memoryKiB\\":$mem,\\"ip\\":\\"$addr\\",\\"source\\":\\"netboot-test-os\\"}"
  # netboot.facts_url=URL overrides where the report goes; netboot.facts_token=T sends
  # "Authorization: Bearer T" (the boot server may put a per-machine token on the cmdline).
  facts_url=$(sed -n 's/.*netboot\\.facts_url=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
  token=$(sed -n 's/.*netboot\\.facts_token=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
  [ -n "$facts_url" ] || facts_url="http://$server/api/machines/$mac/facts"
  echo "facts: POST $facts_url $body"
  if [ -n "$token" ]; then
    timeout 30 wget -q -O /tmp/facts-reply --header 'Content-Type: application/json' --header "Authorization: Bearer $token" --post-data "$body" "$facts_url"
  else
    timeout 30 wget -q -O /tmp/facts-reply --header 'Content-Type: application/json' --post-data "$body" "$facts_url"
  fi
  if [ $? -eq 0 ]; then
    echo '${MARKERS.factsPosted}'
  else
    echo '${MARKERS.factsFailed}'
  fi
fi
# netboot.callback=URL (the appliance's {{ callback_url }}): report the provisioning done.
callback=$(sed -n 's/.*netboot\\.callback=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
if [ -n "$callback" ]; then
  if timeout 30 wget -q -O /tmp/callback-reply --post-data '' "$callback"; then
    echo '${MARKERS.callbackPosted}'
  else
    echo '=== CALLBACK FAILED ==='
  fi
fi
echo '${MARKERS.done}'
sync
poweroff -f
`;
}

/** udhcpc's event script: configure the leased address (busybox exports ip, subnet, router). */
export const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ifconfig "$interface" "$ip" netmask "\${subnet:-255.255.255.0}" up
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    echo "${MARKERS.dhcpBound} $ip from \${serverid:-?} ==="
    ;;
esac
exit 0
`;

/** Read a module file, decompressing `.ko.xz` / `.ko.zst` (busybox insmod loads plain ELF only). */
export function readModule(path: string): Buffer {
  if (path.endsWith('.ko')) return readFileSync(path);
  if (path.endsWith('.ko.xz')) return execFileSync('xz', ['-dc', path], { maxBuffer: 64 * 1024 * 1024 });
  if (path.endsWith('.ko.zst')) return execFileSync('zstd', ['-dc', path], { maxBuffer: 64 * 1024 * 1024 });
  if (path.endsWith('.ko.gz')) return execFileSync('gzip', ['-dc', path], { maxBuffer: 64 * 1024 * 1024 });
  throw new ApplianceError('ERR_LAB_PREREQ', `unsupported module compression: ${path}`);
}

/** Locate `NAME.ko[.xz|.zst|.gz]` via modules.dep (module names use `_`; files may use `-`). */
export function findModule(modulesDir: string, name: string): string {
  const depPath = join(modulesDir, 'modules.dep');
  let dep: string;
  try {
    dep = readFileSync(depPath, 'utf8');
  } catch {
    throw new ApplianceError('ERR_LAB_PREREQ', `${depPath} is missing; install the kernel's modules`);
  }
  const want = name.replace(/-/g, '_');
  for (const line of dep.split('\n')) {
    const file = line.slice(0, line.indexOf(':'));
    const base = file.slice(file.lastIndexOf('/') + 1).replace(/\.ko(\.(xz|zst|gz))?$/, '');
    if (base.replace(/-/g, '_') === want) return join(modulesDir, file);
  }
  throw new ApplianceError('ERR_LAB_PREREQ', `kernel module ${name} not found in ${modulesDir}`, { module: name });
}

/** Options for {@link buildTestInitrd}. */
export interface BuildInitrdOptions {
  kernel?: TestKernel;
  busyboxPath?: string;
  modulesRoot?: string;
  /** Cache directory (default: `$TMPDIR/netboot-lab-cache`). */
  cacheDir?: string;
}

/** A built (or cached) test OS initrd. */
export interface TestInitrd {
  /** Path of the gzip-compressed newc cpio. */
  path: string;
  kernel: TestKernel;
  /** True when it was taken from the cache. */
  cached: boolean;
}

/**
 * Build the test OS initrd (gzip newc cpio: static busybox, the virtio-net modules of the
 * kernel, `/init`, the udhcpc script, `/dev/console`). Cached by a hash of everything that
 * goes into it, so the first call costs a second and later calls nothing.
 */
export function buildTestInitrd(options: BuildInitrdOptions = {}): TestInitrd {
  const kernel = options.kernel ?? findTestKernel('/boot', options.modulesRoot ?? '/lib/modules');
  const busyboxPath = options.busyboxPath ?? '/bin/busybox';
  const modulesDir = join(options.modulesRoot ?? '/lib/modules', kernel.version);
  if (!existsSync(busyboxPath)) {
    throw new ApplianceError('ERR_LAB_PREREQ', `${busyboxPath} is missing; install busybox-static`);
  }
  const busybox = readFileSync(busyboxPath);
  if (busybox.subarray(0, 4).toString('latin1') !== '\x7fELF') {
    throw new ApplianceError('ERR_LAB_PREREQ', `${busyboxPath} is not an ELF binary; install busybox-static`);
  }
  const modulePaths = VIRTIO_NET_MODULES.map((m) => findModule(modulesDir, m));
  const init = renderInitScript(VIRTIO_NET_MODULES);
  // The reference discovery agent, run by /init when the cmdline says netboot.agent=1.
  const agent = readFileSync(join(APPLIANCE_HOME, 'agent', 'discover.sh'));
  const hash = createHash('sha256');
  hash.update(init).update(UDHCPC_SCRIPT).update(busybox).update(agent);
  for (const p of modulePaths) {
    const st = statSync(p);
    hash.update(`${p}:${st.size}:${st.mtimeMs}`);
  }
  const cacheDir = options.cacheDir ?? join(tmpdir(), 'netboot-lab-cache');
  mkdirSync(cacheDir, { recursive: true });
  const path = join(cacheDir, `initrd-${kernel.version}-${hash.digest('hex').slice(0, 16)}.img`);
  if (existsSync(path)) return { path, kernel, cached: true };

  const dir = (name: string): CpioEntry => ({ name, mode: S_IFDIR | 0o755 });
  const entries: CpioEntry[] = [
    ...['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'run', 'etc', 'lib', 'lib/modules'].map(dir),
    // The kernel opens /dev/console before running /init (init/main.c console_on_rootfs);
    // without it /init has no stdout and the serial log stays silent.
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: busybox },
    { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
    { name: 'init', mode: S_IFREG | 0o755, data: Buffer.from(init) },
    { name: 'etc/udhcpc.script', mode: S_IFREG | 0o755, data: Buffer.from(UDHCPC_SCRIPT) },
    { name: 'usr/bin/netboot-discover', mode: S_IFREG | 0o755, data: agent },
    ...VIRTIO_NET_MODULES.map((m, i): CpioEntry => ({
      name: `lib/modules/${m}.ko`,
      mode: S_IFREG | 0o644,
      data: readModule(modulePaths[i] as string),
    })),
  ];
  const image = gzipSync(encodeCpioNewc(entries), { level: 6 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, image);
  renameSync(tmp, path);
  return { path, kernel, cached: false };
}
