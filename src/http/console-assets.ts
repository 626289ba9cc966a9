/**
 * What the console's assets page shows: for each profile, the kernel and initrds it needs,
 * present or missing under `--assets`, with size (and sha256 on request, through the digest
 * cache: images are hundreds of MiB), and the command that fetches what is missing; and the
 * iPXE binary handed to each firmware, with where it was found.
 */
import { stat } from 'node:fs/promises';
import { DEFAULT_BOOT_FILES } from '../dhcp/pxe.js';
import type { Profile } from '../store/schema.js';
import { findBootFiles, type BootFileStatus } from '../tftp/boot-files.js';
import { resolveAsset, type DigestCache } from './asset-files.js';
import { missingAssetMessage } from './routes/boot.js';

/** One file a profile boots. */
export interface AssetStatus {
  role: 'kernel' | 'initrd';
  source: string;
  /** `local` files live under --assets; `remote` ones are http(s) URLs the machine fetches itself. */
  where: 'local' | 'remote';
  present: boolean | null;
  size?: number;
  sha256?: string;
  /** What to do about a missing file. */
  fix?: string;
}

/** The assets report. */
export interface AssetsReport {
  profiles: Array<{ id: string; name: string | null; files: AssetStatus[] }>;
  bootFiles: Array<BootFileStatus & { fix?: string }>;
}

/** Inspect every profile's files (sha256 only when `hash`) and the boot files in `bootDirs`. */
export async function inspectAssets(args: {
  profiles: readonly Profile[];
  assetsDir: string;
  bootDirs?: readonly string[];
  digests: DigestCache;
  hash: boolean;
}): Promise<AssetsReport> {
  const profiles = [];
  for (const p of args.profiles) {
    const files: AssetStatus[] = [];
    for (const [role, source] of [['kernel', p.kernel] as const, ...p.initrd.map((s) => ['initrd', s] as const)]) {
      if (!source.startsWith('/assets/')) {
        files.push({ role, source, where: 'remote', present: null });
        continue;
      }
      const found = await resolveAsset(args.assetsDir, source.slice('/assets/'.length));
      if (!found) {
        files.push({ role, source, where: 'local', present: false, fix: missingAssetMessage(p.id, source, args.assetsDir) });
        continue;
      }
      const size = (await stat(found.file)).size;
      files.push({ role, source, where: 'local', present: true, size, ...(args.hash ? { sha256: (await args.digests.sha256(found.file)).sha256 } : {}) });
    }
    profiles.push({ id: p.id, name: p.name ?? null, files });
  }
  const [root, ...fallbacks] = args.bootDirs ?? [];
  const bootFiles =
    root === undefined
      ? []
      : findBootFiles(root, fallbacks, DEFAULT_BOOT_FILES).map((f) =>
          f.source !== 'missing'
            ? f
            : {
                ...f,
                fix:
                  f.firmware === 'bios' || f.firmware === 'efi-x64'
                    ? `install Debian's ipxe package or run: node bin/appliance fetch ipxe`
                    : `put an iPXE ${f.firmware} build named ${f.name} into ${root}`,
              },
        );
  return { profiles, bootFiles };
}
