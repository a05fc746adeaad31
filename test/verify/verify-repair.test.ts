import fc from 'fast-check';
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { SCHEMA_LOCK_KEY } from '../../src/migrate/advisory-lock.ts';
import { runCli } from '../helpers/cli.ts';
import {
  expectedAncestors,
  expectedDescendantCounts,
  forestArbitrary,
  insertForest,
  readEntities,
  readViews,
} from '../helpers/hierarchy.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// `verify` and `repair` end to end (issue 5), each breakage on a fresh clone of the migrated
// template with a random forest in it, views compared with the independent oracle.

interface JsonCheck {
  name: string;
  ok: boolean;
  detail: string;
  fix: string | null;
}

interface JsonReport {
  ok: boolean;
  checks: JsonCheck[];
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function database(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  return db;
}

/** A migrated database holding a random forest, both views refreshed. */
async function databaseWithForest(seed: number): Promise<TestDatabase> {
  const db = await database();
  const [forest] = fc.sample(forestArbitrary({ maxRoots: 5 }), { seed, numRuns: 1 });
  await insertForest(db.client, forest!);
  await db.client.query(`SELECT * FROM refresh_hierarchy_views(true)`);
  return db;
}

async function verify(db: TestDatabase, ...extra: string[]) {
  const result = await runCli(['verify', '--json', '--database-url', db.url, ...extra]);
  const report = JSON.parse(result.stdout) as JsonReport;
  return { code: result.code, report, failed: report.checks.filter((c) => !c.ok) };
}

function repair(db: TestDatabase, ...extra: string[]) {
  return runCli(['repair', '--database-url', db.url, ...extra]);
}

async function expectViewsMatchOracle(client: pg.Client): Promise<void> {
  const rows = await readEntities(client);
  const views = await readViews(client);
  expect(views.ancestors).toEqual(expectedAncestors(rows));
  expect(views.counts).toEqual(expectedDescendantCounts(rows));
  expect(views.ancestors.length).toBeGreaterThan(0);
}

/** The rows of `entities` with their row versions: repair must never write one. */
async function entitiesSnapshot(client: pg.Client): Promise<unknown[]> {
  const { rows } = await client.query(
    `SELECT id, xmin::text AS xmin, name, path::text AS path, is_active, confidence_score,
            created_at, updated_at
       FROM entities ORDER BY id`,
  );
  return rows;
}

/**
 * Every catalog row of the schema's objects with its row version (xmin), the bookkeeping
 * tables, the migrations tables and the roles: anything `repair` could change.
 */
async function catalogSnapshot(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ item: string }>(
    `SELECT item FROM (
       SELECT 'class ' || c.oid || ' ' || c.xmin || ' ' || c.relname || ' ' || c.relkind::text || ' ' ||
              c.relispopulated || ' ' || pg_get_userbyid(c.relowner) || ' ' || coalesce(c.relacl::text, '-')
         FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
       UNION ALL
       SELECT 'index ' || i.indexrelid::regclass || ' ' || i.indisvalid || ' ' || i.indisready || ' ' ||
              pg_get_indexdef(i.indexrelid)
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relnamespace = 'public'::regnamespace
       UNION ALL
       SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid)
         FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'm'
       UNION ALL
       SELECT 'proc ' || p.oid || ' ' || p.xmin || ' ' || p.proname || ' ' || md5(p.prosrc) || ' ' ||
              coalesce(p.proconfig::text, '-') || ' ' || p.prosecdef || ' ' || coalesce(p.proacl::text, '-')
         FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
       UNION ALL
       SELECT 'trigger ' || t.oid || ' ' || t.xmin || ' ' || t.tgname || ' ' || t.tgenabled::text
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'public'::regnamespace
       UNION ALL
       SELECT 'namespace ' || n.nspname FROM pg_namespace n
       UNION ALL
       SELECT 'role ' || r.rolname FROM pg_roles r
       UNION ALL
       SELECT 'state ' || s::text FROM hierarchy_view_state s
       UNION ALL
       SELECT 'change ' || h::text FROM hierarchy_changes h
       UNION ALL
       SELECT 'audit ' || count(*) FROM mv_refresh_audit
       UNION ALL
       SELECT 'migration ' || m::text FROM hierarchy_db_migrations m
       UNION ALL
       SELECT 'checksum ' || m.name || ' ' || m.checksum FROM hierarchy_db_migration_checksums m
     ) x(item) ORDER BY item`,
  );
  return rows.map((r) => r.item);
}

/** The origin report's first sketch of mv_entity_ancestors: wrong, and hand-made. */
const HAND_MADE_ANCESTORS = `
  DROP MATERIALIZED VIEW mv_entity_ancestors;
  CREATE MATERIALIZED VIEW mv_entity_ancestors AS
  SELECT DISTINCT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
         '{}'::bigint[] AS ancestor_ids, array_agg(a.name) AS ancestors
    FROM entities e
    LEFT JOIN entities a ON a.path @> e.path AND a.path <> e.path
   WHERE e.is_active = true
   GROUP BY e.id, e.name, e.path, e.path_depth, e.confidence_score;
  CREATE UNIQUE INDEX mv_entity_ancestors_entity_id_key ON mv_entity_ancestors (entity_id);
  CREATE INDEX mv_entity_ancestors_path_gist ON mv_entity_ancestors USING gist (path);
  CREATE INDEX mv_entity_ancestors_depth_path_idx ON mv_entity_ancestors (path_depth, path);`;

