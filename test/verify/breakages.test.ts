import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import {
  databaseWithForest,
  dropDatabases,
  entitiesSnapshot,
  expectViewsMatchOracle,
  HAND_MADE_ANCESTORS,
  repair,
  verify,
} from './verify-fixtures.ts';

afterEach(dropDatabases);

// Each breakage on a fresh clone of the migrated template with a random forest in it: verify
// exits 1 naming exactly the broken objects, repair brings it back to 0 from sql/, the views
// equal the independent oracle, and no row of entities was written.

interface Breakage {
  title: string;
  /** Run first, in autocommit (e.g. a strategy switch). */
  setup?: string;
  sql: string;
  /** Exactly the checks that must fail. */
  failing: string[];
  detail?: RegExp;
}

const BREAKAGES: Breakage[] = [
  {
    title: 'DROP MATERIALIZED VIEW mv_descendant_counts',
    sql: 'DROP MATERIALIZED VIEW mv_descendant_counts',
    failing: [
      'index mv_descendant_counts_entity_id_key',
      'index mv_descendant_counts_path_gist',
      'index mv_descendant_counts_depth_path_idx',
      'relation mv_descendant_counts',
      // grants.sql grants SELECT on it: it cannot be applied.
      'grants',
    ],
  },
  {
    title: 'DROP TABLE mv_entity_ancestors under the incremental strategy',
    setup: `CALL hierarchy_set_view_strategy('incremental', ARRAY['mv_entity_ancestors'])`,
    sql: 'DROP TABLE mv_entity_ancestors',
    failing: [
      'index mv_entity_ancestors_entity_id_key',
      'index mv_entity_ancestors_path_gist',
      'index mv_entity_ancestors_depth_path_idx',
      'relation mv_entity_ancestors',
      'grants',
    ],
  },
  {
    title: 'a strategy recorded as incremental over a materialized view, capture off',
    sql: `UPDATE hierarchy_view_state SET strategy = 'incremental' WHERE view_name = 'mv_descendant_counts'`,
    failing: [
      'relation mv_descendant_counts',
      'trigger entities_capture_delete on entities',
      'trigger entities_capture_insert on entities',
      'trigger entities_capture_truncate on entities',
      'trigger entities_capture_update on entities',
    ],
    detail: /is a materialized view, but its recorded strategy is incremental/,
  },
  {
    title: 'row capture enabled while every view is materialized (writers pay for nothing)',
    sql: 'ALTER TABLE entities ENABLE TRIGGER entities_capture_insert',
    failing: ['trigger entities_capture_insert on entities'],
    detail: /enabled; no view uses the incremental strategy/,
  },
  {
    title: 'a definition view redefined by hand (and the view refreshed from it)',
    sql: `CREATE OR REPLACE VIEW hierarchy_descendant_counts_definition AS
            SELECT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
                   (SELECT count(*) FROM entities d WHERE d.path <@ e.path AND d.path <> e.path)::bigint AS descendant_count
              FROM entities e WHERE e.is_active;
          SELECT * FROM refresh_hierarchy_views(true)`,
    failing: ['view hierarchy_descendant_counts_definition'],
    detail: /drifted from sql\/views\/hierarchy_descendant_counts_definition.sql/,
  },
  {
    title: 'a privilege of grants.sql revoked by hand',
    sql: 'REVOKE SELECT ON mv_refresh_audit FROM hierarchy_reader',
    failing: ['grants'],
    detail: /missing: SELECT on table mv_refresh_audit to hierarchy_reader/,
  },
  {
    title: 'the composite GiST index dropped',
    sql: 'DROP INDEX entities_depth_path_gist',
    failing: ['index entities_depth_path_gist'],
    detail: /missing/,
  },
  {
    title: 'the unique index REFRESH CONCURRENTLY needs marked invalid',
    sql: `UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'mv_entity_ancestors_entity_id_key'::regclass`,
    failing: ['index mv_entity_ancestors_entity_id_key'],
    detail: /invalid/,
  },
  {
    title: 'the composite GiST index marked invalid',
    sql: `UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'entities_depth_path_gist'::regclass`,
    failing: ['index entities_depth_path_gist'],
    detail: /invalid/,
  },
  {
    title: 'ALTER FUNCTION refresh_hierarchy_views RESET search_path',
    sql: 'ALTER FUNCTION refresh_hierarchy_views(boolean, text[], text, boolean) RESET search_path',
    failing: ['function refresh_hierarchy_views(boolean, text[], text, boolean)'],
    detail: /search_path not pinned/,
  },
  {
    title: 'refresh_hierarchy_views no longer SECURITY DEFINER',
    sql: 'ALTER FUNCTION refresh_hierarchy_views(boolean, text[], text, boolean) SECURITY INVOKER',
    failing: ['function refresh_hierarchy_views(boolean, text[], text, boolean)'],
    detail: /not SECURITY DEFINER/,
  },
  {
    title: 'a view redefined by hand with different SQL',
    sql: HAND_MADE_ANCESTORS,
    // Dropping the view also dropped hierarchy_reader's SELECT on it.
    failing: ['relation mv_entity_ancestors', 'grants'],
    detail: /drifted: does not select from hierarchy_ancestors_definition/,
  },
  {
    title: 'a view left unpopulated',
    sql: 'REFRESH MATERIALIZED VIEW mv_entity_ancestors WITH NO DATA',
    failing: ['relation mv_entity_ancestors'],
    detail: /not populated/,
  },
  {
    title: 'the unique index recreated with a WHERE clause (CONCURRENTLY cannot use it)',
    sql: `DROP INDEX mv_descendant_counts_entity_id_key;
          CREATE UNIQUE INDEX mv_descendant_counts_entity_id_key ON mv_descendant_counts (entity_id)
           WHERE path_depth > 0`,
    failing: ['index mv_descendant_counts_entity_id_key'],
    detail: /drifted.*WHERE/,
  },
  {
    title: 'the tracking trigger recreated for INSERT only',
    sql: `DROP TRIGGER entities_track_changes ON entities;
          CREATE TRIGGER entities_track_changes AFTER INSERT ON entities
            FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_track_change()`,
    failing: ['trigger entities_track_changes on entities'],
    detail: /drifted/,
  },
  {
    title: 'a view and the refresh function given to another owner',
    sql: `ALTER MATERIALIZED VIEW mv_descendant_counts OWNER TO hierarchy_reader;
          ALTER FUNCTION refresh_hierarchy_views(boolean, text[], text, boolean) OWNER TO hierarchy_refresher`,
    failing: [
      'relation mv_descendant_counts',
      'function refresh_hierarchy_views(boolean, text[], text, boolean)',
    ],
    detail: /owned by hierarchy_reader/,
  },
];

