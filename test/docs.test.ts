/**
 * Every comment that cites NETBOOT-FACTS points into this repository: docs/NETBOOT-FACTS.md has
 * the section it names, and the fixtures that document lists are in test/fixtures/dhcp/.
 */
import test from 'ava';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const FACTS = join(ROOT, 'docs', 'NETBOOT-FACTS.md');

function* sourceFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name === 'fixtures' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sourceFiles(p);
    else if (/\.(ts|js|md|sh|njk)$|^[a-z-]+$/.test(name)) yield p;
  }
}

test('every NETBOOT-FACTS reference resolves to a section of docs/NETBOOT-FACTS.md', (t) => {
  const facts = readFileSync(FACTS, 'utf8');
  const sections = new Set([...facts.matchAll(/^## (\d+)\./gm)].map((m) => m[1]));
  const refs: string[] = [];
  for (const top of ['src', 'test', 'scripts', 'agent', 'bin', 'templates', 'contrib']) {
    if (!existsSync(join(ROOT, top))) continue;
    for (const file of sourceFiles(join(ROOT, top))) {
      for (const m of readFileSync(file, 'utf8').matchAll(/NETBOOT-FACTS(?:\.md)?\s*(?:section\s*|§\s*)(\d+)/g)) {
        refs.push(`${file.slice(ROOT.length + 1)} -> ${m[1]}`);
        t.true(sections.has(m[1]!), `${file}: section ${m[1]} is not in docs/NETBOOT-FACTS.md`);
      }
    }
  }
  t.true(refs.length >= 10, `found the references: ${refs.join(', ')}`);
  // No reference to the team's copy outside the repository.
  for (const file of sourceFiles(join(ROOT, 'src'))) t.notRegex(readFileSync(file, 'utf8'), /\/work\/shared|\.\.\/shared\//, file);
});

test('the captured packets docs/NETBOOT-FACTS.md describes are in test/fixtures/dhcp/', (t) => {
  const facts = readFileSync(FACTS, 'utf8');
  const named = [...new Set([...facts.matchAll(/\b([a-z0-9-]+\.(?:bin|pcap))\b/g)].map((m) => m[1]!))];
  t.true(named.length >= 9);
  for (const name of named.filter((n) => !n.startsWith('*'))) t.true(existsSync(join(ROOT, 'test', 'fixtures', 'dhcp', name)), name);
});
