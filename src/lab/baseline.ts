import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_BOOT_FILES, IPXE_SYSTEM_DIRS } from '../boot-catalogue.js';
import { ApplianceError } from '../errors.js';
import type { Lab } from './netns.js';
import type { ManagedProcess } from './process.js';

/** iPXE binaries from Debian's `ipxe` package (the catalogue's first system directory). */
export const IPXE_DIR = IPXE_SYSTEM_DIRS[0]!;

/** What a boot server needs to boot the test OS. */
export interface BootAssets {
  /** The test OS kernel (vmlinuz). */
  kernelPath: string;
  /** The test OS initrd (see buildTestInitrd). */
  initrdPath: string;
  /** Body of the cloud-config the test OS fetches. */
  cloudConfig: string;
}

/** A boot server running in a lab; `stop()` must be idempotent. */
export interface BootServer {
  /** Short name for reports, e.g. `dnsmasq-proxy+busybox-httpd`. */
  readonly name: string;
  /** Log files worth reading after a boot (assertions, diagnostics), by short name. */
  readonly logPaths?: Readonly<Record<string, string>>;
  stop(): Promise<void>;
}

/**
 * Starts a boot server inside `lab.netns` on `lab.bridge` / `lab.serverAddress` and resolves
 * once it serves. The bench and the e2e tests run every variant through this one signature.
 */
export type StartBootServer = (lab: Lab, assets: BootAssets) => Promise<BootServer>;

/** The dnsmasq-proxy-plus-static-HTTP baseline, with its log files. */
export interface BaselineServer extends BootServer {
  /** dnsmasq `--log-dhcp` output (proxy DHCP and TFTP). */
  readonly dnsmasqLogPath: string;
  /** busybox httpd `-vv` output (one line per request). */
  readonly httpLogPath: string;
  /** URL of the iPXE script handed to iPXE clients. */
  readonly bootScriptUrl: string;
  /** URL the test OS fetches its cloud-config from. */
  readonly cloudConfigUrl: string;
  /** A URL that accepts facts reports (pass as `netboot.facts_url=`); see `factsLogPath`. */
  readonly factsUrl: string;
  /** Each report POSTed to `factsUrl`, one JSON document per line (also `logPaths.facts`). */
  readonly factsLogPath: string;
}

/** Options for {@link startDnsmasqBaseline}. */
export interface BaselineOptions {
  /** HTTP port inside the lab namespace (default 8080; the namespace is private). */
  httpPort?: number;
  /** Extra kernel arguments appended to the command line. */
  extraCmdline?: string;
  /** How long to wait for both servers to serve (default 10 s). */
  readyTimeoutMs?: number;
  /**
   * Run dnsmasq's ProxyDHCP (default true). With false, dnsmasq serves only TFTP, so another
   * ProxyDHCP (the appliance's, alone) can be tried against real firmware piece by piece.
   */
  proxyDhcp?: boolean;
}

/** The cloud-config served by the baseline (and a sensible default for tests). */
export const DEFAULT_CLOUD_CONFIG = `#cloud-config
hostname: netboot-lab
rancher:
  network:
    dns:
      nameservers: []
ssh_authorized_keys: []
`;

/**
 * The iPXE script of the test OS. Under UEFI, iPXE needs `initrd=NAME` on the kernel line or
 * the EFI stub boots without the initrd and panics (docs/NETBOOT-FACTS.md section 5).
 */
export function renderBootScript(o: { baseUrl: string; cloudConfigUrl: string; extraCmdline?: string }): string {
  const cmdline = [
    'initrd=initrd.img',
    `rancher.cloud_init.datasources=[url:${o.cloudConfigUrl}]`,
    'console=ttyS0',
    // A panic reboots at once; with -no-reboot QEMU then exits and the test fails fast.
    'panic=-1',
    ...(o.extraCmdline ? [o.extraCmdline] : []),
  ].join(' ');
  return `#!ipxe
echo === BOOT.IPXE ${o.baseUrl} ===
kernel ${o.baseUrl}/vmlinuz ${cmdline}
initrd --name initrd.img ${o.baseUrl}/initrd.img
boot
`;
}

async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, proc?: ManagedProcess, logPath?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (proc?.exitStatus()) {
      const log = logPath && existsSync(logPath) ? readFileSync(logPath, 'utf8').slice(-2000) : '';
      throw new ApplianceError('ERR_LAB_SERVER', `${what} exited during startup: ${log}`, { what });
    }
    if (Date.now() > deadline) throw new ApplianceError('ERR_LAB_TIMEOUT', `${what} did not become ready within ${timeoutMs} ms`, { what });
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Start the reference boot server in the lab namespace: dnsmasq in ProxyDHCP mode with its
 * TFTP server (undionly.kpxe for BIOS PXE, snponly.efi for UEFI x64 PXE; iPXE clients, user
 * class `iPXE`, get the HTTP URL of boot.ipxe) and busybox httpd serving boot.ipxe, the kernel,
 * the initrd and the cloud-config. This is the figure the appliance is measured against.
 */
