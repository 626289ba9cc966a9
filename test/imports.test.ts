/**
 * No import circles in src/ (the style guide's layers only point one way: codec <- decision <-
 * socket, context <- routes). Type-only imports count too: a circle of types is the same knot
 * in the design even when the compiler erases it. Static, `export ... from` and dynamic
 * `import('...')` specifiers are followed; packages are not.
 */
import test from 'ava';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');

function* tsFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (name.endsWith('.ts')) yield p;
  }
}

const SPECIFIER = /(?:^|[\n;])\s*(?:import|export)\s+(?:[^'";]*?\sfrom\s+)?'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/g;

/** The relative imports of every .ts file below `dir`, as absolute .ts paths. */
function importGraph(dir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of tsFiles(dir)) {
    const deps: string[] = [];
    for (const m of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
      const spec = m[1] ?? m[2]!;
      if (spec.startsWith('.')) deps.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    }
    graph.set(file, deps);
  }
  return graph;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function circles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.get(v)!.includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

test('the circle finder finds a circle through a type-only import and ignores a chain', (t) => {
  t.deepEqual(
    circles(
      new Map([
        ['a', ['b']],
        ['b', ['c']],
        ['c', ['a']],
        ['d', ['a']],
      ]),
    ),
    [['a', 'b', 'c']],
  );
  t.deepEqual(circles(new Map([['a', ['a']]])), [['a']]);
  t.deepEqual(
    circles(
      new Map([
        ['a', ['b']],
        ['b', []],
      ]),
    ),
    [],
  );
  // The specifier pattern sees type-only, multi-line, re-export and dynamic imports.
  const text =
    "import type { X } from './x.js';\nimport {\n  a,\n  b,\n} from './y.js';\nexport { c } from './z.js';\nconst m = await import('./w.js');\nimport './v.js';";
  t.deepEqual(
    [...text.matchAll(SPECIFIER)].map((m) => m[1] ?? m[2]),
    ['./x.js', './y.js', './z.js', './w.js', './v.js'],
  );
});

test('src/ has no import circles', (t) => {
  const graph = importGraph(join(ROOT, 'src'));
  t.true(graph.size > 100, `read ${graph.size} files`);
  const found = circles(graph).map((c) => c.map((f) => relative(ROOT, f)).join(' <-> '));
  t.deepEqual(found, [], `import circles:\n${found.join('\n')}`);
});
