/**
 * The shape of the appliance database (one JSON file, hand-editable): profiles, machines,
 * groups and the default profile. These zod schemas are the single source of truth: the file
 * store validates every read and every write with them, the API answers 422 naming the first
 * failing field, and the published JSON Schema (`schema/appliance-db.schema.json`,
 * `GET /api/schema`) is generated from them.
 */
import { z } from 'zod';
import { ApplianceError } from '../errors.js';
import { normalizeMac } from '../events.js';
import { FACT_SELECTOR_LIMITS, parseFactSelector, type FactValue } from './fact-selector.js';
import { cmdlineIssues, ipxeTokenProblem } from './cmdline.js';
import { machineProfileIssues, machineVarIssues } from './profile-vars.js';

/** The built-in profile that leaves iPXE for the next boot device (lifecycle.ts); always a valid reference. */
export const LOCAL_DISK_PROFILE_ID = 'local-disk';

/**
 * Characters of values the appliance itself (not the operator) places in iPXE scripts: names it
 * derives from files and request values. Operator values follow cmdline.ts instead, which
 * accepts everything iPXE passes through unchanged.
 */
export const IPXE_SAFE = /^[A-Za-z0-9._~:/?=,+@%\-[\]()!*^]+$/;

/** Profile and group ids: short, lowercase, safe in URLs, file names and iPXE scripts. */
export const IdSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be 1-63 chars of a-z 0-9 . _ - starting with a letter or digit');

/** A MAC address, any case, `:` or `-` separated; stored lowercase colon-separated. */
export const MacSchema = z.string().regex(/^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$/, 'must be a MAC address like 52:54:00:12:34:56');

/** An SMBIOS UUID in the 8-4-4-4-12 form iPXE prints for `${uuid}`. */
export const UuidSchema = z
  .string()
  .regex(/^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/, 'must be a UUID like 8-4-4-4-12 hex digits');

/** RFC 1123 host name (labels of letters, digits and hyphens, dot-separated). */
export const HostnameSchema = z
  .string()
  .max(253)
  .regex(
    /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/,
    'must be an RFC 1123 host name (letters, digits, hyphens, dots)',
  );

/** A template file name inside the operator's templates directory (no directories). */
export const TemplateNameSchema = z
  .string()
  .regex(/^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a file name in the templates directory (no slashes, no "..")');

/** Label keys and values: Kubernetes-like, safe anywhere. */
const LabelKey = z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9._/-]{0,62})$/, 'label keys are 1-63 chars of A-Z a-z 0-9 . _ / -');
const LabelValue = z.string().regex(/^[A-Za-z0-9._-]{0,63}$/, 'label values are up to 63 chars of A-Z a-z 0-9 . _ -');
/** Machine labels, matched by group selectors. */
export const LabelsSchema = z.record(LabelKey, LabelValue);

/** A string that carries no control character, line break or Unicode line separator. */
const SafeString = z
  .string()
  .max(16_384)
  .regex(/^[^\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]*$/, 'must not contain control characters or line breaks');

/** Variable names: identifiers, so templates can write `vars.name`. */
const VarKey = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'variable names are identifiers (A-Z a-z 0-9 _)');
/** A JSON value usable as a template variable: strings carry no control characters. */
export type VarValue = string | number | boolean | null | VarValue[] | { [key: string]: VarValue };
/** Schema of one template variable value (recursive JSON). */
export const VarValueSchema: z.ZodType<VarValue> = z.lazy(() =>
  z.union([SafeString, z.number(), z.boolean(), z.null(), z.array(VarValueSchema), z.record(VarKey, VarValueSchema)]),
);
/** Environment variable names the microkernel container gets from the appliance itself. */
export const RESERVED_MICROKERNEL_ENV = ['APPLIANCE_URL', 'MACHINE_MAC'] as const;

/** A path below `/assets/` without `.`/`..` segments (the file is served by this appliance). */
const AssetPath = z
  .string()
  .max(1024)
  .regex(
    /^\/assets\/(?!\.{1,2}(\/|$))(?!.*\/\.{1,2}(\/|$))[A-Za-z0-9._~:/=,+@%-]+$/,
    'must be /assets/<path> of letters, digits and . _ ~ : / = , + @ % - (no . or .. segments)',
  );

