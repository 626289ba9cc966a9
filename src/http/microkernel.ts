/**
 * The microkernel part of a RancherOS cloud-config (RackHD/Hanlon pattern, docs/NETBOOT-FACTS.md section 6):
 * `/etc/rc.local` written by `write_files` waits for docker, downloads an image tarball from
 * this appliance by IP literal, checks the sha256 the appliance computed, `docker load`s it and
 * runs it privileged with host networking and the host's /proc, /dev and /sys read-only.
 * Docker must not be driven from `runcmd` on RancherOS (it runs before docker is up), hence
 * rc.local and `wait-for-docker`. The script is built here, not in a template, so every value
 * is shell-quoted in one place; templates place it with `| yaml`.
 */
import { MicrokernelSchema, type VarValue } from '../store/schema.js';
import { resolveAsset, type DigestCache } from './asset-files.js';
import { baseUrl, type ServerAddress } from './render.js';

/** Container name when `vars.microkernel.name` is not given. */
export const DEFAULT_MICROKERNEL_NAME = 'microkernel';

/** Quote `s` as one POSIX shell word (single quotes; a quote becomes '\''). */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Everything the rc.local script needs, already validated. */
export interface MicrokernelPlan {
  /** Container name. */
  name: string;
  /** `/assets/...` path of the tarball. */
  image: string;
  /** Absolute URL of the tarball on this appliance (IP literal). */
  imageUrl: string;
  /** Hex sha256 of the tarball, computed by the appliance. */
  sha256: string;
  size: number;
  /** Image to run; '' means "what docker load reports". */
  ref: string;
  /** Environment for the container, APPLIANCE_URL, MACHINE_MAC and FACTS_TOKEN first. */
  env: Array<[string, string]>;
}

/** The outcome of looking at `vars.microkernel` for one machine. */
export type MicrokernelResolution = { kind: 'off' } | { kind: 'ready'; plan: MicrokernelPlan } | { kind: 'missing'; image: string; warning: string };

/**
 * Resolve `vars.microkernel` for a machine: off (unset or null), ready (tarball found and
 * hashed), or missing (with a one-line warning for the cloud-config and the log).
 */
export async function resolveMicrokernel(args: {
  vars: Record<string, VarValue>;
  server: ServerAddress;
  mac: string;
  assetsDir: string;
  digests: DigestCache;
  /** This boot's facts token, passed to the container as FACTS_TOKEN (boot-sessions.ts). */
  factsToken?: string | undefined;
}): Promise<MicrokernelResolution> {
  const raw = args.vars.microkernel;
  if (raw === undefined || raw === null) return { kind: 'off' };
  const parsed = MicrokernelSchema.safeParse(raw);
  if (!parsed.success) {
    // The store validates vars on every write and read; this guards templates against a
    // future path that skips it.
    return {
      kind: 'missing',
      image: '(invalid)',
      warning: `vars.microkernel is invalid (${parsed.error.issues[0]?.message ?? 'bad value'}); booting without the microkernel`,
    };
  }
  const mk = parsed.data;
  const found = await resolveAsset(args.assetsDir, mk.image.slice('/assets/'.length));
  let digest: { sha256: string; size: number } | undefined;
  if (found) {
    try {
      digest = await args.digests.sha256(found.file);
    } catch {
      digest = undefined;
    }
  }
  if (!found || !digest) {
    return {
      kind: 'missing',
      image: mk.image,
      warning: `microkernel image ${mk.image} is missing on the appliance; this machine boots without it (run: node bin/appliance build microkernel)`,
    };
  }
  const base = baseUrl(args.server);
  return {
    kind: 'ready',
    plan: {
      name: mk.name ?? DEFAULT_MICROKERNEL_NAME,
      image: mk.image,
      // ?mac= attributes the download to this machine in the boot timeline, even behind NAT.
      imageUrl: `${base}${mk.image}?mac=${args.mac}`,
      sha256: digest.sha256,
      size: digest.size,
      ref: mk.ref ?? '',
      env: [
        ['APPLIANCE_URL', base],
        ['MACHINE_MAC', args.mac],
        ...(args.factsToken !== undefined ? ([['FACTS_TOKEN', args.factsToken]] as Array<[string, string]>) : []),
        ...Object.entries(mk.env ?? {}),
      ],
    },
  };
}

