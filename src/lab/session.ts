import { createSilentLogger, type Logger } from '../log.js';
import { DEFAULT_CLOUD_CONFIG, type BootServer, type StartBootServer } from './baseline.js';
import { buildTestInitrd } from './initrd.js';
import { createLab, type Lab } from './netns.js';
import { startVm, type Firmware, type Vm } from './qemu.js';

/** One VM of a lab session. */
export interface SessionVmSpec {
  firmware: Firmware;
  mac?: string;
  uuid?: string;
  memoryMiB?: number;
  name?: string;
}

/** Options for {@link startLabSession}. */
export interface LabSessionOptions {
  /** Starts the boot server in the lab (the appliance, or the dnsmasq baseline). */
  startBootServer: StartBootServer;
  vms: readonly SessionVmSpec[];
  /** cloud-config handed to the boot server (default {@link DEFAULT_CLOUD_CONFIG}). */
  cloudConfig?: string;
  /** Hard limit per VM (default 4 minutes); the user-facing lab may pass hours. */
  vmTimeoutMs?: number;
  /** Serial output of every VM, tagged with its name (to show consoles live). */
  onSerial?: (vmName: string, chunk: Buffer) => void;
  keepWorkDir?: boolean;
  /** Run an IPv6 router on the lab network (see LabOptions.ipv6Router). Default false. */
  ipv6Router?: boolean;
  log?: Logger;
}

/** A lab with its boot server and VMs running; `stop()` tears all of it down. */
export interface LabSession {
  readonly lab: Lab;
  readonly server: BootServer;
  readonly vms: readonly Vm[];
  /** Kill the VMs, stop the server, delete the namespaces. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Create a lab, start a boot server in it and boot several VMs side by side on the same
 * bridge (the shape of the user-facing `lab` command and of multi-machine e2e cases). On any
 * failure everything already started is torn down before the error propagates.
 */
export async function startLabSession(options: LabSessionOptions): Promise<LabSession> {
  const log = options.log ?? createSilentLogger();
  const initrd = buildTestInitrd();
  const lab = await createLab({
    log,
    ...(options.keepWorkDir !== undefined ? { keepWorkDir: options.keepWorkDir } : {}),
    ...(options.ipv6Router !== undefined ? { ipv6Router: options.ipv6Router } : {}),
  });
  const vms: Vm[] = [];
  let server: BootServer | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.all(vms.map((v) => v.kill()));
    await server?.stop();
    await lab.destroy();
  };
  try {
    server = await options.startBootServer(lab, {
      kernelPath: initrd.kernel.path,
      initrdPath: initrd.path,
      cloudConfig: options.cloudConfig ?? DEFAULT_CLOUD_CONFIG,
    });
    for (const [i, spec] of options.vms.entries()) {
      const name = spec.name ?? `vm${i}-${spec.firmware}`;
      const onSerial = options.onSerial;
      vms.push(
        await startVm(lab, {
          ...spec,
          name,
          log,
          ...(options.vmTimeoutMs !== undefined ? { timeoutMs: options.vmTimeoutMs } : {}),
          ...(onSerial ? { onSerial: (chunk: Buffer) => onSerial(name, chunk) } : {}),
        }),
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { lab, server, vms, stop };
}