/**
 * `vars.microkernel`: a docker image tarball (from `docker save`) under `/assets/` that the
 * RancherOS cloud-config fetches, checks (sha256 computed by the appliance), loads and runs
 * privileged with the host's /proc, /dev and /sys mounted read-only (NETBOOT-FACTS §6).
 * `null` in a machine's vars switches off a profile's microkernel for that machine.
 */
export const MicrokernelSchema = z
  .object({
    image: AssetPath.describe('image tarball under /assets/ (docker save output, optionally gzip/xz/bzip2-compressed)'),
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'container names are 1-63 chars of A-Z a-z 0-9 _ . - starting with a letter or digit')
      .optional()
      .describe('container name (default "microkernel")'),
    ref: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/, 'must be a docker image reference like netboot/discovery:1')
      .optional()
      .describe('image to run after docker load (default: the image the tarball says it loaded)'),
    env: z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'environment variable names are A-Z a-z 0-9 _ not starting with a digit'),
        SafeString.max(4096),
      )
      .superRefine((env, ctx) => {
        for (const k of RESERVED_MICROKERNEL_ENV) {
          if (k in env) ctx.addIssue({ code: 'custom', path: [k], message: `${k} is set by the appliance; choose another name` });
        }
        if (Object.keys(env).length > 64) ctx.addIssue({ code: 'custom', path: [], message: 'at most 64 environment variables' });
      })
      .optional()
      .describe('extra environment for the container (APPLIANCE_URL and MACHINE_MAC are always set)'),
  })
  .strict();

/**
 * Template variables (profile vars, machine vars; machine wins). Any identifier may hold any
 * JSON value; the names the shipped RancherOS templates use are checked here so mistakes are
 * refused at write time rather than at boot.
 */
export const VarsSchema = z
  .object({
    microkernel: MicrokernelSchema.nullable().optional(),
    ssh_authorized_keys: z.array(SafeString).max(256).optional().describe('public keys for the rancher user'),
    password: z
      .string()
      .max(256)
      .superRefine((v, ctx) => {
        const p = ipxeTokenProblem(`rancher.password=${v}`);
        if (p) ctx.addIssue({ code: 'custom', message: `goes on the kernel command line (rancher.password=) and ${p}` });
      })
      .optional()
      .describe('rancher user password (kernel command line, visible in /proc/cmdline)'),
    autologin: z
      .string()
      .regex(/^tty[A-Za-z0-9]{1,16}$/, 'must be a console name like ttyS0 or tty1')
      .nullable()
      .optional()
      .describe('console with automatic login (rancher.autologin=); null switches it off'),
  })
  .catchall(VarValueSchema)
  .superRefine((vars, ctx) => {
    for (const key of Object.keys(vars)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key)) ctx.addIssue({ code: 'custom', path: [key], message: 'variable names are identifiers (A-Z a-z 0-9 _)' });
    }
  });
/** Validated `vars.microkernel`. */
export type Microkernel = z.output<typeof MicrokernelSchema>;

/** Limits on what a machine may report about itself (POST /api/machines/:mac/facts). */
export const FACTS_LIMITS = { depth: 8, nodes: 4096, keysPerObject: 256, arrayItems: 512, stringLength: 4096 } as const;

const FactKey = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,63}$/, 'fact names are 1-64 chars of A-Z a-z 0-9 _ . : @ -');
const FactValueSchema: z.ZodType<FactValue> = z.lazy(() =>
  z.union([
    z.string().max(FACTS_LIMITS.stringLength),
    z.number(),
    z.boolean(),
    z.null(),
    z.array(FactValueSchema).max(FACTS_LIMITS.arrayItems),
    z.record(FactKey, FactValueSchema),
  ]),
);

/** Walk a JSON value and report where it exceeds the depth, node or key limits. */
function checkFactsShape(value: unknown, ctx: z.RefinementCtx): void {
  let nodes = 0;
  const walk = (v: unknown, path: (string | number)[]): boolean => {
    if (++nodes > FACTS_LIMITS.nodes) {
      ctx.addIssue({ code: 'custom', path, message: `facts hold more than ${FACTS_LIMITS.nodes} values` });
      return false;
    }
    if (v === null || typeof v !== 'object') return true;
    if (path.length >= FACTS_LIMITS.depth) {
      ctx.addIssue({ code: 'custom', path, message: `facts nest deeper than ${FACTS_LIMITS.depth} levels` });
      return false;
    }
    const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
    if (!Array.isArray(v) && entries.length > FACTS_LIMITS.keysPerObject) {
      ctx.addIssue({ code: 'custom', path, message: `an object in the facts has more than ${FACTS_LIMITS.keysPerObject} keys` });
      return false;
    }
    for (const [k, x] of entries) if (!walk(x, [...path, k])) return false;
    return true;
  };
  walk(value, []);
}

