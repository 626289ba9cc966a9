/**
 * `node bin/appliance import DIR`: reads a CoreOS bootcfg data directory (`boot/` boot configs,
 * `cloud/` cloud-configs, each as `default`, `uuid/<UUID>`, `mac/<MAC>`) or a matchbox one
 * (`profiles/*.json`, `groups/*.json`, `ignition/`, `cloud/`, `generic/` templates) and converts
 * it to this appliance's records. Pure reading: the caller writes through the validated store,
 * so everything imported obeys the same write-time rules. What cannot be converted (Go template
 * syntax, unknown selector keys, unreadable JSON) is reported, never guessed.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { normalizeMac, normalizeUuid } from '../identity.js';

/** What an import found. */
export interface ImportPlan {
  layout: 'bootcfg' | 'matchbox';
  profiles: Record<string, unknown>[];
  groups: Record<string, unknown>[];
  machines: Record<string, unknown>[];
  defaultProfile?: string;
  /** Template files to write into the templates directory: name -> text. */
  templates: Record<string, string>;
  /** One line per thing that was not converted, naming the file. */
  problems: string[];
}

const isDir = (p: string): Promise<boolean> =>
  stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
const list = async (p: string): Promise<string[]> => ((await isDir(p)) ? (await readdir(p)).filter((n) => !n.startsWith('.')).sort() : []);
const idOf = (name: string): string =>
  name
    .replace(/\.(json|ya?ml|ign|yaml\.tmpl|tmpl)$/i, '')
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63) || 'imported';

