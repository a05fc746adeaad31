import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logging/logger.ts';
import { SQL_DIR } from '../../src/package-paths.ts';
import { verifySchema } from '../../src/verify/schema-verifier.ts';
import { loadSqlDefinitions } from '../../src/verify/sql-definitions.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// sql/ and the migrations can never disagree unnoticed: a freshly migrated database matches
// every file of sql/, and a file edited without a migration makes verify fail, naming the object.

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});

function verifyAgainst(sqlDir: string) {
  return verifySchema({
    connection: { target: { url: db.url, source: 'flag', display: 'test' } },
    logger: createLogger('warn'),
    sqlDir,
  });
}

/** A copy of sql/ with one file edited (or added). */
async function editedCopy(file: string, edit: (text: string) => string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hdb-sql-'));
  await cp(SQL_DIR, dir, { recursive: true });
  const path = join(dir, file);
  const before = await readFile(path, 'utf8').catch(() => '');
  const after = edit(before);
  expect(after, `the edit of ${file} changed nothing`).not.toBe(before);
  await writeFile(path, after);
  return dir;
}

describe('a freshly migrated database and sql/', () => {
  it('match: verify passes, with a passing check for every file of sql/', async () => {
    const report = await verifyAgainst(SQL_DIR);
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.ok).toBe(true);
    const sql = await loadSqlDefinitions();
    const names = report.checks.map((c) => c.name);
    const expected = [
      ...sql.views.map((f) => `view ${f.name}`),
      ...sql.triggers.map((f) => `trigger ${f.name} on entities`),
      'grants',
    ];
    expect(names).toEqual(expect.arrayContaining(expected));
    for (const f of sql.functions) {
      expect(
        names.some((n) => n.startsWith(`function ${f.name}(`)),
        f.file,
      ).toBe(true);
    }
    expect(sql.functions.length).toBeGreaterThanOrEqual(10);
    expect(sql.triggers.length).toBeGreaterThanOrEqual(7);
  });

  const EDITS: { file: string; edit: (text: string) => string; failing: string; detail: RegExp }[] =
    [
      {
        file: 'functions/hierarchy_changes_probe.sql',
        edit: (t) => t.replace('SELECT (SELECT max(c.xid)', 'SELECT (SELECT min(c.xid)'),
        failing: 'function hierarchy_changes_probe()',
        detail: /body differs/,
      },
      {
        file: 'functions/refresh_hierarchy_views.sql',
        edit: (t) => t.replace('VOLATILE SECURITY DEFINER', 'VOLATILE'),
        failing: 'function refresh_hierarchy_views(boolean, text[], text, boolean)',
        detail: /SECURITY DEFINER/,
      },
      {
        file: 'functions/hierarchy_set_row_capture.sql',
        edit: (t) => t.replace('  SET search_path FROM CURRENT\n', ''),
        failing: 'function hierarchy_set_row_capture(boolean)',
        detail: /search_path=public, pg_temp, expected none/,
      },
      {
        file: 'views/hierarchy_ancestors_definition.sql',
        edit: (t) => t.replace('WHERE is_active', 'WHERE is_active AND path_depth > 0'),
        failing: 'view hierarchy_ancestors_definition',
        detail: /drifted from hdb-sql-\w+\/views\/hierarchy_ancestors_definition.sql/,
      },
      {
        file: 'triggers/entities_track_changes.sql',
        edit: (t) => t.replace('AFTER INSERT OR UPDATE OR DELETE', 'AFTER INSERT OR UPDATE'),
        failing: 'trigger entities_track_changes on entities',
        detail: /drifted/,
      },
      {
        file: 'grants.sql',
        edit: (t) => t.replace('GRANT SELECT ON mv_refresh_audit TO hierarchy_reader;', ''),
        failing: 'grants',
        detail: /not given by grants.sql: SELECT on table mv_refresh_audit to hierarchy_reader/,
      },
      {
        file: 'grants.sql',
        edit: (t) => `${t}\nGRANT SELECT ON entities TO hierarchy_reader;\n`,
        failing: 'grants',
        detail: /missing: SELECT on table entities to hierarchy_reader/,
      },
      {
        file: 'functions/hierarchy_extra.sql',
        edit: () =>
          'CREATE OR REPLACE FUNCTION hierarchy_extra() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n',
        failing: 'function hierarchy_extra()',
        detail: /missing/,
      },
    ];

  EDITS.forEach(({ file, edit, failing, detail }, i) => {
    it(`differ once ${file} is edited without a migration (${i + 1}): verify names ${failing}`, async () => {
      const dir = await editedCopy(file, edit);
      try {
        const report = await verifyAgainst(dir);
        expect(report.ok).toBe(false);
        const failed = report.checks.filter((c) => !c.ok);
        expect(failed.map((c) => c.name)).toEqual([failing]);
        expect(failed[0]!.detail).toMatch(detail);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