/**
 * Facts a machine reported (the reference agent's shape is in agent/README.md, but any JSON
 * object within FACTS_LIMITS is accepted). Stored as reported; never placed in templates.
 */
export const FactsSchema = z.record(FactKey, FactValueSchema).superRefine(checkFactsShape);
/** Validated facts. */
export type Facts = z.output<typeof FactsSchema>;

/** IPXE_SAFE's characters, for building path patterns. */
const TOKEN_CHARS = 'A-Za-z0-9._~:/=,+@%()!*^\\[\\]\\-';
/**
 * Where a kernel or initrd comes from: `/assets/...` (served by this appliance from
 * `--assets`; plain path characters, since the appliance resolves it itself) or an absolute
 * `http(s)://` URL, which iPXE fetches and may hold iPXE settings (`${buildarch}`) and a query
 * (`?a=1&b=2`): anything that is one iPXE argument (cmdline.ts).
 */
export const BootFileSchema = z
  .string()
  .max(2048)
  .regex(
    new RegExp(`^(/assets/(?!\\.{1,2}(/|$))(?!.*/\\.{1,2}(/|$))[${TOKEN_CHARS}]+|https?://[^/?#\\s]+([/?].*)?)$`),
    'must be /assets/<path> of plain path characters (no . or .. segments) or an http(s):// URL',
  )
  .superRefine((v, ctx) => {
    const p = ipxeTokenProblem(v);
    if (p) ctx.addIssue({ code: 'custom', message: `goes on an iPXE command line and ${p}` });
  });

/**
 * One kernel argument value: a string (may use `{{ address }}` style placeholders), number or
 * boolean; a list repeats the key (`console: ["tty0", "ttyS0,115200n8"]`).
 */
const CmdlineScalar = z.union([z.string().max(4096), z.number(), z.boolean()]);
const CmdlineValue = z.union([CmdlineScalar, z.array(CmdlineScalar).max(16)]);
/**
 * The kernel command line: `{ key: value | "" }` ("" means a bare flag) or one string. Every
 * argument must be one iPXE token (cmdline.ts): `$`, `{}`, `?`, `&`, `;`, `=`, `[]`, `:`, `/`,
 * `%`, `,` are fine, and `${uuid}`-style iPXE settings reach iPXE unchanged.
 */