/** The `docker run` arguments (after `docker run`), shell-quoted where values vary. */
export function dockerRunArgs(plan: MicrokernelPlan): string {
  return [
    '-d',
    `--name ${shQuote(plan.name)}`,
    // Privileged with the host's network, /proc, /dev and /sys (read-only) so the agent sees
    // the hardware: dmidecode, lsblk and the NICs (RackHD/Hanlon microkernel pattern).
    '--privileged',
    '--net=host',
    '-v /proc:/host-proc:ro',
    '-v /dev:/host-dev:ro',
    '-v /sys:/host-sys:ro',
    ...plan.env.map(([k, v]) => `-e ${shQuote(`${k}=${v}`)}`),
    '"$ref"',
  ].join(' ');
}

/**
 * The `/etc/rc.local` that starts the microkernel. POSIX sh (busybox-compatible); paths may be
 * overridden from the environment (NETBOOT_MK_DIR, NETBOOT_MK_LOG, NETBOOT_KMSG) so tests can
 * run it unprivileged against stub `docker` and `wait-for-docker` commands.
 */
export function renderMicrokernelScript(plan: MicrokernelPlan): string {
  return `#!/bin/sh
# netboot-appliance: start microkernel ${plan.name} (written by cloud-config).
# RancherOS runs /etc/rc.local once at boot, before docker is up: hence wait-for-docker.
IMAGE_URL=${shQuote(plan.imageUrl)}
IMAGE_SHA256=${shQuote(plan.sha256)}
IMAGE_REF=${shQuote(plan.ref)}
: "\${NETBOOT_MK_DIR:=/var/lib/netboot-microkernel}"
: "\${NETBOOT_MK_LOG:=/var/log/netboot-microkernel.log}"
: "\${NETBOOT_KMSG:=/dev/kmsg}"
TARBALL="$NETBOOT_MK_DIR/image.tar"
log() {
  echo "netboot-microkernel: $*" >>"$NETBOOT_MK_LOG"
  # printk.devkmsg=on on the kernel command line lets this reach the serial console.
  echo "netboot-microkernel: $*" >"$NETBOOT_KMSG" 2>/dev/null || true
}
fetch() {
  if command -v wget >/dev/null 2>&1; then wget -q -O "$2" "$1"; else curl -fsS -o "$2" "$1"; fi
}
mkdir -p "$NETBOOT_MK_DIR"
log "waiting for docker"
wait-for-docker
tries=0
until fetch "$IMAGE_URL" "$TARBALL"; do
  tries=$((tries + 1))
  if [ "$tries" -ge 10 ]; then log "cannot download $IMAGE_URL; giving up"; exit 1; fi
  sleep 3
done
if ! echo "$IMAGE_SHA256  $TARBALL" | sha256sum -c - >/dev/null 2>&1; then
  log "sha256 of $IMAGE_URL is not $IMAGE_SHA256; refusing to load it"
  rm -f "$TARBALL"
  exit 1
fi
if ! out=$(docker load -i "$TARBALL"); then log "docker load failed"; rm -f "$TARBALL"; exit 1; fi
rm -f "$TARBALL"
ref="$IMAGE_REF"
if [ -z "$ref" ]; then
  ref=$(printf '%s\\n' "$out" | sed -n -e 's/^Loaded image: //p' -e 's/^Loaded image ID: //p' | tail -n 1)
fi
if [ -z "$ref" ]; then log "docker load named no image; set vars.microkernel.ref"; exit 1; fi
docker rm -f ${shQuote(plan.name)} >/dev/null 2>&1 || true
if docker run ${dockerRunArgs(plan)} >/dev/null; then
  log "started ${plan.name} ($ref)"
else
  log "docker run ${plan.name} ($ref) failed"
  exit 1
fi
`;
}
