/**
 * The lab run behind `node bin/appliance lab` (flags and plan: command.ts): build the private lab
 * network, start the appliance on it (the operator's settings or the test OS), boot the VMs,
 * show or log their consoles, and remove everything on exit.
 */
import { createWriteStream, mkdirSync, copyFileSync, existsSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { ApplianceError } from '../errors.js';
import { createSilentLogger } from '../log.js';
import { DEFAULT_CLOUD_CONFIG } from './baseline.js';
import { startApplianceInLab, startTestOsAppliance, testOsProfile, type LabAppliance } from './appliance.js';
import { prepareArm64TestOs } from './arm64.js';
import { fetchSecureBoot } from '../fetch/secureboot.js';
import { buildTestInitrd } from './initrd.js';
import { createLab, type Lab } from './netns.js';
import { checkLabPrerequisites } from './prereqs.js';
import { randomMac, startVm, type Vm } from './qemu.js';
import { LAB_EXIT, type LabIo, type LabPlan } from './plan.js';

/** Strip terminal control sequences (firmware consoles position the cursor, clear, colour). */
function plainText(s: string): string {
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>c]/g, '').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
}

/** Writes a VM's console to stdout line by line with a `[name] ` prefix. */
function createConsolePrinter(name: string, out: NodeJS.WritableStream): { write(chunk: Buffer): void; flush(): void } {
  let partial = '';
  return {
    write(chunk) {
      partial += chunk.toString('latin1');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      // Bounded: a console that never prints a newline still gets shown.
      if (partial.length > 4096) {
        lines.push(partial);
        partial = '';
      }
      for (const line of lines) out.write(`[${name}] ${plainText(line)}\n`);
    },
    flush() {
      if (partial !== '') out.write(`[${name}] ${plainText(partial)}\n`);
      partial = '';
    },
  };
}

/**
 * Run a parsed lab plan (src/lab/command.ts). Resolves with the exit code once the lab is torn
 * down: when every VM has powered off (unless `keep`), on SIGINT/SIGTERM from `signals`, or on
 * a failure.
 */