export const CmdlineSchema = z
  .union([
    z.string().max(8192),
    z.record(
      z
        .string()
        .regex(
          /^[A-Za-z0-9_][A-Za-z0-9._/\-[\]]{0,127}$/,
          'kernel parameter names are A-Z a-z 0-9 . _ - / [ ] (d-i preseeds questions as netcfg/get_hostname=...)',
        ),
      CmdlineValue,
    ),
  ])
  .superRefine((cmdline, ctx) => {
    for (const issue of cmdlineIssues(cmdline)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  });

/**
 * Boot loaders a UEFI machine can be handed: `ipxe` (the default: HTTP, scripts) or `grub`
 * (Debian's signed network grub, TFTP only; the only choice for ARM64 without an iPXE build,
 * and what Secure Boot runs behind shim).
 */
export const BOOT_LOADERS = ['ipxe', 'grub'] as const;
/** Boot loader choice; machine wins over group, group over profile (src/boot/loader.ts). */
const BootLoaderSchema = z.enum(BOOT_LOADERS).optional().describe("ipxe (default) or grub; grub scripts are rendered from the profile's grub template");
/** Secure Boot choice; machine wins over group over profile over --secure-boot. */
const SecureBootSchema = z
  .boolean()
  .optional()
  .describe('UEFI firmware must boot signed code: DHCP hands out shim, which loads signed grub; the profile must name a signed kernel');

/** A boot profile: what a machine boots. */
export const ProfileSchema = z
  .object({
    id: IdSchema,
    name: SafeString.optional(),
    kernel: BootFileSchema,
    initrd: z.array(BootFileSchema).max(16).default([]),
    cmdline: CmdlineSchema.default(''),
    ipxe: TemplateNameSchema.optional().describe('iPXE template in the templates directory (default profile.ipxe.njk)'),
    cloudConfig: TemplateNameSchema.optional().describe('cloud-config template in the templates directory (default cloud-config.yaml.njk)'),
    grub: TemplateNameSchema.optional().describe('grub template in the templates directory (default profile.grub.njk)'),
    bootloader: BootLoaderSchema,
    secureBoot: SecureBootSchema,
    preseed: TemplateNameSchema.optional().describe('Debian installer preseed template served at /preseed?mac= (default debian.preseed.njk)'),
    ignition: TemplateNameSchema.optional().describe('Ignition template served at /ignition (matchbox)'),
    generic: TemplateNameSchema.optional().describe('template served at /generic (matchbox)'),
    vars: VarsSchema.optional(),
  })
  .strict()
  .superRefine((profile, ctx) => {
    if (!profile.vars) return;
    for (const issue of machineVarIssues(profile, profile.vars)) ctx.addIssue({ code: 'custom', path: ['vars', ...issue.path], message: issue.message });
  });

/** Lifecycle states of a machine. */
export const MACHINE_STATES = ['discovered', 'ready', 'provisioning', 'provisioned', 'failed', 'retired'] as const;

/** A secret the appliance generates (one-shot callback tokens): 32 hex digits. */
const TokenSchema = z.string().regex(/^[0-9a-f]{32}$/, 'must be 32 lowercase hex digits (generated by the appliance)');

/**
 * A one-shot boot (`POST /api/machines/:mac/boot` with `once`): the next /ipxe request of the
 * machine gets `profile`, then the record's own selection applies again. `token` authenticates
 * the callback that ends the provisioning it starts; it is never shown by API reads.
 */
export const NextBootSchema = z
  .object({
    profile: IdSchema,
    setAt: z.iso.datetime(),
    token: TokenSchema.optional(),
  })
  .strict();

/** A provisioning in progress: started by a one-shot boot, ended by the callback. */
export const ProvisioningSchema = z
  .object({
    profile: IdSchema,
    since: z.iso.datetime(),
    token: TokenSchema.optional(),
  })
  .strict();

/**
 * The machine's BMC (IPMI over LAN, driven with ipmitool). The password is stored in the
 * operator's database file and never shown by API reads.
 */
export const BmcSchema = z
  .object({
    address: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$/, 'must be the BMC IP address or host name'),
    port: z.number().int().min(1).max(65535).optional().describe('RMCP port (default 623)'),
    user: z
      .string()
      .min(1)
      .max(16)
      .regex(/^[^\u0000-\u001f\u007f]*$/, 'no control characters')
      .describe('IPMI user name (at most 16 bytes)'),
    password: z
      .string()
      .max(20)
      .regex(/^[^\u0000-\u001f\u007f]*$/, 'no control characters')
      .optional()
      .describe('IPMI password (at most 20 bytes; never returned by the API)'),
    interface: z.enum(['lanplus', 'lan']).optional().describe('ipmitool interface (default lanplus, IPMI 2.0)'),
    cipherSuite: z.number().int().min(0).max(17).optional().describe('lanplus cipher suite (ipmitool -C; default 3)'),
  })
  .strict();

/** A known machine, keyed by MAC. */
export const MachineSchema = z
  .object({
    mac: MacSchema,
    uuid: UuidSchema.optional(),
    hostname: HostnameSchema.optional(),
    profile: IdSchema.optional(),
    labels: LabelsSchema.optional(),
    vars: VarsSchema.optional(),
    ip: z.ipv4().optional().describe('static address reservation (used by the DHCP server mode)'),
    state: z.enum(MACHINE_STATES).optional(),
    nextBoot: NextBootSchema.optional().describe('one-shot boot waiting for the next /ipxe request (POST /api/machines/:mac/boot)'),
    provisioning: ProvisioningSchema.optional().describe('the one-shot boot in progress, ended by POST /api/machines/:mac/callback'),
    bmc: BmcSchema.optional().describe('IPMI BMC for POST /api/machines/:mac/power'),
    bootloader: BootLoaderSchema,
    secureBoot: SecureBootSchema,
  })
  .strict();

/**
 * Runtime fields machine records carried before they moved to the state store (state-store.ts).
 * A file holding them is migrated once at start; afterwards they are unknown fields.
 */
export const LEGACY_RUNTIME_FIELDS = ['facts', 'factsAt', 'lastSeenIp', 'discoveredAt'] as const;

