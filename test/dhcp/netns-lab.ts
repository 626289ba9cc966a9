/**
 * Network-namespace lab for the DHCP tests with real clients: a server namespace with bridge
 * br0 (10.99.0.1/24) and client namespaces on veths into it, all made here and removed in
 * teardown; child processes whose output lines can be awaited; scripts for udhcpc and dhclient.
 */
import type { ExecutionContext } from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** busybox udhcpc, as Debian installs it. */
export const UDHCPC = existsSync('/usr/sbin/udhcpc') ? ['/usr/sbin/udhcpc'] : ['busybox', 'udhcpc'];

/** Run `ip ARGS`. */
export function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A child process whose output lines are kept and can be awaited. */
export class Proc {
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  #waiters: Array<() => void> = [];
  constructor(readonly child: ChildProcess) {
    const take = (d: Buffer): void => {
      this.#buf += d.toString();
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) >= 0) {
        this.lines.push(this.#buf.slice(0, nl));
        this.#buf = this.#buf.slice(nl + 1);
      }
      this.#waiters.splice(0).forEach((w) => w());
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    this.exited = new Promise((resolve) =>
      child.on('exit', (code) => {
        this.#waiters.splice(0).forEach((w) => w());
        resolve(code);
      }),
    );
  }
  #buf = '';
  /** JSON log lines (pino). */
  get logs(): Array<Record<string, unknown>> {
    return this.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }
  /** Wait for a line (from index `from`) matching `re`; resolves with its match. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.lines.length; i++) {
        const m = re.exec(this.lines[i]!);
        if (m) return m;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null)
        throw new Error(`no line matching ${re} within ${timeoutMs} ms (exit ${this.child.exitCode}):\n${this.lines.slice(-15).join('\n')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
  /** Wait for a pino log entry satisfying `pred`. */
  async waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.logs.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline || this.child.exitCode !== null)
        throw new Error(`no matching log entry within ${timeoutMs} ms (exit ${this.child.exitCode}):\n${this.lines.slice(-15).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }
}

export interface Lab {
  srv: string;
  clients: string[];
  dir: string;
  spawn(ns: string, argv: string[]): Proc;
  server(args: string[]): Proc;
}

/**
 * dnsmasq as the other DHCP server of a test, in namespace `ns` on its eth0 (no DNS, logs on
 * stdout, leases and pid file in the lab's dir); `extra` adds the range and any other option.
 */
export function startDnsmasq(lab: Lab, ns: string, extra: string[]): Proc {
  return lab.spawn(ns, [
    'dnsmasq',
    '--port=0',
    '--no-daemon',
    '--conf-file=/dev/null',
    '--log-facility=-',
    '--log-dhcp',
    '--interface=eth0',
    '--bind-interfaces',
    `--dhcp-leasefile=${path.join(lab.dir, `${ns}.leases`)}`,
    `--pid-file=${path.join(lab.dir, `${ns}.pid`)}`,
    ...extra,
  ]);
}

/** Build SRV with br0 and `n` client namespaces; everything is removed in teardown. */
export function makeLab(t: ExecutionContext, n: number): Lab {
  t.is(process.getuid?.(), 0, 'namespace tests need root (ip netns)');
  const suffix = randomBytes(3).toString('hex');
  const srv = `nbdsrv${suffix}`;
  const clients = Array.from({ length: n }, (_, i) => `nbdc${i}${suffix}`);
  const procs: Proc[] = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dhcp-netns-'));
  t.teardown(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.signal('SIGKILL');
    await Promise.all(procs.map((p) => Promise.race([p.exited, new Promise((r) => setTimeout(r, 3000))])));
    for (const ns of [srv, ...clients]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // not created
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  ip('netns', 'add', srv);
  ip('-n', srv, 'link', 'set', 'lo', 'up');
  ip('-n', srv, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', srv, 'addr', 'add', '10.99.0.1/24', 'dev', 'br0');
  ip('-n', srv, 'link', 'set', 'br0', 'up');
  clients.forEach((ns, i) => {
    ip('netns', 'add', ns);
    ip('link', 'add', `v${i}`, 'netns', srv, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('-n', srv, 'link', 'set', `v${i}`, 'master', 'br0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
  });
  const spawnIn = (ns: string, argv: string[]): Proc => {
    const p = new Proc(spawn('ip', ['netns', 'exec', ns, ...argv], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }));
    procs.push(p);
    return p;
  };
  return {
    srv,
    clients,
    dir,
    spawn: spawnIn,
    server: (args) =>
      spawnIn(srv, [
        process.execPath,
        '--import',
        'tsx',
        path.join(ROOT, 'src/dhcp/run.ts'),
        '--mode',
        'server',
        '--address',
        '10.99.0.1',
        '--probe-timeout',
        '1500',
        ...args,
      ]),
  };
}

/** udhcpc's event script: print what it was told, configure the address so renewals can unicast. */
export function udhcpcScript(dir: string): string {
  const file = path.join(dir, 'udhcpc.sh');
  writeFileSync(
    file,
    `#!/bin/sh
echo "UDHCPC $1 ip=$ip mask=$mask router=$router dns=$dns domain=$domain lease=$lease serverid=$serverid hostname=$hostname"
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
`,
  );
  chmodSync(file, 0o755);
  return file;
}

/** dhclient's script (it gets no inherited environment): append events to a file. */
export function dhclientScript(dir: string, name: string): { script: string; events: string } {
  const script = path.join(dir, `${name}.sh`);
  const events = path.join(dir, `${name}.events`);
  writeFileSync(
    script,
    `#!/bin/sh
echo "DHCLIENT $reason ip=$new_ip_address mask=$new_subnet_mask router=$new_routers dns=$new_domain_name_servers domain=$new_domain_name lease=$new_dhcp_lease_time server=$new_dhcp_server_identifier" >> ${events}
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT) ip addr flush dev "$interface"; ip addr add "$new_ip_address/24" dev "$interface" ;;
  RELEASE|EXPIRE|STOP) ip addr flush dev "$interface" ;;
esac
exit 0
`,
  );
  chmodSync(script, 0o755);
  writeFileSync(events, '');
  return { script, events };
}

/** Wait until `file` matches `re`. */
export async function waitForFile(file: string, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = re.exec(readFileSync(file, 'utf8'));
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`${path.basename(file)}: no ${re} within ${timeoutMs} ms:\n${readFileSync(file, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGTERM the server and check it logged its clean stop. */
export async function stopServer(t: ExecutionContext, server: Proc): Promise<void> {
  server.signal('SIGTERM');
  await server.exited;
  t.truthy(
    server.logs.find((l) => l['msg'] === 'dhcp stopped'),
    'SIGTERM stops the server cleanly',
  );
}