export async function runLab(plan: LabPlan, io: LabIo, signals: NodeJS.EventEmitter): Promise<number> {
  const say = (text: string) => io.stderr.write(`lab: ${text}\n`);
  const fw = new Set(plan.vms.map((v) => v.firmware));
  const uefiLike = [...fw].some((f) => f !== 'bios');
  const missing = checkLabPrerequisites(fw.has('bios') && uefiLike ? 'both' : uefiLike ? 'uefi' : 'bios', [...fw]);
  if (missing.length > 0) {
    for (const m of missing) say(`missing ${m.what} (${m.fix})`);
    return LAB_EXIT.failure;
  }

  // Signals end the run from here on; the handlers are removed before returning.
  let signalled: string | undefined;
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<void>((r) => {
    onAbort = r;
  });
  const onSignal = (signal: string) => {
    if (signalled) return;
    signalled = signal;
    say(`${signal}: tearing the lab down`);
    onAbort();
  };
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);

  let lab: Lab | undefined;
  let appliance: LabAppliance | undefined;
  const vms: Vm[] = [];
  const exitCodes = new Map<Vm, number | null>();
  const printers: Array<{ flush(): void }> = [];
  const files: WriteStream[] = [];
  let code: number = LAB_EXIT.ok;
  try {
    if (plan.serialLogDir) mkdirSync(plan.serialLogDir, { recursive: true });
    // grub (arm64, uefi-secureboot) takes its TFTP server from the DHCP server's ACK, not from the
    // ProxyDHCP offer: the lab's dnsmasq names the appliance as next-server, as README tells operators.
    const grubVms = plan.vms.some((v) => v.firmware === 'arm64' || v.firmware === 'uefi-secureboot');
    lab = await createLab({
      upstreamDhcp: plan.upstreamDhcp,
      ipv6Router: plan.ipv6Router,
      upstreamNextServer: grubVms,
      ipv6: plan.ipv6,
      log: createSilentLogger(),
    });
    // PXEv6 (uefi-ipv6): DHCPv6 proxy beside the upstream dnsmasq (which then leases IPv6 too),
    // or the DHCPv6 server with router advertisements when there is no upstream.
    const applianceArgs = [
      ...plan.applianceArgs,
      ...(plan.ipv6 ? ['--address6', lab.serverAddress6!, '--dhcp6-mode', plan.upstreamDhcp ? 'proxy' : 'server'] : []),
    ];
    if (signalled) throw new ApplianceError('ERR_LAB_INTERRUPTED', 'interrupted');
    say(
      `network ${lab.network}/${lab.prefixLength} on ${lab.bridge} in netns ${lab.netns}${plan.upstreamDhcp ? `, plain DHCP from ${lab.upstreamAddress}` : ''}${plan.ipv6Router ? ', IPv6 router on' : ''}${lab.serverAddress6 ? `, IPv6 ${lab.serverAddress6}/64 (DHCPv6 ${plan.upstreamDhcp ? 'from dnsmasq, appliance proxy' : 'and RAs from the appliance'})` : ''}`,
    );
    for (const ifname of plan.attach) {
      await lab.attachInterface(ifname);
      say(`attached ${ifname} to the lab bridge`);
    }
    const common = { httpPort: plan.httpPort, checkBuild: false, logLevel: plan.logLevel ?? (plan.testOs ? 'info' : null) };
    if (plan.testOs) {
      const initrd = buildTestInitrd();
      const kinds = new Set(plan.vms.map((v) => v.firmware));
      if (grubVms && plan.upstreamDhcp)
        say(`grub reads its TFTP server from the DHCP ACK: the plain DHCP server names ${lab.serverAddress} as next-server (README: Firmware paths)`);
      // Secure Boot VMs need a MAC for their machine record (secureBoot: true); others keep theirs.
      for (const v of plan.vms) if (v.firmware === 'uefi-secureboot' && v.mac === undefined) v.mac = randomMac();
      const arm64 = kinds.has('arm64') ? await prepareArm64TestOs() : undefined;
      const arm64Profile = arm64
        ? {
            ...testOsProfile('lab-test-os-arm64', { extraCmdline: { console: 'ttyAMA0' } }),
            kernel: '/assets/arm64/vmlinuz',
            initrd: ['/assets/arm64/initrd.img'],
          }
        : undefined;
      const started = await startTestOsAppliance(
        lab,
        { kernelPath: initrd.kernel.path, initrdPath: initrd.path, cloudConfig: DEFAULT_CLOUD_CONFIG },
        {
          ...common,
          args: applianceArgs,
          ...(arm64Profile ? { profiles: [arm64Profile], groups: [{ id: 'arm64', profile: arm64Profile.id, selector: { arch: 'arm64' } }] } : {}),
          machines: plan.vms.filter((v) => v.firmware === 'uefi-secureboot').map((v) => ({ mac: v.mac!, secureBoot: true })),
        },
      );
      appliance = started;
      if (arm64) {
        mkdirSync(join(started.home.assets, 'arm64'), { recursive: true });
        copyFileSync(arm64.kernelPath, join(started.home.assets, 'arm64', 'vmlinuz'));
        copyFileSync(arm64.initrdPath, join(started.home.assets, 'arm64', 'initrd.img'));
      }
      if (grubVms) {
        const arches: Array<'amd64' | 'arm64'> = [
          ...(kinds.has('uefi-secureboot') ? (['amd64'] as const) : []),
          ...(kinds.has('arm64') ? (['arm64'] as const) : []),
        ];
        await fetchSecureBoot({ tftpRoot: started.home.tftpRoot, arches, log: createSilentLogger() });
        say(`shim and signed grub (${arches.join(', ')}) in the test os tftp root`);
      }
    } else {
      appliance = await startApplianceInLab(lab, { ...common, args: applianceArgs, env: io.env });
    }
    say(
      `appliance at ${appliance.baseUrl} (log ${appliance.logPaths?.['stdout'] ?? '?'}); API: ip netns exec ${lab.netns} curl -H "Authorization: Bearer TOKEN" ${appliance.baseUrl}/api/events`,
    );
    if (signalled) throw new ApplianceError('ERR_LAB_INTERRUPTED', 'interrupted');

    for (const spec of plan.vms) {
      const printer = plan.quiet ? undefined : createConsolePrinter(spec.name, io.stdout);
      if (printer) printers.push(printer);
      const file = plan.serialLogDir ? createWriteStream(join(plan.serialLogDir, `${spec.name}.serial.log`)) : undefined;
      if (file) files.push(file);
      const vm = await startVm(lab, {
        ...spec,
        memoryMiB: plan.memoryMiB,
        timeoutMs: plan.timeoutMs,
        onSerial: (chunk) => {
          printer?.write(chunk);
          file?.write(chunk);
        },
      });
      vms.push(vm);
      say(`${vm.name} started: ${vm.firmware}, mac ${vm.mac}${spec.uuid ? `, uuid ${spec.uuid}` : ''}, tap ${vm.tap}`);
      void vm.exited.then((exit) => {
        // QEMU also exits 0 when it is sent SIGTERM: only 0 without a stop of ours is a poweroff.
        const by = vm.stoppedBy();
        const poweredOff = exit.code === 0 && by === undefined;
        exitCodes.set(vm, poweredOff ? 0 : (exit.code ?? -1) || -1);
        say(
          poweredOff
            ? `${vm.name} powered off`
            : `${vm.name} stopped (${by === 'timeout' ? `still running after --timeout ${plan.timeoutMs / 1000} s` : by === 'kill' ? 'killed by the lab' : (exit.signal ?? `exit code ${exit.code}`)})`,
        );
      });
      if (signalled) break;
    }

    const exits = Promise.all(vms.map((vm) => vm.exited));
    if (vms.length > 0) await Promise.race([exits, aborted]);
    if (!signalled && (plan.keep || vms.length === 0)) {
      say(vms.length === 0 ? 'lab running; Ctrl-C or SIGTERM stops it' : 'VMs stopped; the lab and the appliance keep running until Ctrl-C or SIGTERM');
      await aborted;
    }
    // A signal is the normal end only once every VM has powered off (--keep) or with none.
    if (vms.some((vm) => !exitCodes.has(vm))) code = LAB_EXIT.interrupted;
    else if ([...exitCodes.values()].some((c) => c !== 0)) code = LAB_EXIT.failure;
  } catch (err) {
    if (!(err instanceof ApplianceError && err.code === 'ERR_LAB_INTERRUPTED')) {
      say(err instanceof ApplianceError ? err.message : ((err as Error).stack ?? String(err)));
      code = LAB_EXIT.failure;
    } else {
      code = LAB_EXIT.interrupted;
    }
  } finally {
    await Promise.all(vms.map((vm) => vm.kill()));
    for (const p of printers) p.flush();
    await Promise.all(files.map((f) => new Promise<void>((r) => f.end(() => r()))));
    await appliance?.stop();
    if (plan.serialLogDir && appliance?.logPaths) {
      for (const [kind, path] of Object.entries(appliance.logPaths)) {
        if (existsSync(path)) copyFileSync(path, join(plan.serialLogDir, kind === 'stdout' ? 'appliance.log' : `appliance.${kind}.log`));
      }
    }
    await lab?.destroy();
    if (lab) say(`lab ${lab.netns} removed`);
    signals.off('SIGINT', onSignal);
    signals.off('SIGTERM', onSignal);
  }
  return code;
}