/** A group: machines matching the selector boot `profile`. */
export const GroupSchema = z
  .object({
    id: IdSchema,
    name: SafeString.optional(),
    profile: IdSchema,
    selector: z
      .object({
        mac: MacSchema.optional(),
        uuid: UuidSchema.optional(),
        arch: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,32}$/, 'arch is an iPXE ${buildarch} such as x86_64, i386, arm64')
          .optional(),
        labels: LabelsSchema.optional(),
        facts: z
          .array(
            z.string().superRefine((src, ctx) => {
              try {
                parseFactSelector(src);
              } catch (err) {
                ctx.addIssue({ code: 'custom', message: (err as Error).message });
              }
            }),
          )
          .max(FACT_SELECTOR_LIMITS.expressions)
          .optional()
          .describe('fact expressions that must all hold, e.g. "dmi.vendor == QEMU", "cpu.count >= 4" (README: fact selectors)'),
      })
      .strict()
      .default({}),
    bootloader: BootLoaderSchema,
    secureBoot: SecureBootSchema,
    metadata: z.record(VarKey, VarValueSchema).optional().describe('values served at /metadata and given to templates as metadata (matchbox)'),
  })
  .strict();

/** The whole database file. */
export const DbSchema = z
  .object({
    $schema: z.string().optional(),
    defaultProfile: IdSchema.optional().describe('profile booted by machines that match nothing else'),
    profiles: z.array(ProfileSchema).default([]),
    machines: z.array(MachineSchema).default([]),
    groups: z.array(GroupSchema).default([]),
  })
  .strict()
  .superRefine((db, ctx) => {
    const dup = (list: string[], path: (i: number) => (string | number)[], what: string): void => {
      const seen = new Set<string>();
      list.forEach((key, i) => {
        if (seen.has(key)) ctx.addIssue({ code: 'custom', path: path(i), message: `duplicate ${what} ${key}` });
        seen.add(key);
      });
    };
    dup(
      db.profiles.map((p) => p.id),
      (i) => ['profiles', i, 'id'],
      'profile id',
    );
    dup(
      db.groups.map((g) => g.id),
      (i) => ['groups', i, 'id'],
      'group id',
    );
    dup(
      db.machines.map((m) => normalizeMac(m.mac) ?? m.mac),
      (i) => ['machines', i, 'mac'],
      'machine mac',
    );
    dup(
      db.machines.map((m, i) => (m.uuid ? m.uuid.toLowerCase() : `#${i}`)),
      (i) => ['machines', i, 'uuid'],
      'machine uuid',
    );
    // Every rule that would refuse at boot refuses here instead (the API answers 422, a hand
    // edit is refused with its line and column).
    // The built-in local-disk profile (lifecycle.ts) is always there.
    const profiles = new Set([...db.profiles.map((p) => p.id), LOCAL_DISK_PROFILE_ID]);
    const missing = (id: string): string => `profile "${id}" does not exist (profiles: ${[...profiles].slice(0, 10).join(', ') || 'none'})`;
    if (db.defaultProfile !== undefined && !profiles.has(db.defaultProfile))
      ctx.addIssue({ code: 'custom', path: ['defaultProfile'], message: missing(db.defaultProfile) });
    db.machines.forEach((m, i) => {
      if (m.profile !== undefined && !profiles.has(m.profile)) ctx.addIssue({ code: 'custom', path: ['machines', i, 'profile'], message: missing(m.profile) });
    });
    db.groups.forEach((g, i) => {
      if (!profiles.has(g.profile)) ctx.addIssue({ code: 'custom', path: ['groups', i, 'profile'], message: missing(g.profile) });
    });
    const reserved = new Map<string, string>();
    db.machines.forEach((m, i) => {
      if (m.ip === undefined) return;
      const other = reserved.get(m.ip);
      if (other !== undefined) ctx.addIssue({ code: 'custom', path: ['machines', i, 'ip'], message: `${m.ip} is already reserved by machine ${other}` });
      else reserved.set(m.ip, normalizeMac(m.mac) ?? m.mac);
    });
    // What the cmdline of the profile each machine names needs from it (profile-vars.ts).
    for (const issue of machineProfileIssues(db)) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  });

