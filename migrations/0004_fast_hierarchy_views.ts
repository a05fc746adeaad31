// Faster definitions of the two materialized views: same columns, same rows (docs/semantics.md),
// measured at 1 000 000 entities with EXPLAIN (ANALYZE, BUFFERS) and `npm run bench`
// (docs/benchmark.md). Self-contained, like every migration: it carries its own copy of each
// definition (the current canonical ones live in sql/). Its SQL is the same as when it was first
// released, when it imported 0002's and 0003's definitions instead; src/migrate/released-checksums.ts
// records that earlier file's checksum, so databases migrated then do not report it modified.
//
// What changed, and why:
// - ORDER BY entity_id on both views. REFRESH ... CONCURRENTLY first checks the new rows for
//   duplicates by sorting them on the whole-row image, whose first column is entity_id. Rows that
//   arrive in that order make each sort run a linear pass (PostgreSQL's sort detects presorted
//   input): the check dropped from 9.2 s to 3.7 s for mv_descendant_counts at 1M rows, for about
//   1 s spent sorting in the query. It is the largest single cost of a concurrent refresh.
// - Descendant counts: 0002 exploded every active entity into all its prefixes (5M rows at 1M)
//   and grouped them by ltree. Counting active children per parent first, then adding each
//   parent's count to its own prefixes, groups about 1M rows instead.
// - ltree has no hash opclass before PostgreSQL 17 (ltree 1.3), so joins and groupings on ltree
//   fall back to sorts on 15 and 16. The large grouping and join use text keys (ltree2text),
//   which hash on every version: the same plan shapes on 15 and 18.
// - The ancestor walk stays 0002's (one parent_path index probe per entity). A walk over only
//   the entities that have children, joined back by key, computed the view 30% faster, but its
//   joins between CTEs have no statistics: after a burst of writes the planner once chose a
//   nested loop that ran for minutes at 1M. The index-driven walk has no such plan to fall into.
import type { MigrationBuilder } from 'node-pg-migrate';

interface ViewDefinition {
  name: string;
  query: string;
  indexes: { name: string; sql: string }[];
}

const ANCESTORS_INDEXES = [
  {
    name: 'mv_entity_ancestors_entity_id_key',
    sql: 'CREATE UNIQUE INDEX mv_entity_ancestors_entity_id_key ON mv_entity_ancestors (entity_id)',
  },
  {
    name: 'mv_entity_ancestors_path_gist',
    sql: 'CREATE INDEX mv_entity_ancestors_path_gist ON mv_entity_ancestors USING gist (path)',
  },
  {
    name: 'mv_entity_ancestors_depth_path_idx',
    sql: 'CREATE INDEX mv_entity_ancestors_depth_path_idx ON mv_entity_ancestors (path_depth, path)',
  },
];

const DESCENDANT_COUNTS_INDEXES = [
  {
    name: 'mv_descendant_counts_entity_id_key',
    sql: 'CREATE UNIQUE INDEX mv_descendant_counts_entity_id_key ON mv_descendant_counts (entity_id)',
  },
  {
    name: 'mv_descendant_counts_path_gist',
    sql: 'CREATE INDEX mv_descendant_counts_path_gist ON mv_descendant_counts USING gist (path)',
  },
  {
    name: 'mv_descendant_counts_depth_path_idx',
    sql: 'CREATE INDEX mv_descendant_counts_depth_path_idx ON mv_descendant_counts (path_depth, path)',
  },
];

/** This migration's definitions. */
const VIEWS: ViewDefinition[] = [
  {
    name: 'mv_entity_ancestors',
    query: `
    WITH RECURSIVE chain AS (
      SELECT e.id, e.name, e.path, e.path_depth, e.confidence_score, e.is_active,
             '{}'::bigint[] AS ancestor_ids,
             '{}'::text[] AS ancestors
        FROM entities e
       WHERE e.parent_path IS NULL
      UNION ALL
      SELECT c.id, c.name, c.path, c.path_depth, c.confidence_score, c.is_active,
             p.ancestor_ids || p.id,
             p.ancestors || p.name
        FROM chain p
        JOIN entities c ON c.parent_path = p.path
    )
    SELECT id AS entity_id, name, path, path_depth, confidence_score, ancestor_ids, ancestors
      FROM chain
     WHERE is_active
     ORDER BY id`,
    indexes: ANCESTORS_INDEXES,
  },
  {
    name: 'mv_descendant_counts',
    query: `
    SELECT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
           COALESCE(below.descendant_count, 0)::bigint AS descendant_count
      FROM entities e
      LEFT JOIN (
        SELECT ltree2text(subpath(k.parent_path, 0, level)) AS key,
               sum(k.active_children) AS descendant_count
          FROM (SELECT parent_path, count(*) AS active_children
                  FROM entities
                 WHERE is_active AND parent_path IS NOT NULL
                 GROUP BY parent_path) k
         CROSS JOIN LATERAL generate_series(1, nlevel(k.parent_path)) AS level
         GROUP BY 1
      ) below ON below.key = ltree2text(e.path)
     WHERE e.is_active
     ORDER BY e.id`,
    indexes: DESCENDANT_COUNTS_INDEXES,
  },
];

