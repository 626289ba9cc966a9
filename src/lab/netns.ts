import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplianceError } from '../errors.js';
import { createSilentLogger, type Logger } from '../log.js';
import {
  registerExitCleanup,
  runCommand,
  runCommandSyncQuiet,
  spawnManaged,
  type CommandResult,
  type ManagedProcess,
  type SpawnManagedOptions,
} from './process.js';

/** Options for {@link createLab}. */
export interface LabOptions {
  log?: Logger;
  /**
   * Third octet X of the lab subnet 10.99.X.0/24 (random 100..249 when omitted). The subnet
   * exists only inside the lab's namespaces, so it never meets the host's routes.
   */
  subnetOctet?: number;
  /** Start the plain upstream DHCP server (dnsmasq, no boot options). Default true. */
  upstreamDhcp?: boolean;
  /**
   * Also make the upstream server an IPv6 router (dnsmasq `--enable-ra`, prefix fd99:X::/64,
   * no DHCPv6). Default false. iPXE autoconfigures IPv6 alongside DHCPv4 and, on a network
   * without a router, waits ~16 s for a Router Advertisement before it boots: measured here,
   * BIOS VM start to cloud-config 25 s without, 9 s with. Default off matches docs/NETBOOT-FACTS.md.
   */
  ipv6Router?: boolean;
  /**
   * Make the upstream server name the boot server under test as next-server (siaddr of its
   * OFFER/ACK, dnsmasq `--dhcp-option=option:server-ip-address,ADDRESS`), still without a boot
   * file: what an operator adds to an existing DHCP server so that Debian 12's grub, which takes
   * its TFTP server from the DHCP ACK and not from the ProxyDHCP offer, finds the appliance.
   * Default false (the upstream ACK's siaddr is then whatever dnsmasq puts there).
   */
  upstreamNextServer?: boolean;
  /**
   * IPv6 on the lab (issue 16, PXEv6): `br0` also gets fd99:X::1/64 (`serverAddress6`) for the
   * boot server. With `upstreamDhcp`, dnsmasq then also serves stateful DHCPv6 (fd99:X::100-1ff,
   * RA with the M flag, no boot options), the "existing DHCPv6 server" of proxy mode. Default false.
   */
  ipv6?: boolean;
  /** Keep the work directory (logs, leases) after `destroy()`. Default false. */
  keepWorkDir?: boolean;
}

/** A running lab: namespaces, bridge, taps and the processes started in them. */
export interface Lab {
  /** Random suffix shared by every name of this lab. */
  readonly id: string;
  /** Namespace holding `br0`, the taps, and the boot server under test. */
  readonly netns: string;
  /** Namespace holding the plain DHCP server. */
  readonly upstreamNetns: string;
  /** Bridge inside `netns`, carrying `serverAddress`. */
  readonly bridge: string;
  /** Address of the boot server under test on `bridge`, e.g. 10.99.123.1. */
  readonly serverAddress: string;
  /** IPv6 address of the boot server on `bridge` (fd99:X::1) when the lab has IPv6 (`ipv6`). */
  readonly serverAddress6: string | undefined;
  /** Addresses the plain DHCPv6 server leases, when it runs. */
  readonly dhcp6Range: { start: string; end: string } | undefined;
  /** Address of the plain DHCP server, e.g. 10.99.123.2. */
  readonly upstreamAddress: string;
  /** Network address, e.g. 10.99.123.0. */
  readonly network: string;
  /** Always 24. */
  readonly prefixLength: number;
  /** Addresses the plain DHCP server leases. */
  readonly dhcpRange: { start: string; end: string };
  /** Temporary directory for this lab's logs, leases and per-VM files. */
  readonly workDir: string;
  /** dnsmasq `--log-dhcp` output of the plain DHCP server (empty file when disabled). */
  readonly upstreamLogPath: string;
  /** Create a tap (`tap0`, `tap1`, ...) inside `netns`, enslaved to `bridge` and up. */
  addTap(): Promise<string>;
  /**
   * Move an interface into `netns` and enslave it to `bridge`, so that a machine behind it
   * joins the lab network (a bare-metal test machine's NIC). By default the interface is
   * taken from the caller's namespace; `fromNetns` names another one. The interface loses its
   * addresses; a physical NIC returns to the root namespace when the lab is destroyed, a veth
   * is deleted with it.
   */
  attachInterface(ifname: string, options?: { fromNetns?: string }): Promise<void>;
  /** Start a long-running program inside `netns`; stopped by `destroy()`. */
  spawn(cmd: string, args: readonly string[], options?: SpawnManagedOptions): ManagedProcess;
  /** Run a short command inside `netns`. */
  exec(cmd: string, args: readonly string[]): Promise<CommandResult>;
  /**
   * Stop every process, delete both namespaces (taps, bridge and veth go with them) and the
   * work directory (unless kept). Idempotent.
   */
  destroy(options?: { keepWorkDir?: boolean }): Promise<void>;
}