/** A validated profile (defaults applied: `initrd` [], `cmdline` ''). */
export type Profile = z.output<typeof ProfileSchema>;
/** A validated machine record. */
export type Machine = z.output<typeof MachineSchema>;
/** A machine's BMC settings. */
export type Bmc = z.output<typeof BmcSchema>;
/** A validated group. */
export type Group = z.output<typeof GroupSchema>;
/** The validated database document. */
export type Db = z.output<typeof DbSchema>;
/** Profile as accepted by the API and the file (defaults not yet applied). */
export type ProfileInput = z.input<typeof ProfileSchema>;
/** Machine as accepted by the API and the file. */
export type MachineInput = z.input<typeof MachineSchema>;
/** Group as accepted by the API and the file. */
export type GroupInput = z.input<typeof GroupSchema>;
/** Database document as written by people (defaults not yet applied). */
export type DbInput = z.input<typeof DbSchema>;

/** Render a zod path as `machines.3.mac` (empty path is the document root). */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(root)' : path.map((p) => String(p)).join('.');
}

/**
 * Validate `value` against `schema`; on failure throw ERR_VALIDATION naming the first failing
 * field (zod path, prefixed by `prefix`), e.g. `profiles.0.kernel: must be /assets/...`.
 */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  prefix: (string | number)[] = [],
  format: (path: readonly PropertyKey[]) => string = formatPath,
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.slice(0, MAX_REPORTED_ISSUES).map((issue) => {
    const path = [...prefix, ...issue.path] as (string | number)[];
    // A record key that fails its pattern carries the useful message one level down.
    const keyIssue = issue.code === 'invalid_key' ? issue.issues[0] : undefined;
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`
        : keyIssue
          ? `invalid name: ${keyIssue.message}`
          : issue.message;
    // Unknown keys are reported at the key itself, so a line/column points at it.
    const at = issue.code === 'unrecognized_keys' && issue.keys.length > 0 ? [...path, issue.keys[0]!] : path;
    return { field: format(path), path: at, message };
  });
  const first = issues[0]!;
  const more = result.error.issues.length > 1 ? ` (and ${result.error.issues.length - 1} more problem${result.error.issues.length > 2 ? 's' : ''})` : '';
  // `total` counts every problem, `issues` only the first MAX_REPORTED_ISSUES of them.
  throw new ApplianceError('ERR_VALIDATION', `${first.field}: ${first.message}${more}`, { field: first.field, issues, total: result.error.issues.length });
}

/** How many problems one refusal reports (a broken hand edit lists them all up to this). */
export const MAX_REPORTED_ISSUES = 20;

/** Put MACs and UUIDs into their canonical lowercase forms (after validation). */
export function canonicalizeMachine(m: Machine): Machine {
  return { ...m, mac: normalizeMac(m.mac) ?? m.mac, ...(m.uuid ? { uuid: m.uuid.toLowerCase() } : {}) };
}

/** Canonical group: selector MAC/UUID lowercase. */
export function canonicalizeGroup(g: Group): Group {
  const sel = { ...g.selector };
  if (sel.mac) sel.mac = normalizeMac(sel.mac) ?? sel.mac;
  if (sel.uuid) sel.uuid = sel.uuid.toLowerCase();
  return { ...g, selector: sel };
}

/** Validate a whole database document and canonicalize it; throws ERR_VALIDATION naming the field. */
export function parseDb(value: unknown): Db {
  // Machines are named by MAC in messages (`machines[52:54:00:12:34:56].profile`): an index
  // means nothing to someone editing a file of 200 machines.
  const list = value && typeof value === 'object' ? (value as { machines?: unknown }).machines : undefined;
  const macOf = (i: unknown): string | undefined => {
    const m = Array.isArray(list) && typeof i === 'number' ? (list[i] as { mac?: unknown } | undefined)?.mac : undefined;
    return typeof m === 'string' ? (normalizeMac(m) ?? undefined) : undefined;
  };
  const format = (path: readonly PropertyKey[]): string => {
    if (path[0] === 'machines' && macOf(path[1]) !== undefined) return formatPath([`machines[${macOf(path[1])}]`, ...path.slice(2)]);
    return formatPath(path);
  };
  const db = parseOrThrow(DbSchema, value, [], format);
  return { ...db, machines: db.machines.map(canonicalizeMachine), groups: db.groups.map(canonicalizeGroup) };
}

/**
 * The JSON Schema (draft 2020-12) of the database file, generated from the zod schemas. Input
 * mode: fields with defaults are optional, as they are for people editing the file.
 */
export function dbJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(DbSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    ...schema,
    $id: 'https://netboot-appliance.invalid/schema/appliance-db.schema.json',
    title: 'netboot-appliance database',
  };
}