/** 0002's definitions, restored by `down`. */
const PREVIOUS_VIEWS: ViewDefinition[] = [
  {
    name: 'mv_entity_ancestors',
    query: `
    WITH RECURSIVE chain AS (
      SELECT e.id, e.name, e.path, e.path_depth, e.confidence_score, e.is_active,
             '{}'::bigint[] AS ancestor_ids,
             '{}'::text[] AS ancestors
        FROM entities e
       WHERE e.parent_path IS NULL
      UNION ALL
      SELECT c.id, c.name, c.path, c.path_depth, c.confidence_score, c.is_active,
             p.ancestor_ids || p.id,
             p.ancestors || p.name
        FROM chain p
        JOIN entities c ON c.parent_path = p.path
    )
    SELECT id AS entity_id, name, path, path_depth, confidence_score, ancestor_ids, ancestors
      FROM chain
     WHERE is_active`,
    indexes: ANCESTORS_INDEXES,
  },
  {
    name: 'mv_descendant_counts',
    query: `
    SELECT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
           COALESCE(below.descendant_count, 0)::bigint AS descendant_count
      FROM entities e
      LEFT JOIN (
        SELECT subpath(d.path, 0, level) AS path, count(*) AS descendant_count
          FROM entities d
         CROSS JOIN LATERAL generate_series(1, d.path_depth - 1) AS level
         WHERE d.is_active
         GROUP BY 1
      ) below ON below.path = e.path
     WHERE e.is_active`,
    indexes: DESCENDANT_COUNTS_INDEXES,
  },
];

/** Creates the roles when the migrating role may, and grants their privileges (as 0003 does). */
const ROLES_SQL = `DO $do$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
    -- Roles are cluster-wide: another database may have created them, possibly right now.
    BEGIN
      CREATE ROLE hierarchy_reader NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
      CREATE ROLE hierarchy_refresher NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  ELSIF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname IN ('hierarchy_reader', 'hierarchy_refresher')) THEN
    RAISE NOTICE 'hierarchy-db: role % may not create roles; skipping hierarchy_reader and hierarchy_refresher', current_user;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_reader') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hierarchy_reader', current_schema());
    GRANT SELECT ON mv_entity_ancestors, mv_descendant_counts TO hierarchy_reader;
    GRANT EXECUTE ON FUNCTION hierarchy_view_status() TO hierarchy_reader;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_refresher') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hierarchy_refresher', current_schema());
    GRANT EXECUTE ON FUNCTION refresh_hierarchy_views(boolean, text[], text) TO hierarchy_refresher;
  END IF;
END $do$`;

/**
 * Drops and recreates each view with its indexes, in the migration's transaction. Readers of the
 * views wait for the commit (the new views are computed WITH DATA: REFRESH ... CONCURRENTLY needs
 * a populated view). Later migrations rebuild beside and swap instead
 * (sql/functions/hierarchy_rebuild_view.sql), so readers never wait for a rebuild.
 */
function replaceViews(pgm: MigrationBuilder, views: ViewDefinition[]): void {
  for (const view of views) {
    pgm.sql(`DROP MATERIALIZED VIEW IF EXISTS ${view.name}`);
    pgm.sql(`CREATE MATERIALIZED VIEW ${view.name} AS ${view.query} WITH DATA`);
    for (const index of view.indexes) pgm.sql(index.sql);
  }
  // DROP took the views' grants with them; this re-grants (and skips roles it may not create).
  pgm.sql(ROLES_SQL);
}

export async function up(pgm: MigrationBuilder): Promise<void> {
  replaceViews(pgm, VIEWS);
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  replaceViews(pgm, PREVIOUS_VIEWS);
}