export async function startDnsmasqBaseline(lab: Lab, assets: BootAssets, options: BaselineOptions = {}): Promise<BaselineServer> {
  const port = options.httpPort ?? 8080;
  const readyMs = options.readyTimeoutMs ?? 10_000;
  const root = join(lab.workDir, 'baseline');
  const tftpRoot = join(root, 'tftp');
  const httpRoot = join(root, 'http');
  mkdirSync(tftpRoot, { recursive: true });
  mkdirSync(httpRoot, { recursive: true });
  for (const f of [DEFAULT_BOOT_FILES.bios, DEFAULT_BOOT_FILES['efi-x64']]) {
    const src = join(IPXE_DIR, f);
    if (!existsSync(src)) throw new ApplianceError('ERR_LAB_PREREQ', `${src} is missing; install ipxe`);
    copyFileSync(src, join(tftpRoot, f));
  }
  const baseUrl = `http://${lab.serverAddress}:${port}`;
  const bootScriptUrl = `${baseUrl}/boot.ipxe`;
  const cloudConfigUrl = `${baseUrl}/cloud-config`;
  copyFileSync(assets.kernelPath, join(httpRoot, 'vmlinuz'));
  copyFileSync(assets.initrdPath, join(httpRoot, 'initrd.img'));
  writeFileSync(join(httpRoot, 'cloud-config'), assets.cloudConfig);
  writeFileSync(
    join(httpRoot, 'boot.ipxe'),
    renderBootScript({ baseUrl, cloudConfigUrl, ...(options.extraCmdline ? { extraCmdline: options.extraCmdline } : {}) }),
  );
  const httpConf = join(root, 'httpd.conf');
  writeFileSync(httpConf, '');
  // A CGI that stores each POSTed facts report, so tests can check the test OS's report end
  // to end (`netboot.facts_url=.../cgi-bin/facts`); the static server has no API otherwise.
  const factsLogPath = join(root, 'facts.jsonl');
  writeFileSync(factsLogPath, '');
  mkdirSync(join(httpRoot, 'cgi-bin'), { recursive: true });
  writeFileSync(
    join(httpRoot, 'cgi-bin', 'facts'),
    `#!/bin/sh\n{ head -c "\${CONTENT_LENGTH:-0}"; echo; } >> "${factsLogPath}"\nprintf 'Status: 200 OK\\r\\nContent-Type: application/json\\r\\n\\r\\n{"ok":true}\\n'\n`,
    { mode: 0o755 },
  );

  const dnsmasqLogPath = join(root, 'dnsmasq.log');
  const httpLogPath = join(root, 'httpd.log');
  writeFileSync(dnsmasqLogPath, '');
  const procs: ManagedProcess[] = [];
  const stop = async () => {
    await Promise.all(procs.map((p) => p.stop(2000)));
  };
  try {
    const proxyArgs = [
      `--dhcp-range=${lab.network},proxy`,
      // iPXE announces itself with user class "iPXE" (option 77): hand it the script URL, not
      // the binary again, or it chainloads itself forever.
      '--dhcp-userclass=set:ipxe,iPXE',
      `--pxe-service=tag:!ipxe,x86PC,Network boot,${DEFAULT_BOOT_FILES.bios}`,
      `--pxe-service=tag:!ipxe,X86-64_EFI,Network boot,${DEFAULT_BOOT_FILES['efi-x64']}`,
      `--pxe-service=tag:ipxe,x86PC,iPXE boot script,${bootScriptUrl}`,
      `--pxe-service=tag:ipxe,X86-64_EFI,iPXE boot script,${bootScriptUrl}`,
    ];
    const dnsmasq = lab.spawn(
      'dnsmasq',
      [
        '--no-daemon',
        '--conf-file=/dev/null',
        '--port=0',
        '--user=root',
        `--interface=${lab.bridge}`,
        '--bind-interfaces',
        ...((options.proxyDhcp ?? true) ? proxyArgs : []),
        '--enable-tftp',
        `--tftp-root=${tftpRoot}`,
        `--pid-file=${join(root, 'dnsmasq.pid')}`,
        `--dhcp-leasefile=${join(root, 'dnsmasq.leases')}`,
        '--log-dhcp',
        `--log-facility=${dnsmasqLogPath}`,
      ],
      { label: 'dnsmasq (baseline proxy)', stderrPath: join(root, 'dnsmasq.stderr') },
    );
    procs.push(dnsmasq);
    const httpd = lab.spawn('busybox', ['httpd', '-f', '-vv', '-p', `${lab.serverAddress}:${port}`, '-h', httpRoot, '-c', httpConf], {
      label: 'busybox httpd (baseline)',
      stderrPath: httpLogPath,
    });
    procs.push(httpd);
    await waitUntil(
      'dnsmasq (baseline proxy)',
      () => /TFTP root is/.test(readFileSync(dnsmasqLogPath, 'utf8')),
      readyMs,
      dnsmasq,
      join(root, 'dnsmasq.stderr'),
    );
    await waitUntil(
      'busybox httpd (baseline)',
      () =>
        lab.exec('busybox', ['wget', '-q', '-O', '/dev/null', cloudConfigUrl]).then(
          () => true,
          () => false,
        ),
      readyMs,
      httpd,
      httpLogPath,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    name: 'dnsmasq-proxy+busybox-httpd',
    logPaths: { dnsmasq: dnsmasqLogPath, httpd: httpLogPath, facts: factsLogPath },
    dnsmasqLogPath,
    httpLogPath,
    bootScriptUrl,
    cloudConfigUrl,
    factsUrl: `${baseUrl}/cgi-bin/facts`,
    factsLogPath,
    stop,
  };
}