const STATE_DIR = join(tmpdir(), 'netboot-lab-state');
const LAB_PREFIX = 'lab-';
const UPSTREAM_PREFIX = 'upstream-';

interface LabState {
  ownerPid: number;
  namespaces: string[];
  workDir: string;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kill every process inside `ns` (they are all ours) and delete it; errors ignored. */
function deleteNamespaceSync(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000 });
    for (const p of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  } catch {
    // Namespace already gone.
  }
  runCommandSyncQuiet('ip', ['netns', 'del', ns]);
}

async function deleteNamespace(ns: string): Promise<void> {
  let pids: string[] = [];
  try {
    pids = (await runCommand('ip', ['netns', 'pids', ns])).stdout.split(/\s+/).filter(Boolean);
  } catch {
    return; // Not there: nothing to delete.
  }
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  await runCommand('ip', ['netns', 'del', ns]).catch(() => undefined);
}

/**
 * Remove labs left behind by a process that died without tearing down (SIGKILL, crash): each
 * lab records its owner PID in a state file; labs whose owner is gone are deleted. Labs of live
 * processes (parallel test files) are left alone. Returns the namespaces removed.
 */
export async function reapStaleLabs(): Promise<string[]> {
  let files: string[] = [];
  try {
    files = readdirSync(STATE_DIR).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const f of files) {
    const path = join(STATE_DIR, f);
    let state: LabState;
    try {
      state = JSON.parse(readFileSync(path, 'utf8')) as LabState;
    } catch {
      continue; // Unreadable: not ours to judge (files are written by rename, so never partial).
    }
    if (isAlive(state.ownerPid)) continue;
    for (const ns of state.namespaces) {
      await deleteNamespace(ns);
      removed.push(ns);
    }
    rmSync(state.workDir, { recursive: true, force: true });
    rmSync(path, { force: true });
  }
  return removed;
}

function checkRoot(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new ApplianceError('ERR_LAB_PREREQ', 'the vm lab needs root (network namespaces, taps); run as root or with sudo');
  }
}

/**
 * Build the lab topology (docs/NETBOOT-FACTS.md section 5), entirely inside two fresh namespaces:
 * `lab-ID` with bridge `br0` = 10.99.X.1/24, and `upstream-ID` with a veth into `br0` =
 * 10.99.X.2/24 running dnsmasq as the plain DHCP server (addresses only, no boot options).
 * Nothing is created in the caller's namespace. On any failure the partial lab is removed.
 */
