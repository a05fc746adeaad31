import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// `views` and `views set-strategy`: the strategy recorded, the relation kind that matches it,
// change capture on exactly while a view is incremental, grants carried over, idempotence.
describe('views and views set-strategy (CLI)', () => {
  let db: TestDatabase;
  const cli = (...args: string[]) =>
    runCli([...args, '--log-level', 'warn', '--database-url', db.url]);
  const kinds = async () =>
    (
      await db.client.query<{ relname: string; relkind: string }>(
        `SELECT relname, relkind FROM pg_class
          WHERE relname IN ('mv_entity_ancestors', 'mv_descendant_counts') ORDER BY relname DESC`,
      )
    ).rows.map((r) => [r.relname, r.relkind]);
  const captureEnabled = async () =>
    (
      await db.client.query<{ tgname: string; on: boolean }>(
        `SELECT tgname, tgenabled <> 'D' AS on FROM pg_trigger
          WHERE tgrelid = 'entities'::regclass AND tgname LIKE 'entities\\_capture\\_%' ORDER BY tgname`,
      )
    ).rows;

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(
      `INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b'), ('c', 'a.b.c'), ('d', 'a.d')`,
    );
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    await db.client.query('CREATE ROLE hdbt_views_app NOLOGIN').catch(() => {});
    await db.client.query('GRANT SELECT ON mv_descendant_counts TO hdbt_views_app');
  });
  afterAll(async () => {
    if (db) {
      await db.client.query('DROP OWNED BY hdbt_views_app').catch(() => {});
      await db.client.query('DROP ROLE IF EXISTS hdbt_views_app').catch(() => {});
      await db.drop();
    }
  });

  it('lists both views as materialized after migrate up', async () => {
    const result = await cli('views', '--json');
    expect(result.code, result.stderr).toBe(0);
    const { views } = JSON.parse(result.stdout);
    expect(
      views.map((v: { view: string; strategy: string; relation_kind: string; rows: number }) => [
        v.view,
        v.strategy,
        v.relation_kind,
        v.rows,
      ]),
    ).toEqual([
      ['mv_entity_ancestors', 'materialized', 'materialized view', 4],
      ['mv_descendant_counts', 'materialized', 'materialized view', 4],
    ]);
    expect((await captureEnabled()).every((t) => !t.on)).toBe(true);
  });

  it('switches one view to incremental online, audited, with its grants, capture enabled', async () => {
    const before = await db.client.query('SELECT * FROM mv_descendant_counts ORDER BY entity_id');
    const result = await cli(
      'views',
      'set-strategy',
      'incremental',
      '--view',
      'mv_descendant_counts',
      '--json',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(await kinds()).toEqual([
      ['mv_entity_ancestors', 'm'],
      ['mv_descendant_counts', 'r'],
    ]);
    const after = await db.client.query('SELECT * FROM mv_descendant_counts ORDER BY entity_id');
    expect(after.rows).toEqual(before.rows);
    expect((await captureEnabled()).map((t) => t.on)).toEqual([true, true, true, true]);
    const grants = await db.client.query(
      `SELECT has_table_privilege('hdbt_views_app', 'mv_descendant_counts', 'SELECT') AS app,
              has_table_privilege('hierarchy_reader', 'mv_descendant_counts', 'SELECT') AS reader`,
    );
    expect(grants.rows[0]).toEqual({ app: true, reader: true });
    const audit = await db.client.query(
      `SELECT view_name, trigger, status, reason, method FROM mv_refresh_audit
        WHERE reason = 'strategy_changed' ORDER BY id`,
    );
    expect(audit.rows).toEqual([
      {
        view_name: 'mv_descendant_counts',
        trigger: 'manual',
        status: 'refreshed',
        reason: 'strategy_changed',
        method: 'rebuild',
      },
    ]);
    // Readers' SQL does not change, and the table is maintained from the change log.
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('e', 'a.b.e')`);
    const refresh = await cli('refresh', '--json');
    const methods = JSON.parse(refresh.stdout).results.map(
      (r: { view: string; method: string }) => [r.view, r.method],
    );
    expect(methods).toEqual([
      ['mv_entity_ancestors', 'concurrent'],
      ['mv_descendant_counts', 'incremental'],
    ]);
    const counts = await db.client.query(
      `SELECT path::text, descendant_count::int AS n FROM mv_descendant_counts ORDER BY path`,
    );
    expect(counts.rows.map((r) => [r.path, r.n])).toEqual([
      ['a', 4],
      ['a.b', 2],
      ['a.b.c', 0],
      ['a.b.e', 0],
      ['a.d', 0],
    ]);
  });

  it('is idempotent: a second switch to the same strategy rebuilds nothing', async () => {
    const before = await db.client.query('SELECT count(*)::int AS n FROM mv_refresh_audit');
    const result = await cli(
      'views',
      'set-strategy',
      'incremental',
      '--view',
      'mv_descendant_counts',
    );
    expect(result.code, result.stderr).toBe(0);
    const after = await db.client.query('SELECT count(*)::int AS n FROM mv_refresh_audit');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });

  it('switches everything back to materialized and turns capture off', async () => {
    const result = await cli('views', 'set-strategy', 'materialized', '--json');
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout).views.map((v: { strategy: string }) => v.strategy)).toEqual([
      'materialized',
      'materialized',
    ]);
    expect(await kinds()).toEqual([
      ['mv_entity_ancestors', 'm'],
      ['mv_descendant_counts', 'm'],
    ]);
    expect((await captureEnabled()).every((t) => !t.on)).toBe(true);
    const rows = await db.client.query('SELECT count(*)::int AS n FROM hierarchy_change_rows');
    expect(rows.rows[0].n).toBe(0);
    const grants = await db.client.query(
      `SELECT has_table_privilege('hdbt_views_app', 'mv_descendant_counts', 'SELECT') AS app`,
    );
    expect(grants.rows[0].app).toBe(true);
  });

  it('exits 2 for an unknown strategy or view, changing nothing', async () => {
    for (const args of [
      ['views', 'set-strategy', 'eager'],
      ['views', 'set-strategy', 'incremental', '--view', 'entities'],
    ]) {
      const result = await cli(...args);
      expect(result.code, result.stderr).toBe(2);
    }
    expect(await kinds()).toEqual([
      ['mv_entity_ancestors', 'm'],
      ['mv_descendant_counts', 'm'],
    ]);
  });
});
