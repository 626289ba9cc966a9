/**
 * What grub reads over TFTP from this appliance (a TFTP `virtualFiles` hook):
 *  - `grub/grub.cfg`: the fixed entry script (grub.ts `renderGrubEntry`);
 *  - `grub/machines/CPU/MAC.cfg`: the machine's profile rendered through its grub template, or
 *    a script that says why it cannot boot yet and retries (same rules as /ipxe);
 *  - `assets/PATH`: files under `--assets` (kernels, initrds), since grub has no http module.
 *    They are the same files /assets serves over HTTP, with the same containment rules.
 * Anything else falls through to the TFTP root (shim, grub, iPXE binaries).
 */
import { open } from 'node:fs/promises';
import { ApplianceError } from '../errors.js';
import type { EventLog } from '../events.js';
import type { Renderer, ServerAddress } from '../http/render.js';
import type { Logger } from '../log.js';
import { callbackDetail, grantedToken, type CallbackGrant } from '../http/callback-grant.js';
import { oneShotDetail, type OneShotOutcome } from '../http/one-shot.js';
import type { Db, Facts, Machine } from '../store/schema.js';
import { groupDetail, type Selection, type SelectQuery } from '../store/select.js';
import { resolveFile } from '../tftp/files.js';
import type { VirtualFileRequest, VirtualFiles } from '../tftp/server.js';
import { buildGrubContext, DEFAULT_GRUB_TEMPLATE, parseGrubMachinePath, peSignature, renderGrubEntry, renderGrubRetry } from './grub.js';
import { chooseLoader, SIGNED_FILES, type LoaderFirmware } from './loader.js';

/** What the grub files need from the rest of the appliance. */
export interface GrubFilesDeps {
  store: { selectProfile(query: SelectQuery): Promise<Selection>; snapshot(): Promise<Db> };
  renderer: Renderer;
  assetsDir: string;
  /** Our address and HTTP port (for placeholders such as the cloud-config URL). */
  server(): ServerAddress;
  secureBootDefault: boolean;
  retrySeconds?: number;
  log: Logger;
  events?: EventLog;
  /** The machine's verified facts, for fact selectors on groups (as /ipxe selects); none: no facts. */
  facts?: (mac: string) => Promise<Facts | undefined>;
  /**
   * Whether the script for `mac` sent to `ip` carries the callback token (http/callback-grant.ts:
   * only the machine's own address); none: grub scripts never carry it.
   */
  grantCallback?: (machine: Machine | undefined, mac: string, ip: string) => CallbackGrant;
  /**
   * A one-shot's script went to `ip`: consume it when that address speaks for `mac` (as /ipxe
   * does, http/one-shot.ts), else keep it. None: one-shots served by grub are never consumed.
   */
  settleOneShot?: (mac: string, ip: string) => Promise<OneShotOutcome>;
}

const CPU_FIRMWARE: Readonly<Record<string, LoaderFirmware>> = { x86_64: 'efi-x64', arm64: 'efi-arm64' };

