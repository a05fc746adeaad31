import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, PACKAGE_ROOT } from '../../src/package-paths.ts';

// Migrations are self-contained and immutable once released (sql/README.md): none imports
// another migration or anything from src/, and nothing in src/ imports a migration.

const SRC_DIR = join(PACKAGE_ROOT, 'src');

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && /\.(ts|js|mjs|cjs|sql)$/.test(e.name))
    .map((e) => join(e.parentPath, e.name));
}

/** Every module specifier of a file: static imports and re-exports, dynamic imports, require. */
function specifiers(text: string): string[] {
  const pattern =
    /\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*['"]([^'"]+)['"]|\b(?:import|require)\s*\(\s*['"`]([^'"`]+)['"`]\s*\)/g;
  return [...text.matchAll(pattern)].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

async function imports(
  file: string,
): Promise<{ file: string; spec: string; target: string | null }[]> {
  const text = await readFile(file, 'utf8');
  return specifiers(text).map((spec) => ({
    file: relative(PACKAGE_ROOT, file),
    spec,
    target: spec.startsWith('.') ? resolve(dirname(file), spec) : null,
  }));
}

const inside = (path: string, dir: string) => !relative(dir, path).startsWith('..');

describe('the import graph', () => {
  it('finds the specifiers of every import form', () => {
    expect(
      specifiers(`import a from './a.ts';
        import { b,
          c } from "../b.ts";
        import type { D } from './d.ts';
        export { e } from './e.ts';
        import './side-effect.ts';
        const f = await import('./f.ts');
        const g = require('./g.js');`),
    ).toEqual(['./a.ts', '../b.ts', './d.ts', './e.ts', './side-effect.ts', './f.ts', './g.js']);
  });

  it('nothing in src/ imports a migration', async () => {
    const files = await filesUnder(SRC_DIR);
    const all = (await Promise.all(files.map(imports))).flat();
    // The walk sees the code base, not an empty directory.
    expect(files.length).toBeGreaterThan(50);
    expect(all.filter((i) => i.target !== null).length).toBeGreaterThan(100);
    expect(all.filter((i) => i.target && inside(i.target, MIGRATIONS_DIR))).toEqual([]);
    expect(all.filter((i) => /(^|\/)migrations\//.test(i.spec))).toEqual([]);
  });

  it('no migration imports another migration or src/', async () => {
    const files = await filesUnder(MIGRATIONS_DIR);
    expect(files.length).toBeGreaterThanOrEqual(5);
    const all = (await Promise.all(files.map(imports))).flat();
    // Type-only imports of node-pg-migrate are all a migration may use.
    expect(all.filter((i) => i.target !== null)).toEqual([]);
    expect(all.map((i) => i.spec).filter((s) => s !== 'node-pg-migrate')).toEqual([]);
  });
});
