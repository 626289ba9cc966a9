/**
 * What SIGHUP reports about the templates directory: which files were added, changed or removed
 * since the last look (by content digest), and which of them no longer compile, so an operator
 * sees a broken edit in the log at once instead of at the next boot.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import nunjucks from 'nunjucks';

/** Template file name -> sha256 of its content. */
export type TemplateSnapshot = ReadonlyMap<string, string>;

/** Differences between two snapshots, names sorted. */
export interface TemplateChanges {
  added: string[];
  changed: string[];
  removed: string[];
}

/** Digest every regular file directly in `dir` (templates are plain file names; see render.ts). */
export function snapshotTemplates(dir: string): TemplateSnapshot {
  const out = new Map<string, string>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names.sort()) {
    const file = join(dir, name);
    try {
      if (!statSync(file).isFile()) continue;
      out.set(name, createHash('sha256').update(readFileSync(file)).digest('hex'));
    } catch {
      // Removed between readdir and read: it is simply not there.
    }
  }
  return out;
}

/** What changed from `before` to `after`. */
export function diffTemplates(before: TemplateSnapshot, after: TemplateSnapshot): TemplateChanges {
  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [name, digest] of after) {
    const old = before.get(name);
    if (old === undefined) added.push(name);
    else if (old !== digest) changed.push(name);
  }
  for (const name of before.keys()) if (!after.has(name)) removed.push(name);
  return { added, changed, removed };
}

/** Compile each of `names` in `dir`; returns the ones that fail with nunjucks' message. */
export function findBrokenTemplates(dir: string, names: readonly string[]): Array<{ template: string; error: string }> {
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dir, { noCache: true }), { autoescape: false, throwOnUndefined: true });
  const broken: Array<{ template: string; error: string }> = [];
  for (const name of names) {
    try {
      env.getTemplate(name, true);
    } catch (err) {
      broken.push({
        template: name,
        error: (err as Error).message
          .replace(/\s+/g, ' ')
          .replace(/^\([^)]*\)\s*/, '')
          .trim(),
      });
    }
  }
  return broken;
}
