/**
 * Writing a `docker save`-compatible image archive without a Docker daemon: the layout docker
 * (>= 1.10), podman, skopeo (`docker-archive:`) and containerd load — `manifest.json`, an image
 * config named by its sha256, one `<id>/layer.tar` per layer and the legacy `repositories` map.
 * Everything is deterministic (fixed mtime, fixed member order, JSON with fixed key order), so
 * the same layers and settings give the same archive bytes and the same sha256.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { syncDir, tempPathFor } from '../durable-file.js';
import { ApplianceError } from '../errors.js';
import { TAR_END, encodeTarHeader, tarPadding } from './tar.js';

/** One layer: an uncompressed tar, on disk or in memory. */
export type LayerSource = { file: string } | { data: Buffer };

/** What goes into the image config besides the layers. */
export interface ImageSettings {
  /** `name:tag`, e.g. `netboot/discovery:1`. */
  ref: string;
  /** Seconds since the epoch; the config's `created` and every archive member's mtime. */
  created: number;
  entrypoint: string[];
  env: string[];
  labels: Record<string, string>;
  /** `created_by` of each layer, same order as the layers. */
  history: string[];
  architecture?: string;
}

/** The written archive. */
export interface DockerArchive {
  file: string;
  sha256: string;
  size: number;
  /** `sha256:<hex>` of the image config: the image ID docker prints. */
  imageId: string;
  /** `sha256:<hex>` of each uncompressed layer (the config's rootfs.diff_ids). */
  diffIds: string[];
}

/** Split `name:tag` (the tag after the last `:` that follows the last `/`). */
export function splitRef(ref: string): { repository: string; tag: string } {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon <= slash) return { repository: ref, tag: 'latest' };
  return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
}

async function digestOf(source: LayerSource): Promise<{ hex: string; size: number }> {
  if ('data' in source) return { hex: createHash('sha256').update(source.data).digest('hex'), size: source.data.length };
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(source.file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { hex: hash.digest('hex'), size };
}

/** The image config JSON (OCI/Docker image spec v1) for layers with these diff IDs. */
export function imageConfigJson(settings: ImageSettings, diffIds: string[]): string {
  const created = new Date(settings.created * 1000).toISOString().replace('.000Z', 'Z');
  const config = {
    architecture: settings.architecture ?? 'amd64',
    os: 'linux',
    created,
    config: { Env: settings.env, Entrypoint: settings.entrypoint, Labels: settings.labels },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: settings.history.map((createdBy) => ({ created, created_by: createdBy })),
  };
  return JSON.stringify(config);
}

/**
 * Write the archive to `out` (atomically: temp file, fsync, rename). Layers on disk are
 * streamed, never held in memory.
 */
export async function writeDockerArchive(out: string, layers: LayerSource[], settings: ImageSettings): Promise<DockerArchive> {
  if (layers.length === 0 || layers.length !== settings.history.length) {
    throw new ApplianceError('ERR_IMAGE_BUILD', 'an image needs at least one layer and one history line per layer');
  }
  const digests = await Promise.all(layers.map(digestOf));
  const diffIds = digests.map((d) => `sha256:${d.hex}`);
  const configJson = Buffer.from(imageConfigJson(settings, diffIds));
  const configHex = createHash('sha256').update(configJson).digest('hex');
  const { repository, tag } = splitRef(settings.ref);
  const layerPaths = digests.map((d) => `${d.hex}/layer.tar`);
  const manifest = Buffer.from(JSON.stringify([{ Config: `${configHex}.json`, RepoTags: [`${repository}:${tag}`], Layers: layerPaths }]));
  const repositories = Buffer.from(JSON.stringify({ [repository]: { [tag]: digests.at(-1)!.hex } }));
  const mtime = settings.created;

  const tmp = tempPathFor(out);
  const fh = await open(tmp, 'wx', 0o644);
  const hash = createHash('sha256');
  const put = async (buf: Buffer): Promise<void> => {
    if (buf.length === 0) return;
    hash.update(buf);
    await fh.write(buf);
  };
  const putFile = async (name: string, data: Buffer): Promise<void> => {
    await put(encodeTarHeader({ name, type: 'file', mode: 0o644, size: data.length, mtime }));
    await put(data);
    await put(tarPadding(data.length));
  };
  try {
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i]!;
      const d = digests[i]!;
      await put(encodeTarHeader({ name: `${d.hex}/`, type: 'directory', mode: 0o755, size: 0, mtime }));
      await put(encodeTarHeader({ name: layerPaths[i]!, type: 'file', mode: 0o644, size: d.size, mtime }));
      if ('data' in layer) await put(layer.data);
      else {
        let copied = 0;
        for await (const chunk of createReadStream(layer.file, { highWaterMark: 1 << 20 })) {
          copied += (chunk as Buffer).length;
          await put(chunk as Buffer);
        }
        // The layer changed between hashing and copying: its diff ID would be a lie.
        if (copied !== d.size) throw new ApplianceError('ERR_IMAGE_BUILD', `layer ${layer.file} changed while the image was written`);
      }
      await put(tarPadding(d.size));
    }
    await putFile(`${configHex}.json`, configJson);
    await putFile('manifest.json', manifest);
    await putFile('repositories', repositories);
    await put(TAR_END);
    await fh.sync();
    await fh.close();
    await rename(tmp, out);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(path.dirname(out));
  const st = await stat(out);
  return { file: out, sha256: hash.digest('hex'), size: st.size, imageId: `sha256:${configHex}`, diffIds };
}
