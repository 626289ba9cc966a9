/**
 * Rendering of iPXE scripts and cloud-configs. Templates are nunjucks files from the operator's
 * templates directory only (nunjucks is not sandboxed: a template can run code, so templates
 * are never taken from the database or a request). Values that reach a template are checked
 * first: every operator value in an iPXE context is one iPXE argument by iPXE's own tokenizer
 * (store/cmdline.ts: no whitespace, control characters or quotes, no `#`-leading, `||`, `&&`
 * or `;` token, no final `\`), request values are plain words, MACs and UUIDs, and cloud-config
 * values are placed with the `yaml` filter, which always emits a quoted scalar, so no value can
 * inject an iPXE command, add a kernel argument or break the YAML.
 */
import nunjucks from 'nunjucks';
import path from 'node:path';
import { ApplianceError } from '../errors.js';
import { ipxeEchoText, ipxeTokenProblem, PLACEHOLDER, splitCmdline } from '../store/cmdline.js';
import { IPXE_SAFE, type Machine, type Profile, type VarValue } from '../store/schema.js';

export { ipxeEchoText } from '../store/cmdline.js';
import type { SelectedVia } from '../store/select.js';

/** Renders named templates from one directory. */
export interface Renderer {
  /** Render `name` with `context`; throws ERR_TEMPLATE (with the template name) on any failure. */
  render(name: string, context: Record<string, unknown>): string;
}

/**
 * Quote a value as a YAML scalar: JSON-style double-quoted strings (valid YAML 1.1 and 1.2),
 * with every control character, NEL, U+2028/U+2029 and BOM escaped, since YAML 1.1 parsers
 * (go-yaml v2 in RancherOS) treat some of those as line breaks. Non-strings become JSON flow.
 */
export function yamlQuote(value: unknown): string {
  const json = JSON.stringify(value === undefined ? null : value) ?? 'null';
  return json.replace(/[\u007f-\u009f\u2028\u2029\ufeff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Text for the rest of a YAML comment line: every character YAML 1.1 or 1.2 could read as a
 * line break (CR, LF, NEL, U+2028/U+2029) and every other control character becomes a space.
 */
export function yamlComment(value: unknown): string {
  return String(value).replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]/g, ' ');
}

/** Throw ERR_UNSAFE_VALUE unless `value` is one iPXE argument (store/cmdline.ts). */
export function assertIpxeSafe(value: string, what: string): string {
  const problem = ipxeTokenProblem(value);
  if (problem) throw new ApplianceError('ERR_UNSAFE_VALUE', `${what} ${problem}`, { field: what });
  return value;
}

/** Create a renderer over `templatesDir` (re-read on every render so edits apply at once). */
export function createRenderer(templatesDir: string): Renderer {
  const root = path.resolve(templatesDir);
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(root, { noCache: true }), {
    // HTML escaping would corrupt scripts; safety comes from validation and the filters below.
    autoescape: false,
    throwOnUndefined: true,
  });
  env.addFilter('yaml', yamlQuote);
  env.addFilter('ipxe', (v: unknown) => assertIpxeSafe(String(v), 'value'));
  env.addFilter('comment', yamlComment);
  // One line of a line-oriented file (preseed): nothing a value holds can start a new line.
  env.addFilter('line', yamlComment);
  return {
    render(name, context) {
      if (!/^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name)) {
        throw new ApplianceError('ERR_TEMPLATE', `template name ${JSON.stringify(name)} is not a plain file name`, { template: name });
      }
      try {
        // Synchronous render: our filters are synchronous (an async filter would make a sync
        // render silently return null).
        const out = env.render(name, context);
        if (typeof out !== 'string') throw new Error('template rendered nothing');
        return out;
      } catch (err) {
        const e = err as Error;
        if (e instanceof ApplianceError) throw e;
        // nunjucks prefixes "(/full/path/name.njk)"; the name is enough (and the client sees it).
        const msg = e.message
          .replace(/\s+/g, ' ')
          .replace(/^\([^)]*\)\s*/, '')
          .trim();
        throw new ApplianceError('ERR_TEMPLATE', `template ${name}: ${msg}`, { template: name }, { cause: err });
      }
    },
  };
}

/** What a booting machine told us, already validated. */
export interface BootRequest {
  /** Canonical MAC (lowercase, colon-separated). */
  mac: string;
  uuid?: string | undefined;
  arch?: string | undefined;
  platform?: string | undefined;
  /**
   * The facts token of the boot session the route opened for this request (boot-sessions.ts);
   * `{{ facts_token }}` in cmdlines, `facts_token` in templates. Never read from the request.
   */
  factsToken?: string | undefined;
  /**
   * The provisioning's callback token, set only when the route granted it to this request
   * (callback-grant.ts); `{{ callback_url }}` is unset without it. Never read from the request.
   */
  callbackToken?: string | undefined;
}