export async function createLab(options: LabOptions = {}): Promise<Lab> {
  checkRoot();
  const log = (options.log ?? createSilentLogger()).child({ subsystem: 'lab' });
  await reapStaleLabs();
  const id = randomBytes(3).toString('hex');
  const octet = options.subnetOctet ?? randomInt(100, 250);
  if (!Number.isInteger(octet) || octet < 0 || octet > 255) {
    throw new ApplianceError('ERR_LAB_CONFIG', `subnet octet ${octet} is not 0..255`);
  }
  const netns = `${LAB_PREFIX}${id}`;
  const upstreamNetns = `${UPSTREAM_PREFIX}${id}`;
  const base = `10.99.${octet}`;
  const serverAddress = `${base}.1`;
  const upstreamAddress = `${base}.2`;
  const dhcpRange = { start: `${base}.100`, end: `${base}.199` };
  const ipv6Prefix = `fd99:${octet.toString(16)}::`;
  const workDir = mkdtempSync(join(tmpdir(), `netboot-lab-${id}-`));
  const upstreamLogPath = join(workDir, 'upstream-dnsmasq.log');
  writeFileSync(upstreamLogPath, '');

  mkdirSync(STATE_DIR, { recursive: true });
  const statePath = join(STATE_DIR, `${id}.json`);
  const state: LabState = { ownerPid: process.pid, namespaces: [netns, upstreamNetns], workDir };
  // Write then rename: a concurrent reapStaleLabs() never reads a half-written file.
  writeFileSync(`${statePath}.tmp`, JSON.stringify(state));
  renameSync(`${statePath}.tmp`, statePath);

  const processes = new Set<ManagedProcess>();
  let destroyed = false;
  const unregister = registerExitCleanup(() => {
    deleteNamespaceSync(netns);
    deleteNamespaceSync(upstreamNetns);
    if (!options.keepWorkDir) rmSync(workDir, { recursive: true, force: true });
    rmSync(statePath, { force: true });
  });

  const destroy = async (destroyOptions: { keepWorkDir?: boolean } = {}): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    await Promise.all([...processes].map((p) => p.stop(2000)));
    await deleteNamespace(netns);
    await deleteNamespace(upstreamNetns);
    if (!(destroyOptions.keepWorkDir ?? options.keepWorkDir)) rmSync(workDir, { recursive: true, force: true });
    rmSync(statePath, { force: true });
    unregister();
    log.debug({ netns, upstreamNetns }, 'lab destroyed');
  };

  const spawnIn = (ns: string, cmd: string, args: readonly string[], opts: SpawnManagedOptions = {}): ManagedProcess => {
    if (destroyed) throw new ApplianceError('ERR_LAB_DESTROYED', `lab ${id} is already destroyed`);
    const p = spawnManaged('ip', ['netns', 'exec', ns, cmd, ...args], { label: cmd, ...opts });
    processes.add(p);
    void p.exited.then(() => processes.delete(p));
    return p;
  };

  let tapCount = 0;
  const ipn = (ns: string, ...args: string[]) => runCommand('ip', ['-n', ns, ...args]);
  try {
    await runCommand('ip', ['netns', 'add', netns]);
    await runCommand('ip', ['netns', 'add', upstreamNetns]);
    await ipn(netns, 'link', 'set', 'lo', 'up');
    await ipn(upstreamNetns, 'link', 'set', 'lo', 'up');
    // STP off and no forward delay: a port must forward the first DISCOVER the firmware sends.
    await ipn(netns, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await ipn(netns, 'addr', 'add', `${serverAddress}/24`, 'dev', 'br0');
    await ipn(netns, 'link', 'set', 'br0', 'up');
    // The veth is created inside the lab namespace with its peer placed directly into the
    // upstream namespace: at no point does an interface appear in the host's namespace.
    await ipn(netns, 'link', 'add', 'vup', 'type', 'veth', 'peer', 'name', 'vdhcp', 'netns', upstreamNetns);
    await ipn(netns, 'link', 'set', 'vup', 'master', 'br0', 'up');
    await ipn(upstreamNetns, 'addr', 'add', `${upstreamAddress}/24`, 'dev', 'vdhcp');
    await ipn(upstreamNetns, 'link', 'set', 'vdhcp', 'up');
    if (options.ipv6Router || options.ipv6) {
      // nodad: the address must be usable at once, or dnsmasq's first RAs have no source.
      await ipn(upstreamNetns, 'addr', 'add', `${ipv6Prefix}2/64`, 'dev', 'vdhcp', 'nodad');
    }
    if (options.ipv6) await ipn(netns, 'addr', 'add', `${ipv6Prefix}1/64`, 'dev', 'br0', 'nodad');
    if (options.upstreamDhcp ?? true) {
      const upstream = spawnIn(
        upstreamNetns,
        'dnsmasq',
        [
          '--no-daemon',
          '--conf-file=/dev/null',
          '--port=0',
          '--user=root',
          '--interface=vdhcp',
          '--bind-interfaces',
          // dnsmasq pings an address for up to 3 s before offering it; the lab subnet is empty, so
          // the probe only adds the same 3 s to every variant's boot.
          '--no-ping',
          `--dhcp-range=${dhcpRange.start},${dhcpRange.end},255.255.255.0,10m`,
          `--dhcp-leasefile=${join(workDir, 'upstream.leases')}`,
          `--pid-file=${join(workDir, 'upstream.pid')}`,
          '--log-dhcp',
          `--log-facility=${upstreamLogPath}`,
          // Stateful DHCPv6 (RA with the M flag) for PXEv6; else, with ipv6Router, RAs only.
          ...(options.ipv6
            ? ['--enable-ra', `--dhcp-range=${ipv6Prefix}100,${ipv6Prefix}1ff,64,10m`]
            : options.ipv6Router
              ? ['--enable-ra', `--dhcp-range=${ipv6Prefix},ra-only,64`]
              : []),
          ...(options.upstreamNextServer ? [`--dhcp-option=option:server-ip-address,${serverAddress}`] : []),
        ],
        { label: 'dnsmasq (upstream dhcp)', stderrPath: join(workDir, 'upstream-dnsmasq.stderr') },
      );
      // dnsmasq logs its range once its DHCP socket is bound: only then is the lab usable.
      const deadline = Date.now() + 10_000;
      while (!/DHCP, IP range/.test(readFileSync(upstreamLogPath, 'utf8'))) {
        if (upstream.exitStatus() || Date.now() > deadline) {
          let why = '';
          try {
            why = readFileSync(join(workDir, 'upstream-dnsmasq.stderr'), 'utf8').trim();
          } catch {
            // No stderr file yet: nothing more to say than the timeout.
          }
          throw new ApplianceError('ERR_LAB_SERVER', `the upstream dhcp server (dnsmasq) did not start: ${why || 'no output within 10 s'}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  log.info({ netns, upstreamNetns, serverAddress }, 'lab created');

  return {
    id,
    netns,
    upstreamNetns,
    bridge: 'br0',
    serverAddress,
    serverAddress6: options.ipv6 ? `${ipv6Prefix}1` : undefined,
    dhcp6Range: options.ipv6 && (options.upstreamDhcp ?? true) ? { start: `${ipv6Prefix}100`, end: `${ipv6Prefix}1ff` } : undefined,
    upstreamAddress,
    network: `${base}.0`,
    prefixLength: 24,
    dhcpRange,
    workDir,
    upstreamLogPath,
    addTap: async () => {
      const tap = `tap${tapCount++}`;
      await ipn(netns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
      await ipn(netns, 'link', 'set', tap, 'master', 'br0', 'up');
      return tap;
    },
    attachInterface: async (ifname, attachOptions = {}) => {
      if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(ifname)) {
        throw new ApplianceError('ERR_LAB_CONFIG', `interface name ${JSON.stringify(ifname)} is not valid`);
      }
      const from = attachOptions.fromNetns ? ['-n', attachOptions.fromNetns] : [];
      await runCommand('ip', [...from, 'link', 'set', 'dev', ifname, 'netns', netns]);
      await ipn(netns, 'link', 'set', ifname, 'master', 'br0', 'up');
      log.info({ netns, ifname }, 'interface attached to the lab bridge');
    },
    spawn: (cmd, args, opts) => spawnIn(netns, cmd, args, opts),
    exec: (cmd, args) => runCommand('ip', ['netns', 'exec', netns, cmd, ...args]),
    destroy,
  };
}
