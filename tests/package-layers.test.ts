// The package graph as DESIGN.md draws it, read from the sources: each package imports only the
// packages below it (and only through their public index), never the benchmarks, declares in its
// package.json exactly the packages it imports, and has no import cycle between its own modules.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

/** What each package may import, by directory name; the order is DESIGN.md's layering. */
const ALLOWED: Record<string, string[]> = {
  core: [],
  comm: ['core'],
  backend: ['core'],
  train: ['core', 'comm', 'backend'],
  gpt: ['core', 'backend'],
  cli: ['core', 'comm', 'backend', 'train', 'gpt'],
};

/** Declared but never imported by name, and why. */
const DECLARED_UNUSED: Record<string, string> = {
  bufferutil: 'ws loads it by itself to mask frames natively',
  'pino-pretty': 'pino loads it by name as the pretty transport',
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|mts|mjs|js)$/.test(name) ? [path] : [];
  });
}

/** Every module specifier a file imports: static, re-exported, or dynamic with a literal. */
function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'";]*?from\s+['"]([^'"]+)['"]/gm)) out.push(m[1]!);
  for (const m of text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)) out.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  // CommonJS packages loaded through createRequire, and files resolved inside a package.
  for (const m of text.matchAll(/\b(?:require(?:\.resolve)?|import\.meta\.resolve)\(\s*['"]([^'"]+)['"]\s*\)/g))
    out.push(m[1]!);
  return out;
}

/** The npm package a bare specifier names ('@scope/name/deep' -> '@scope/name'). */
function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

const isBuiltin = (spec: string) => spec.startsWith('node:') || builtinModules.includes(spec);

const packages = Object.keys(ALLOWED);

describe('package layers', () => {
  for (const pkg of packages) {
    const dir = join(root, 'packages', pkg);
    const files = sourceFiles(join(dir, 'src'));
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };

    it(`${pkg} imports only the packages below it, by their public names, and no benchmark`, () => {
      const wrong: string[] = [];
      for (const file of files) {
        for (const spec of specifiers(file)) {
          const where = `${relative(root, file)}: '${spec}'`;
          if (spec.startsWith('.')) {
            const target = resolve(dirname(file), spec);
            if (!target.startsWith(join(dir, 'src'))) wrong.push(`${where} reaches outside the package`);
          } else if (spec.startsWith('@zeroring/') || spec === 'zeroring') {
            const name = spec === 'zeroring' ? 'cli' : spec.split('/')[1]!;
            if (!ALLOWED[pkg]!.includes(name)) wrong.push(`${where} points up a layer or sideways`);
            if (spec.split('/').length > 2) wrong.push(`${where} is a deep import; use the package's index`);
          }
          if (/(^|\/)benchmarks\//.test(spec)) wrong.push(`${where} imports the benchmarks`);
        }
      }
      expect(wrong).toEqual([]);
    });

    it(`${pkg}'s package.json declares exactly the packages its sources import`, () => {
      const imported = new Set<string>();
      for (const file of files) {
        for (const spec of specifiers(file))
          if (!spec.startsWith('.') && !isBuiltin(spec)) imported.add(packageOf(spec));
      }
      const declared = Object.keys(manifest.dependencies ?? {});
      expect(
        declared.filter((d) => !imported.has(d) && !(d in DECLARED_UNUSED)),
        'declared, never imported',
      ).toEqual([]);
      expect(
        [...imported].filter((d) => !declared.includes(d)),
        'imported, not declared',
      ).toEqual([]);
    });

    it(`${pkg} has no import cycle between its modules`, () => {
      const edges = new Map<string, string[]>();
      for (const file of files) {
        const local = specifiers(file)
          .filter((s) => s.startsWith('.'))
          .map((s) => resolve(dirname(file), s))
          .filter((t) => existsSync(t));
        edges.set(file, local);
      }
      expect(cycles(edges).map((c) => c.map((f) => relative(dir, f)).join(' -> '))).toEqual([]);
      // Between its folders too (transport/, store/, ...): one folder is built on the other.
      const folderOf = (f: string) => relative(join(dir, 'src'), dirname(f)).split('/')[0]!;
      const folders = new Map<string, string[]>();
      for (const [file, targets] of edges) {
        const from = folderOf(file);
        if (from === '') continue;
        const to = targets.map(folderOf).filter((t) => t !== '' && t !== from);
        folders.set(from, [...(folders.get(from) ?? []), ...to]);
      }
      expect(cycles(folders).map((c) => c.join(' <-> '))).toEqual([]);
    });
  }
});

/** The strongly connected components of more than one module (Tarjan), each an import cycle. */
function cycles(edges: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
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
      if (component.length > 1) found.push(component.reverse());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return found;
}
