import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { listMigrationFiles } from '../../src/migrate/migration-files.ts';
import { loadCanonicalObjects } from '../../src/verify/canonical-objects.ts';
import { type MigrationModule, recordMigrationSql } from '../../src/verify/migration-sql.ts';
import {
  concurrentIndexSql,
  plainIndexSql,
  retargetFunction,
  splitSqlStatements,
} from '../../src/verify/sql-text.ts';

const DEFINITIONS: [RegExp, string][] = [
  [/CREATE\s+MATERIALIZED\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][\w$]*)/gi, 'view'],
  [
    /CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?([a-z_][\w$]*)\s+ON/gi,
    'index',
  ],
  [/CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?:[a-z_]\w*\.)?([a-z_][\w$]*)\s*\(/gi, 'function'],
  [/CREATE\s+TRIGGER\s+([a-z_][\w$]*)/gi, 'trigger'],
];

/** Every string a migration module exports or emits, flattened. */
function textsOf(module: Record<string, unknown>, recorded: string[]): string[] {
  const texts = [...recorded];
  const walk = (value: unknown) => {
    if (typeof value === 'string') texts.push(value);
    else if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') Object.values(value).forEach(walk);
  };
  walk(module);
  // A view exported as { name, query } is created as `CREATE MATERIALIZED VIEW ${name}`.
  for (const value of Object.values(module)) {
    if (value && typeof value === 'object' && 'name' in value && 'query' in value) {
      texts.push(`CREATE MATERIALIZED VIEW ${(value as { name: string }).name} AS`);
    }
  }
  return texts;
}

describe('canonical objects', () => {
  it('point every object at the latest migration that defines it', async () => {
    const latest = new Map<string, string>();
    for (const file of await listMigrationFiles()) {
      const module = (await import(pathToFileURL(file.path).href)) as Record<string, unknown>;
      const recorded = await recordMigrationSql(module as MigrationModule);
      for (const text of textsOf(module, recorded)) {
        for (const [pattern, kind] of DEFINITIONS) {
          for (const match of text.matchAll(pattern)) latest.set(`${kind} ${match[1]}`, file.name);
        }
      }
    }
    const canonical = await loadCanonicalObjects();
    const used = new Map<string, string>([
      ...canonical.views.map((v) => [`view ${v.name}`, v.source] as [string, string]),
      ...canonical.views.flatMap((v) =>
        v.indexes.map((i) => [`index ${i.name}`, i.source] as [string, string]),
      ),
      ...canonical.tableIndexes.map((i) => [`index ${i.name}`, i.source] as [string, string]),
      ...canonical.functions.map((f) => [`function ${f.name}`, f.source] as [string, string]),
      ...canonical.triggers.map((t) => [`trigger ${t.name}`, t.source] as [string, string]),
    ]);
    for (const [object, source] of used) {
      expect({ object, source }).toEqual({ object, source: latest.get(object) });
    }
    // And nothing a migration defines is left out of verify and repair.
    for (const object of latest.keys()) {
      if (object.startsWith('view ') || object.startsWith('trigger ')) {
        expect(used.has(object), object).toBe(true);
      }
    }
    expect(used.get('index entities_depth_path_gist')).toBe('0001_entities');
    expect(used.get('function refresh_hierarchy_views')).toBeDefined();
    expect(canonical.functions.find((f) => f.name === 'refresh_hierarchy_views')).toMatchObject({
      revokeFromPublic: true,
    });
  });
});

describe('sql-text', () => {
  it('splits at top-level semicolons only, dropping comments', () => {
    const script = `
      -- a comment; with a semicolon
      CREATE TABLE t (a text DEFAULT 'x;y');
      /* block; comment */ CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;
      CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $fn$ BEGIN RETURN 2; END $fn$;
      SELECT "a;b" FROM t`;
    expect(splitSqlStatements(script)).toEqual([
      `CREATE TABLE t (a text DEFAULT 'x;y')`,
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$',
      'CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $fn$ BEGIN RETURN 2; END $fn$',
      'SELECT "a;b" FROM t',
    ]);
  });

  it('turns CONCURRENTLY on and off, and retargets a function header only', () => {
    const plain = 'CREATE UNIQUE INDEX i ON t (a)';
    expect(concurrentIndexSql(plain)).toBe('CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)');
    expect(concurrentIndexSql(concurrentIndexSql(plain))).toBe(concurrentIndexSql(plain));
    expect(plainIndexSql(concurrentIndexSql(plain))).toBe(plain);
    const fn = `CREATE OR REPLACE FUNCTION f(a int) RETURNS int AS $$ SELECT f(a) $$`;
    expect(retargetFunction(fn, { schema: 'pg_temp', orReplace: false })).toBe(
      'CREATE FUNCTION pg_temp.f(a int) RETURNS int AS $$ SELECT f(a) $$',
    );
  });
});