describe('verify', () => {
  it('passes every check on a freshly migrated database, as JSON in the SPEC shape', async () => {
    const db = await database();
    const { code, report } = await verify(db);
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    for (const check of report.checks) {
      expect(Object.keys(check).sort()).toEqual(['detail', 'fix', 'name', 'ok']);
      expect(check, check.name).toMatchObject({ ok: true, fix: null });
    }
    const names = report.checks.map((c) => c.name);
    // SPEC 5, item by item.
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
        'materialized view mv_entity_ancestors',
        'materialized view mv_descendant_counts',
        'view definition mv_entity_ancestors',
        'view definition mv_descendant_counts',
        'function refresh_hierarchy_views(boolean, text[], text)',
        'privileges refresh_hierarchy_views(boolean, text[], text)',
        'function hierarchy_track_change()',
        'trigger entities_track_changes on entities',
        'trigger entities_track_truncate on entities',
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

interface Breakage {
  title: string;
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
      'materialized view mv_descendant_counts',
      'view definition mv_descendant_counts',
    ],
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
    sql: 'ALTER FUNCTION refresh_hierarchy_views(boolean, text[], text) RESET search_path',
    failing: ['function refresh_hierarchy_views(boolean, text[], text)'],
    detail: /search_path not pinned/,
  },
  {
    title: 'refresh_hierarchy_views no longer SECURITY DEFINER',
    sql: 'ALTER FUNCTION refresh_hierarchy_views(boolean, text[], text) SECURITY INVOKER',
    failing: ['function refresh_hierarchy_views(boolean, text[], text)'],
    detail: /not SECURITY DEFINER/,
  },
  {
    title: 'a view redefined by hand with different SQL',
    sql: HAND_MADE_ANCESTORS,
    // Dropping the view also dropped hierarchy_reader's SELECT on it.
    failing: [
      'view definition mv_entity_ancestors',
      'grants hierarchy_reader, hierarchy_refresher',
    ],
    detail: /drifted/,
  },
];

describe('each breakage fails verify, naming the object, and repair restores it', () => {
  BREAKAGES.forEach((breakage, i) => {
    it(breakage.title, async () => {
      const db = await databaseWithForest(1000 + i);
      const entitiesBefore = await entitiesSnapshot(db.client);
      await db.client.query(breakage.sql);

      const broken = await verify(db);
      expect(broken.code).toBe(1);
      expect(broken.report.ok).toBe(false);
      expect(broken.failed.map((c) => c.name).sort()).toEqual([...breakage.failing].sort());
      for (const check of broken.failed) expect(check.fix, check.name).toBe('hierarchy-db repair');
      if (breakage.detail) expect(broken.failed[0]!.detail).toMatch(breakage.detail);

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
      GRANT EXECUTE ON FUNCTION refresh_hierarchy_views(boolean, text[], text) TO PUBLIC;`);
    const broken = await verify(db);
    expect(broken.code).toBe(1);
    expect(broken.failed.map((c) => c.name)).toEqual(
      expect.arrayContaining([
        'materialized view mv_descendant_counts',
        'index entities_depth_path_gist',
        'trigger entities_track_truncate on entities',
        'function hierarchy_track_change()',
        'privileges refresh_hierarchy_views(boolean, text[], text)',
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

describe('repair', () => {
  it('--dry-run prints the SQL and changes nothing (catalog snapshot identical)', async () => {
    const db = await databaseWithForest(4000);
    await db.client.query(`
      DROP MATERIALIZED VIEW mv_descendant_counts;
      DROP INDEX entities_depth_path_gist;
      UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'mv_entity_ancestors_entity_id_key'::regclass;
      ALTER FUNCTION refresh_hierarchy_views(boolean, text[], text) RESET search_path;
      ALTER TABLE entities DISABLE TRIGGER entities_track_changes;`);
    const before = await catalogSnapshot(db.client);
    const entities = await entitiesSnapshot(db.client);

    const dry = await repair(db, '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('nothing was changed');
    expect(dry.stdout).toContain('CREATE MATERIALIZED VIEW public.mv_descendant_counts');
    expect(dry.stdout).toContain('CREATE INDEX CONCURRENTLY entities_depth_path_gist');
    expect(dry.stdout).toContain(
      'REINDEX INDEX CONCURRENTLY public.mv_entity_ancestors_entity_id_key',
    );
    expect(dry.stdout).toContain('CREATE OR REPLACE FUNCTION public.refresh_hierarchy_views(');
    expect(dry.stdout).toContain('ENABLE TRIGGER entities_track_changes');

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