/** Where this appliance is reachable (advertised address and real HTTP port). */
export interface ServerAddress {
  address: string;
  port: number;
}

/** Base URL of this appliance, e.g. `http://10.0.0.1:8080`. */
export function baseUrl(server: ServerAddress): string {
  return `http://${server.address}:${server.port}`;
}

/** URL iPXE chains to for a machine (used by /boot.ipxe with iPXE settings, and by retries). */
export function ipxeUrl(server: ServerAddress, req: BootRequest): string {
  const q = [`mac=${req.mac.replace(/:/g, '-')}`];
  if (req.uuid) q.push(`uuid=${req.uuid}`);
  if (req.arch) q.push(`arch=${req.arch}`);
  if (req.platform) q.push(`platform=${req.platform}`);
  return `${baseUrl(server)}/ipxe?${q.join('&')}`;
}

/** Merge profile then machine vars (machine wins). */
export function mergeVars(profile: Profile, machine: Machine | undefined): Record<string, VarValue> {
  return { ...(profile.vars ?? {}), ...(machine?.vars ?? {}) };
}

/** Stands in for an unset optional placeholder; never part of a real value (NUL). */
const UNSET = '\u0000';

/**
 * Replace `{{ name }}` placeholders in a profile's cmdline with request values. Deliberately
 * not nunjucks: cmdline strings come from the database (writable through the API), and
 * nunjucks would let them run code. Known names: address, port, mac, uuid, hostname, arch,
 * platform, profile, base_url, callback_url (callback-grant.ts; unset unless granted), facts_token
 * (boot-sessions.ts; unset where no session was opened) and vars.NAME
 * (scalars). `{{ name? }}` is optional: when it has
 * no value (unset, null or "") the whole kernel argument is left out (see buildCmdline), so
 * `"rancher.password": "{{ vars.password? }}"` appears only for machines with a password.
 * Returns undefined when an optional placeholder is unset.
 */
export function interpolate(text: string, values: Record<string, string | undefined>, what: string): string | undefined {
  const out = substitute(text, values, what);
  return out.includes(UNSET) ? undefined : out;
}

/** interpolate, leaving UNSET where an optional placeholder had no value. */
function substitute(text: string, values: Record<string, string | undefined>, what: string): string {
  return text.replace(PLACEHOLDER, (_m, name: string, optional: string | undefined) => {
    // Own keys only: `{{ constructor }}` must not find Object.prototype.constructor.
    const v = Object.hasOwn(values, name) ? values[name] : undefined;
    if (optional && (v === undefined || v === '')) return UNSET;
    if (v === undefined) {
      throw new ApplianceError(
        'ERR_TEMPLATE',
        `${what}: {{ ${name} }} is not known here (known: ${Object.keys(values)
          .filter((k) => values[k] !== undefined)
          .join(', ')})`,
        { field: what },
      );
    }
    // A NUL inside a value would be mistaken for UNSET; it is refused as unsafe later anyway.
    return String(v).replace(/\u0000/g, '');
  });
}

/**
 * Where a provisioning machine reports that it finished (`POST`, lifecycle.ts), with the
 * callback token granted to this request (callback-grant.ts); undefined without one.
 */
export function callbackUrl(server: ServerAddress, req: BootRequest): string | undefined {
  return req.callbackToken === undefined ? undefined : `${baseUrl(server)}/api/machines/${req.mac}/callback?token=${req.callbackToken}`;
}

/** The values `{{ name }}` may use in a cmdline. */
export function placeholderValues(server: ServerAddress, req: BootRequest, profile: Profile, machine: Machine | undefined): Record<string, string | undefined> {
  const values: Record<string, string | undefined> = Object.assign(Object.create(null) as Record<string, string | undefined>, {
    address: server.address,
    port: String(server.port),
    base_url: baseUrl(server),
    mac: req.mac,
    uuid: req.uuid,
    arch: req.arch,
    platform: req.platform,
    hostname: machine?.hostname,
    profile: profile.id,
    callback_url: callbackUrl(server, req),
    facts_token: req.factsToken,
  });
  for (const [k, v] of Object.entries(mergeVars(profile, machine))) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') values[`vars.${k}`] = String(v);
  }
  return values;
}

/**
 * Build the kernel command line arguments; every argument is checked to be one iPXE token. The
 * string form is split first and each argument substituted on its own, so a value can never add
 * an argument (a value with a space is refused, not split).
 */