describe('each breakage fails verify, naming the object, and repair restores it', () => {
  BREAKAGES.forEach((breakage, i) => {
    it(breakage.title, async () => {
      const db = await databaseWithForest(1000 + i);
      if (breakage.setup) await db.client.query(breakage.setup);
      const entitiesBefore = await entitiesSnapshot(db.client);
      await db.client.query(breakage.sql);

      const broken = await verify(db);
      expect(broken.code).toBe(1);
      expect(broken.report.ok).toBe(false);
      expect(broken.failed.map((c) => c.name).sort()).toEqual([...breakage.failing].sort());
      for (const check of broken.failed) expect(check.fix, check.name).toBe('hierarchy-db repair');
      if (breakage.detail) {
        expect(broken.failed.map((c) => c.detail).join('\n')).toMatch(breakage.detail);
      }

      const repaired = await repair(db);
      expect(repaired.code, repaired.stdout + repaired.stderr).toBe(0);
      expect(repaired.stdout).toContain('✅ repaired:');
      expect(repaired.stdout).toContain('verify: all');
      // Every step is logged.
      expect(repaired.stderr).toContain('"event":"repair.step_done"');

      const after = await verify(db);
      expect(after.failed).toEqual([]);
      expect(after.code).toBe(0);
      await expectViewsMatchOracle(db.client);
      expect(await entitiesSnapshot(db.client)).toEqual(entitiesBefore);
      // The refresh path works again, CONCURRENTLY included.
      const { rows } = await db.client.query<{ status: string }>(
        `SELECT status FROM refresh_hierarchy_views(true)`,
      );
      expect(rows.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);
      await expectViewsMatchOracle(db.client);
    });
  });

  it('the change-tracking trigger disabled: re-enabled, and the views marked stale for the writes it missed', async () => {
    const db = await databaseWithForest(2000);
    await db.client.query('ALTER TABLE entities DISABLE TRIGGER entities_track_changes');
    // A write tracking does not see: without repair's care, the views would look fresh.
    await db.client.query(
      `UPDATE entities SET is_active = NOT is_active WHERE id = (SELECT min(id) FROM entities WHERE path_depth > 1)`,
    );
    const untracked = await db.client.query<{ pending_changes: number }>(
      'SELECT pending_changes::int FROM hierarchy_view_status()',
    );
    expect(untracked.rows.map((r) => r.pending_changes)).toEqual([0, 0]);

    const broken = await verify(db);
    expect(broken.code).toBe(1);
    expect(broken.failed.map((c) => c.name)).toEqual([
      'trigger entities_track_changes on entities',
    ]);
    expect(broken.failed[0]!.detail).toMatch(/disabled/);

    const repaired = await repair(db);
    expect(repaired.code, repaired.stdout + repaired.stderr).toBe(0);
    const after = await verify(db);
    expect(after.failed).toEqual([]);
    const { rows: status } = await db.client.query<{ pending_changes: number; stale: boolean }>(
      `SELECT pending_changes::int, staleness_ms > 0 AS stale FROM hierarchy_view_status()`,
    );
    expect(status).toEqual([
      { pending_changes: 1, stale: true },
      { pending_changes: 1, stale: true },
    ]);
    // Tracking works again.
    const { rows: tgenabled } = await db.client.query<{ tgenabled: string }>(
      `SELECT tgenabled FROM pg_trigger WHERE tgname = 'entities_track_changes'`,
    );
    expect(tgenabled).toEqual([{ tgenabled: 'O' }]);
    const refreshed = await runCli(['refresh', '--database-url', db.url]);
    expect(refreshed.code, refreshed.stderr).toBe(0);
    await expectViewsMatchOracle(db.client);
  });

  it('several breakages at once, dropped view and drifted function included', async () => {
    const db = await databaseWithForest(3000);
    await db.client.query(`
      DROP MATERIALIZED VIEW mv_descendant_counts;
      DROP INDEX entities_depth_path_gist;
      DROP TRIGGER entities_track_truncate ON entities;
      CREATE OR REPLACE FUNCTION hierarchy_track_change() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = public, pg_temp AS $$ BEGIN RETURN NULL; END $$;
      GRANT EXECUTE ON FUNCTION refresh_hierarchy_views(boolean, text[], text, boolean) TO PUBLIC;`);
    const broken = await verify(db);
    expect(broken.code).toBe(1);
    expect(broken.failed.map((c) => c.name)).toEqual(
      expect.arrayContaining([
        'relation mv_descendant_counts',
        'index entities_depth_path_gist',
        'trigger entities_track_truncate on entities',
        'function hierarchy_track_change()',
        'no EXECUTE for PUBLIC',
      ]),
    );
    expect(
      broken.failed.find((c) => c.name === 'function hierarchy_track_change()')!.detail,
    ).toMatch(/body differs/);
    const repaired = await repair(db);
    expect(repaired.code, repaired.stdout + repaired.stderr).toBe(0);
    expect((await verify(db)).code).toBe(0);
    await expectViewsMatchOracle(db.client);
  });
});
