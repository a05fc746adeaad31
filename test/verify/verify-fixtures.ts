import fc from 'fast-check';
import type pg from 'pg';
import { expect } from 'vitest';
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

// Shared by the verify/repair test files: databases, CLI wrappers, snapshots.

export interface JsonCheck {
  name: string;
  ok: boolean;
  detail: string;
  fix: string | null;
}

export interface JsonReport {
  ok: boolean;
  checks: JsonCheck[];
}

const cleanups: (() => Promise<void>)[] = [];

/** Drops the databases created since the last call (call it in afterEach). */
export async function dropDatabases(): Promise<void> {
  for (const cleanup of cleanups.splice(0)) await cleanup();
}

/** A fresh clone of the migrated template, dropped by {@link dropDatabases}. */
export async function database(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  return db;
}

/** A migrated database holding a random forest, both views refreshed. */
export async function databaseWithForest(seed: number): Promise<TestDatabase> {
  const db = await database();
  const [forest] = fc.sample(forestArbitrary({ maxRoots: 5 }), { seed, numRuns: 1 });
  await insertForest(db.client, forest!);
  await db.client.query(`SELECT * FROM refresh_hierarchy_views(true)`);
  return db;
}

export async function verify(db: TestDatabase, ...extra: string[]) {
  const result = await runCli(['verify', '--json', '--database-url', db.url, ...extra]);
  const report = JSON.parse(result.stdout) as JsonReport;
  return { code: result.code, report, failed: report.checks.filter((c) => !c.ok) };
}

export function repair(db: TestDatabase, ...extra: string[]) {
  return runCli(['repair', '--database-url', db.url, ...extra]);
}

export async function expectViewsMatchOracle(client: pg.Client): Promise<void> {
  const rows = await readEntities(client);
  const views = await readViews(client);
  expect(views.ancestors).toEqual(expectedAncestors(rows));
  expect(views.counts).toEqual(expectedDescendantCounts(rows));
  expect(views.ancestors.length).toBeGreaterThan(0);
}

/** The rows of `entities` with their row versions: repair must never write one. */
export async function entitiesSnapshot(client: pg.Client): Promise<unknown[]> {
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
export async function catalogSnapshot(client: pg.Client): Promise<string[]> {
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
export const HAND_MADE_ANCESTORS = `
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