export function buildCmdline(profile: Profile, values: Record<string, string | undefined>): string[] {
  const where = `profile ${profile.id} cmdline`;
  const tokens: string[] = [];
  if (typeof profile.cmdline === 'string') {
    // An unset optional placeholder drops only the argument it is in.
    for (const t of splitCmdline(profile.cmdline)) {
      const v = substitute(t, values, where);
      if (v !== '' && !v.includes(UNSET)) tokens.push(v);
    }
  } else {
    for (const [key, raw] of Object.entries(profile.cmdline)) {
      for (const v of Array.isArray(raw) ? raw : [raw]) {
        const value = interpolate(String(v), values, `${where}.${key}`);
        if (value === undefined) continue;
        tokens.push(value === '' ? key : `${key}=${value}`);
      }
    }
  }
  return tokens.map((t) => assertIpxeSafe(t, `${where} argument ${JSON.stringify(t.slice(0, 40))}`));
}

/** One boot file (kernel or initrd) as iPXE will fetch it. */
export interface BootFile {
  /** Absolute URL. */
  url: string;
  /** Image name in iPXE (`initrd --name`); the kernel line says `initrd=NAME` (UEFI needs it). */
  name: string;
  /** Path under /assets/ when served locally. */
  asset?: string;
}

/** Resolve `/assets/...` to this appliance's URL; http(s) URLs stay as they are. */
export function bootFile(server: ServerAddress, source: string, name: string): BootFile {
  const url = source.startsWith('/assets/') ? `${baseUrl(server)}${source}` : source;
  return { url: assertIpxeSafe(url, 'boot file URL'), name, ...(source.startsWith('/assets/') ? { asset: source } : {}) };
}

/** Unique, iPXE-safe image names for the initrds: the file name, de-duplicated by index. */
export function initrdNames(sources: string[]): string[] {
  const seen = new Set<string>();
  return sources.map((s, i) => {
    let base = (s.split('?')[0] ?? '').split('/').pop() || `initrd${i}`;
    if (!/^[A-Za-z0-9._-]+$/.test(base)) base = `initrd${i}`;
    const name = seen.has(base) ? `${i}-${base}` : base;
    seen.add(name);
    return name;
  });
}

/** Everything a profile iPXE template gets. All strings are iPXE-safe. */
export interface IpxeContext {
  mac: string;
  uuid: string;
  arch: string;
  platform: string;
  hostname: string;
  address: string;
  port: number;
  base_url: string;
  profile: { id: string; name: string };
  via: SelectedVia;
  kernel: BootFile;
  initrds: BootFile[];
  /** Kernel arguments joined by spaces, without the initrd= arguments. */
  cmdline: string;
  /** `initrd=NAME ...` for every initrd (UEFI's EFI stub needs them; BIOS ignores extras). */
  initrd_args: string;
  /** initrd_args then cmdline: everything after the kernel URL on the `kernel` line. */
  kernel_args: string;
  /** URL that re-runs selection for this machine (for retry loops). */
  retry_url: string;
  /** Seconds to wait before retrying after a failure. */
  retry_seconds: number;
  /** Profile and machine vars whose values are scalars that are one iPXE argument; others are left out. */
  vars: Record<string, string>;
  /** This boot's facts token ('' when no session was opened), see boot-sessions.ts. */
  facts_token: string;
}