async function readJson(file: string, problems: string[]): Promise<Record<string, unknown> | undefined> {
  try {
    const v: unknown = JSON.parse(await readFile(file, 'utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    problems.push(`${file}: not a JSON object; skipped`);
  } catch (err) {
    problems.push(`${file}: ${(err as Error).message}; skipped`);
  }
  return undefined;
}

/** A template file, unless it uses Go template syntax (matchbox/bootcfg render `{{.x}}`), which nunjucks cannot run. */
async function template(file: string, name: string, plan: ImportPlan): Promise<string | undefined> {
  const text = await readFile(file, 'utf8');
  if (/\{\{\s*[.$]/.test(text) || /\{\{-|-\}\}/.test(text)) {
    plan.problems.push(`${file}: Go template syntax ({{.name}}) is not converted; rewrite it for nunjucks ({{ name }}) and set the profile's template`);
    return undefined;
  }
  // Raw: whatever braces the file holds reach the machine byte for byte.
  plan.templates[name] = `{% raw %}${text}{% endraw %}`;
  return name;
}

/** The profile fields of a boot config `{ kernel, initrd, cmdline | args }`. */
function bootFields(boot: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (boot['kernel'] !== undefined) out['kernel'] = boot['kernel'];
  if (boot['initrd'] !== undefined) out['initrd'] = boot['initrd'];
  if (Array.isArray(boot['args'])) out['cmdline'] = boot['args'].map(String).join(' ');
  else if (boot['cmdline'] !== undefined) out['cmdline'] = boot['cmdline'];
  return out;
}

/** Read `dir` and convert it. Throws when it is neither layout. */
export async function planImport(dir: string): Promise<ImportPlan> {
  const root = path.resolve(dir);
  if ((await isDir(path.join(root, 'profiles'))) || (await isDir(path.join(root, 'groups')))) return planMatchbox(root);
  if ((await isDir(path.join(root, 'boot'))) || (await isDir(path.join(root, 'cloud')))) return planBootcfg(root);
  throw new Error(`${root} is neither a matchbox data directory (profiles/, groups/) nor a bootcfg one (boot/, cloud/)`);
}

async function planMatchbox(root: string): Promise<ImportPlan> {
  const plan: ImportPlan = { layout: 'matchbox', profiles: [], groups: [], machines: [], templates: {}, problems: [] };
  for (const name of await list(path.join(root, 'profiles'))) {
    const file = path.join(root, 'profiles', name);
    const p = await readJson(file, plan.problems);
    if (!p) continue;
    const profile: Record<string, unknown> = {
      id: idOf(String(p['id'] ?? name)),
      ...(typeof p['name'] === 'string' ? { name: p['name'] } : {}),
      ...bootFields((p['boot'] ?? {}) as Record<string, unknown>),
    };
    for (const [key, field, sub] of [
      ['ignition_id', 'ignition', 'ignition'],
      ['cloud_id', 'cloudConfig', 'cloud'],
      ['generic_id', 'generic', 'generic'],
    ] as const) {
      const ref = p[key];
      if (typeof ref !== 'string' || ref === '') continue;
      const src = path.join(root, sub, ref);
      if (
        !(await stat(src).then(
          (s) => s.isFile(),
          () => false,
        ))
      ) {
        plan.problems.push(`${file}: ${key} ${ref} is not in ${path.join(root, sub)}; left out`);
        continue;
      }
      const t = await template(src, `${idOf(ref)}.${sub}.njk`, plan);
      if (t) profile[field] = t;
    }
    plan.profiles.push(profile);
  }
  for (const name of await list(path.join(root, 'groups'))) {
    const file = path.join(root, 'groups', name);
    const g = await readJson(file, plan.problems);
    if (!g) continue;
    const selector: Record<string, unknown> = {};
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries((g['selector'] ?? {}) as Record<string, unknown>)) {
      if (k === 'mac' && typeof v === 'string' && normalizeMac(v)) selector['mac'] = normalizeMac(v);
      else if (k === 'uuid' && typeof v === 'string' && normalizeUuid(v)) selector['uuid'] = normalizeUuid(v);
      else if (k === 'arch' && typeof v === 'string') selector['arch'] = v;
      else if (typeof v === 'string') {
        labels[k] = v;
        plan.problems.push(`${file}: selector ${k}=${v} became a label selector; give the machines that label`);
      }
    }
    if (Object.keys(labels).length > 0) selector['labels'] = labels;
    plan.groups.push({
      id: idOf(String(g['id'] ?? name)),
      ...(typeof g['name'] === 'string' ? { name: g['name'] } : {}),
      profile: idOf(String(g['profile'] ?? '')),
      selector,
      ...(g['metadata'] && typeof g['metadata'] === 'object' ? { metadata: g['metadata'] } : {}),
    });
  }
  return plan;
}

async function planBootcfg(root: string): Promise<ImportPlan> {
  const plan: ImportPlan = { layout: 'bootcfg', profiles: [], groups: [], machines: [], templates: {}, problems: [] };
  // Every boot config becomes a profile; `default` is the default, uuid/ and mac/ ones are machines.
  const entries: Array<{ kind: 'default' | 'uuid' | 'mac'; key: string; file: string }> = [];
  const scan = async (sub: 'boot' | 'cloud') => {
    const out: typeof entries = [];
    const base = path.join(root, sub);
    for (const name of await list(base)) {
      const file = path.join(base, name);
      if (name === 'uuid' || name === 'mac') {
        for (const k of await list(file)) out.push({ kind: name, key: k, file: path.join(file, k) });
      } else if (idOf(name) === 'default') out.push({ kind: 'default', key: 'default', file });
      else plan.problems.push(`${file}: not default, uuid/ or mac/; skipped`);
    }
    return out;
  };
  const clouds = new Map<string, string>();
  for (const c of await scan('cloud')) {
    const t = await template(c.file, `bootcfg-${c.kind}-${idOf(c.key.replace(/:/g, '-'))}.cloud.njk`, plan);
    if (t) clouds.set(`${c.kind}/${c.key}`, t);
  }
  entries.push(...(await scan('boot')));
  const machines = new Map<string, Record<string, unknown>>();
  for (const e of entries) {
    const b = await readJson(e.file, plan.problems);
    if (!b) continue;
    const id = e.kind === 'default' ? 'bootcfg-default' : `bootcfg-${e.kind}-${idOf(e.key.replace(/:/g, '-'))}`;
    const cloud = clouds.get(`${e.kind}/${e.key}`) ?? clouds.get('default/default');
    plan.profiles.push({ id, ...bootFields(b), ...(cloud ? { cloudConfig: cloud } : {}) });
    if (e.kind === 'default') plan.defaultProfile = id;
    else if (e.kind === 'mac' && normalizeMac(e.key)) machines.set(normalizeMac(e.key)!, { mac: normalizeMac(e.key), profile: id });
    else if (e.kind === 'uuid')
      plan.problems.push(`${e.file}: a UUID-only boot config needs the machine's MAC; made profile ${id}, add a machine record with that uuid and profile`);
    else plan.problems.push(`${e.file}: ${e.key} is not a MAC address; made profile ${id} only`);
  }
  plan.machines.push(...machines.values());
  return plan;
}
