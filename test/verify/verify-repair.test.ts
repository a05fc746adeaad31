import { afterEach, describe, expect, it } from 'vitest';
import { SCHEMA_LOCK_KEY } from '../../src/migrate/advisory-lock.ts';
import { runCli } from '../helpers/cli.ts';
import {
  catalogSnapshot,
  database,
  databaseWithForest,
  dropDatabases,
  entitiesSnapshot,
  repair,
  verify,
} from './verify-fixtures.ts';

afterEach(dropDatabases);

// `verify` and `repair` end to end: the checklist on a fresh database, the dry run, the schema
// lock. The breakages themselves are in breakages.test.ts; sql/ itself in sql-dir.test.ts.

describe('verify', () => {
  it('passes every check on a freshly migrated database, as JSON in the documented shape', async () => {
    const db = await database();
    const { code, report } = await verify(db);
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    for (const check of report.checks) {
      expect(Object.keys(check).sort()).toEqual(['detail', 'fix', 'name', 'ok']);
      expect(check, check.name).toMatchObject({ ok: true, fix: null });
    }
    const names = report.checks.map((c) => c.name);
    // The checklist of the README, item by item.
    expect(names).toEqual(
      expect.arrayContaining([
        'extension ltree',
        'extension btree_gist',
        'table entities',
        'table entities constraints',
        'index entities_path_gist',
        'index entities_depth_path_gist',
        'index entities_path_key',
        'index mv_entity_ancestors_entity_id_key',
        'index mv_entity_ancestors_path_gist',
        'index mv_entity_ancestors_depth_path_idx',
        'index mv_descendant_counts_entity_id_key',
        'index mv_descendant_counts_path_gist',
        'index mv_descendant_counts_depth_path_idx',
        'relation mv_entity_ancestors',
        'relation mv_descendant_counts',
        'view hierarchy_ancestors_definition',
        'view hierarchy_descendant_counts_definition',
        'function refresh_hierarchy_views(boolean, text[], text, boolean)',
        'function hierarchy_rebuild_view(text, text, text, text)',
        'function hierarchy_set_view_strategy(text, text[], text)',
        'function hierarchy_track_change()',
        'no EXECUTE for PUBLIC',
        'trigger entities_track_changes on entities',
        'trigger entities_track_truncate on entities',
        'trigger entities_capture_update on entities',
        'grants',
        'table mv_refresh_audit',
        'migrations applied',
        'migrations unmodified',
      ]),
    );
    const human = await runCli(['verify', '--database-url', db.url]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('✅ index entities_depth_path_gist');
    expect(human.stdout).not.toContain('❌');
  });

  it('does not mistake a reformatted but identical view query for drift', async () => {
    const db = await database();
    const { rows } = await db.client.query<{ query: string }>(
      `SELECT pg_get_viewdef('mv_descendant_counts'::regclass) AS query`,
    );
    // The same query as PostgreSQL prints it: other whitespace, casts and parentheses.
    await db.client.query(`
      DROP MATERIALIZED VIEW mv_descendant_counts;
      CREATE MATERIALIZED VIEW mv_descendant_counts AS ${rows[0]!.query.replace(/;\s*$/, '')};
      CREATE UNIQUE INDEX mv_descendant_counts_entity_id_key ON mv_descendant_counts (entity_id);
      CREATE INDEX mv_descendant_counts_path_gist ON mv_descendant_counts USING gist (path);
      CREATE INDEX mv_descendant_counts_depth_path_idx ON mv_descendant_counts (path_depth, path);
      GRANT SELECT ON mv_descendant_counts TO hierarchy_reader;`);
    const { code, failed } = await verify(db);
    expect(failed).toEqual([]);
    expect(code).toBe(0);
  });

  it('exits 3 when the database cannot be reached', async () => {
    const result = await runCli([
      'verify',
      '--database-url',
      'postgres://nobody:secret@127.0.0.1:1/nowhere',
    ]);
    expect(result.code).toBe(3);
    expect(result.stderr).not.toContain('secret');
  });
});

describe('repair', () => {
  it('--dry-run prints the SQL and changes nothing (catalog snapshot identical)', async () => {
    const db = await databaseWithForest(4000);
    await db.client.query(`
      DROP MATERIALIZED VIEW mv_descendant_counts;
      DROP INDEX entities_depth_path_gist;
      UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'mv_entity_ancestors_entity_id_key'::regclass;
      ALTER FUNCTION refresh_hierarchy_views(boolean, text[], text, boolean) RESET search_path;
      ALTER TABLE entities DISABLE TRIGGER entities_track_changes;`);
    const before = await catalogSnapshot(db.client);
    const entities = await entitiesSnapshot(db.client);

    const dry = await repair(db, '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('nothing was changed');
    // The views are rebuilt online (beside, then swapped), never dropped and recreated in place.
    expect(dry.stdout).toContain("public.hierarchy_rebuild_view('mv_descendant_counts'");
    expect(dry.stdout).toContain("public.hierarchy_rebuild_view('mv_entity_ancestors'");
    expect(dry.stdout).not.toMatch(/DROP MATERIALIZED VIEW|DROP TABLE/);
    expect(dry.stdout).toContain('CREATE INDEX CONCURRENTLY entities_depth_path_gist');
    expect(dry.stdout).toContain('CREATE OR REPLACE FUNCTION refresh_hierarchy_views(');
    expect(dry.stdout).toContain('ENABLE TRIGGER entities_track_changes');
    // Functions first, grants last.
    expect(dry.stdout.indexOf('CREATE OR REPLACE FUNCTION')).toBeLessThan(
      dry.stdout.indexOf('hierarchy_rebuild_view('),
    );
    expect(dry.stdout.lastIndexOf('GRANT SELECT ON mv_entity_ancestors')).toBeGreaterThan(
      dry.stdout.lastIndexOf('hierarchy_rebuild_view('),
    );

    const json = await repair(db, '--dry-run', '--json');
    expect(json.code, json.stderr).toBe(0);
    const plan = JSON.parse(json.stdout);
    expect(plan).toMatchObject({ ok: true, dry_run: true, refused: null, after: null });
    expect(plan.actions.map((a: { description: string }) => a.description)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^replace function refresh_hierarchy_views/),
        expect.stringMatching(/^rebuild mv_descendant_counts online/),
        expect.stringMatching(/^grant the privileges of sql\/grants.sql/),
      ]),
    );

    expect(await catalogSnapshot(db.client)).toEqual(before);
    expect(await entitiesSnapshot(db.client)).toEqual(entities);
    expect((await verify(db)).code).toBe(1);
  });

  it('on a healthy database has nothing to do and changes nothing', async () => {
    const db = await databaseWithForest(5000);
    const before = await catalogSnapshot(db.client);
    const result = await repair(db);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('nothing to repair');
    expect(await catalogSnapshot(db.client)).toEqual(before);
  });

  it('takes the schema lock of migrate: it waits for a deploy instead of racing it', async () => {
    const db = await database();
    await db.client.query('DROP INDEX entities_depth_path_gist');
    await db.client.query('SELECT pg_advisory_lock($1::bigint)', [SCHEMA_LOCK_KEY.toString()]);
    const blocked = await repair(db, '--lock-wait', '1s');
    expect(blocked.code).toBe(1);
    expect(blocked.stderr).toContain('schema lock');
    expect((await verify(db)).code).toBe(1);

    const released = repair(db, '--lock-wait', '30s');
    // Release only once repair is seen polling for the lock (its lock connection is open).
    for (let i = 0; i < 200; i++) {
      const { rows } = await db.client.query(
        `SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
            AND application_name = 'hierarchy-db/repair-lock'`,
      );
      if (rows.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await verify(db)).code).toBe(1);
    await db.client.query('SELECT pg_advisory_unlock($1::bigint)', [SCHEMA_LOCK_KEY.toString()]);
    const result = await released;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('repair.lock_wait');
    expect((await verify(db)).code).toBe(0);
  });
});