/** Build the iPXE template context; throws ERR_UNSAFE_VALUE / ERR_TEMPLATE naming the value. */
export function buildIpxeContext(
  server: ServerAddress,
  req: BootRequest,
  profile: Profile,
  machine: Machine | undefined,
  via: SelectedVia,
  retrySeconds = 20,
): IpxeContext {
  const values = placeholderValues(server, req, profile, machine);
  const names = initrdNames(profile.initrd);
  const initrds = profile.initrd.map((s, i) => bootFile(server, s, names[i]!));
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(mergeVars(profile, machine))) {
    if ((typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') && ipxeTokenProblem(String(v)) === undefined) vars[k] = String(v);
  }
  const cmdline = buildCmdline(profile, values).join(' ');
  const initrdArgs = initrds.map((i) => `initrd=${i.name}`).join(' ');
  return {
    mac: req.mac,
    uuid: req.uuid ?? '',
    arch: req.arch ?? '',
    platform: req.platform ?? '',
    hostname: machine?.hostname ?? '',
    address: server.address,
    port: server.port,
    base_url: baseUrl(server),
    profile: { id: profile.id, name: profile.name !== undefined && IPXE_SAFE.test(profile.name) ? profile.name : profile.id },
    via,
    kernel: bootFile(server, profile.kernel, 'kernel'),
    initrds,
    cmdline,
    initrd_args: initrdArgs,
    kernel_args: [initrdArgs, cmdline].filter((s) => s !== '').join(' '),
    retry_url: ipxeUrl(server, req),
    retry_seconds: retrySeconds,
    vars,
    facts_token: req.factsToken ?? '',
  };
}

/** Everything a cloud-config template gets. Use `| yaml` for every value placed in YAML. */
export interface CloudConfigContext {
  mac: string;
  uuid: string;
  hostname: string;
  address: string;
  port: number;
  base_url: string;
  profile: { id: string; name: string };
  labels: Record<string, string>;
  vars: Record<string, VarValue>;
  /** `POST` here when provisioning is done ('' unless this request was granted the token, callback-grant.ts). */
  callback_url: string;
  /** Send with the facts report as `Authorization: Bearer` ('' when no session was opened). */
  facts_token: string;
  /**
   * One-line warnings for YAML comments (e.g. a missing microkernel image); no line breaks.
   * The route adds `microkernel` (MicrokernelPlan plus `script`, the rc.local text) or null.
   */
  warnings: string[];
}

/** Build the cloud-config template context. */
export function buildCloudConfigContext(server: ServerAddress, req: BootRequest, profile: Profile, machine: Machine | undefined): CloudConfigContext {
  return {
    mac: req.mac,
    uuid: machine?.uuid ?? req.uuid ?? '',
    hostname: machine?.hostname ?? '',
    address: server.address,
    port: server.port,
    base_url: baseUrl(server),
    profile: { id: profile.id, name: profile.name ?? profile.id },
    labels: machine?.labels ?? {},
    vars: mergeVars(profile, machine),
    callback_url: callbackUrl(server, req) ?? '',
    facts_token: req.factsToken ?? '',
    warnings: [],
  };
}

/**
 * A script that explains on the machine's console why it cannot boot yet and retries after
 * `sleepSeconds` (re-running selection, so fixing the database or adding the assets is enough).
 */
export function renderRetryScript(server: ServerAddress, req: BootRequest | undefined, message: string, sleepSeconds = 20): string {
  const lines = [
    '#!ipxe',
    '# netboot-appliance: this machine cannot boot yet; see the message below.',
    `echo netboot-appliance: ${ipxeEchoText(message)}`,
    `echo netboot-appliance: retrying in ${sleepSeconds} seconds`,
    `sleep ${sleepSeconds}`,
  ];
  if (req) lines.push(`chain --replace --autofree ${ipxeUrl(server, req)}`);
  else lines.push(`chain --replace --autofree ${baseUrl(server)}/boot.ipxe`);
  return `${lines.join('\n')}\n`;
}

/**
 * The fixed entry script (`GET /boot.ipxe`). iPXE that fetched it over HTTP already has an
 * address; when it has none (script embedded in an iPXE build, or the ProxyDHCP reply was lost
 * in the race with the plain DHCP server) it retries `dhcp` a bounded number of times. It then
 * chains to /ipxe with the identity iPXE knows: `${netX/mac:hexhyp}` (the NIC that booted, as
 * 52-54-00-..., no characters that need URL escaping), `${uuid}` (SMBIOS), `${buildarch}`
 * (i386, x86_64, arm64) and `${platform}` (pcbios, efi).
 */
export function renderBootScript(server: ServerAddress, options: { dhcpAttempts?: number; retrySeconds?: number } = {}): string {
  const attempts = options.dhcpAttempts ?? 5;
  const wait = options.retrySeconds ?? 5;
  const url = `${baseUrl(server)}/ipxe?mac=\${netX/mac:hexhyp}&uuid=\${uuid}&arch=\${buildarch}&platform=\${platform}`;
  return `${[
    '#!ipxe',
    '# netboot-appliance entry script: get an address if we have none, then ask for this',
    "# machine's profile. iPXE can miss a ProxyDHCP reply, so dhcp is retried (bounded).",
    'set netboot-tries:int32 0',
    // Fetched over IPv6 (the host is [ADDRESS6]): the client has its address already, and
    // ${netX/ip} (IPv4) would be unset on an IPv6-only network.
    server.address.startsWith('[') ? 'goto netboot-chain' : 'isset ${netX/ip} && goto netboot-chain ||',
    ':netboot-dhcp',
    'dhcp && goto netboot-chain ||',
    'inc netboot-tries',
    `iseq \${netboot-tries} ${attempts} && goto netboot-no-dhcp ||`,
    `echo netboot-appliance: no DHCP answer (attempt \${netboot-tries} of ${attempts}), retrying in ${wait} seconds`,
    `sleep ${wait}`,
    'goto netboot-dhcp',
    ':netboot-no-dhcp',
    `echo netboot-appliance: no DHCP answer after ${attempts} attempts, rebooting in 30 seconds`,
    'sleep 30',
    'reboot',
    ':netboot-chain',
    `chain --replace --autofree ${url} ||`,
    `echo netboot-appliance: could not fetch the boot script from ${baseUrl(server)}, retrying in ${wait} seconds`,
    `sleep ${wait}`,
    'goto netboot-chain',
  ].join('\n')}\n`;
}
