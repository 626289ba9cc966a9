/**
 * Checks of the operator's records against the files they name, run at write time (API and
 * hand edit) so nothing that would refuse at boot is accepted: a template a profile names must
 * exist in the templates directory (an error); a `/assets/` file it boots may still be fetched
 * later, so a missing one is only a warning.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { ApplianceError } from '../errors.js';
import type { Db, Profile } from './schema.js';

/** Profile fields that name a template file. */
export const TEMPLATE_FIELDS = ['ipxe', 'grub', 'cloudConfig', 'preseed', 'ignition', 'generic'] as const;

function isFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Problems with the templates one profile names (path relative to the profile). */
export function profileTemplateIssues(profile: Profile, templatesDir: string): { path: string[]; message: string }[] {
  const out: { path: string[]; message: string }[] = [];
  for (const field of TEMPLATE_FIELDS) {
    const name = profile[field];
    if (name !== undefined && !isFile(path.join(templatesDir, name))) {
      out.push({ path: [field], message: `template ${name} does not exist in ${templatesDir}` });
    }
  }
  return out;
}

/** Throw ERR_VALIDATION naming the first field of `profile` whose template is missing. */
export function assertProfileTemplates(profile: Profile, templatesDir: string): void {
  const issues = profileTemplateIssues(profile, templatesDir);
  if (issues.length === 0) return;
  const first = issues[0]!;
  throw new ApplianceError('ERR_VALIDATION', `${first.path.join('.')}: ${first.message}`, {
    field: first.path.join('.'),
    issues: issues.map((i) => ({ field: i.path.join('.'), path: i.path, message: i.message })),
  });
}

/** Throw ERR_VALIDATION (with paths into the document) when any profile names a missing template. */
export function assertDbTemplates(db: Db, templatesDir: string): void {
  const issues = db.profiles.flatMap((p, i) =>
    profileTemplateIssues(p, templatesDir).map((x) => ({
      path: ['profiles', i, ...x.path],
      field: `profiles.${i}.${x.path.join('.')}`,
      message: `profile ${p.id}: ${x.message}`,
    })),
  );
  if (issues.length === 0) return;
  throw new ApplianceError('ERR_VALIDATION', `${issues[0]!.field}: ${issues[0]!.message}`, { field: issues[0]!.field, issues });
}

/** Warnings for `/assets/` files a profile boots that are not there (yet). */
export function profileAssetWarnings(profile: Profile, assetsDir: string): string[] {
  const out: string[] = [];
  for (const source of [profile.kernel, ...profile.initrd]) {
    if (!source.startsWith('/assets/')) continue;
    const rel = source.slice('/assets/'.length);
    if (!existsSync(path.join(assetsDir, ...rel.split('/'))))
      out.push(`${source} is not in ${assetsDir} yet; machines get a retry script until it is (node bin/appliance fetch ...)`);
  }
  return out;
}