/** Read the first 4 KiB of an asset (for the PE signature check); undefined when unreadable. */
async function readHead(path: string): Promise<Buffer | undefined> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (!handle) return undefined;
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Create the TFTP hook. */
export function createGrubFiles(deps: GrubFilesDeps): VirtualFiles {
  const log = deps.log.child({ subsystem: 'grub' });
  const retrySeconds = deps.retrySeconds ?? 20;

  async function machineScript(grubCpu: string, mac: string, request: VirtualFileRequest): Promise<string> {
    const server = deps.server();
    const ip = request.client.address;
    const fail = (reason: string, detail: Record<string, unknown> = {}): string => {
      log.info({ mac, ip, reason, ...detail }, 'machine cannot boot yet; sent grub retry script');
      deps.events?.record({ type: 'grub-script', mac, ip, detail: { outcome: 'retry', reason, ...detail } });
      return renderGrubRetry(server, reason, retrySeconds);
    };
    const firmware = CPU_FIRMWARE[grubCpu];
    if (!firmware) return fail(`grub cpu ${grubCpu} is not booted by this appliance (x86_64, arm64)`);
    try {
      const query = { mac, arch: grubCpu, facts: await deps.facts?.(mac) };
      const selection = await deps.store.selectProfile(query);
      if (selection.kind === 'none') return fail(selection.reason);
      const { profile, machine, via } = selection;
      const choice = chooseLoader(await deps.store.snapshot(), { mac, firmware, client: 'pxe', facts: query.facts }, deps.secureBootDefault);
      const secureBoot = choice.secureBoot;
      for (const source of [profile.kernel, ...profile.initrd]) {
        if (!source.startsWith('/assets/')) continue;
        const found = await resolveFile(source.slice('/assets/'.length), [deps.assetsDir]);
        if (found.kind === 'refused')
          return fail(`profile ${profile.id}: ${source} is missing on the appliance (put it under the assets directory)`, {
            profile: profile.id,
            asset: source,
          });
        await found.handle.close();
        if (secureBoot && source === profile.kernel) {
          const head = await readHead(found.path);
          const pe = head ? peSignature(head) : undefined;
          if (!pe?.signed) {
            return fail(
              `profile ${profile.id}: secure boot is on and kernel ${source} carries no authenticode signature, so shim would refuse it; name a signed kernel (e.g. debian's /boot/vmlinuz-* of linux-image-amd64 or -arm64)`,
              { profile: profile.id, asset: source },
            );
          }
        }
      }
      const template = profile.grub ?? DEFAULT_GRUB_TEMPLATE;
      // A TFTP reply goes to the address the request came from: the grant rules are /ipxe's.
      const grant: CallbackGrant = deps.grantCallback?.(machine, mac, ip) ?? { kind: 'none' };
      const req = { mac, arch: grubCpu, callbackToken: grantedToken(grant) };
      const context = buildGrubContext(server, req, profile, machine, via, { secureBoot, retrySeconds });
      const script = deps.renderer.render(template, { ...context });
      const once = via === 'once' && deps.settleOneShot ? oneShotDetail(await deps.settleOneShot(mac, ip)) : {};
      const detail = { profile: profile.id, via, template, secureBoot, ...groupDetail(selection), ...callbackDetail(grant), ...once };
      log.info({ mac, ip, grubCpu, ...detail }, 'sent grub script');
      deps.events?.record({ type: 'grub-script', mac, ip, detail: { outcome: 'boot', ...detail, arch: grubCpu } });
      return script;
    } catch (err) {
      if (!(err instanceof ApplianceError)) log.error({ mac, err }, 'grub script failed');
      return fail(err instanceof ApplianceError ? err.message : 'internal error while building the grub script', {
        code: err instanceof ApplianceError ? err.code : 'ERR_INTERNAL',
      });
    }
  }

  return async (request) => {
    const name = request.name;
    if (name === 'grub/grub.cfg') return Buffer.from(renderGrubEntry(deps.server(), retrySeconds));
    const machine = parseGrubMachinePath(name);
    if (machine) return Buffer.from(await machineScript(machine.grubCpu, machine.mac, request));
    if (name.startsWith('grub/machines/'))
      return Buffer.from(renderGrubRetry(deps.server(), `${name.slice(0, 80)} is not a machine script path (grub/machines/CPU/MAC.cfg)`, retrySeconds));
    if (name.startsWith('assets/')) {
      const found = await resolveFile(name.slice('assets/'.length), [deps.assetsDir]);
      // Not found: fall through (the TFTP server then answers "file not found").
      if (found.kind === 'refused') return undefined;
      const { handle, size } = found;
      return { size, open: () => handle.createReadStream({ autoClose: true }) };
    }
    return undefined;
  };
}

/** The signed files `fetch secureboot` puts in the TFTP root, for the start-up log. */
export const SIGNED_BOOT_FILES: readonly string[] = Object.values(SIGNED_FILES).flatMap((f) => [f.shim, f.grub]);
