// Faster definitions of the two materialized views (issue 6): same columns, same rows
// (SPEC 2.2, 2.3), measured at 1 000 000 entities with EXPLAIN (ANALYZE, BUFFERS) and
// `npm run bench` (docs/benchmark.md). The definitions are exported like 0002's: they are now the
// canonical ones `verify` compares with and `repair` rebuilds from.
//
// What made 0002's slow, and what replaces it:
// - Its ancestor walk probed the parent_path index once per entity (1M random index probes),
//   leaves included. Only entities with children can be ancestors (about 1 in 5 with fanout 8):
//   the walk now runs over those alone, and every entity takes its parent's breadcrumb in one
//   final join.
// - Its descendant count exploded every active entity into all its prefixes (5M rows at 1M) and
//   grouped them by ltree. Counting active children per parent first, then exploding only the
//   parents' prefixes, groups about 1M rows instead.
// - ltree has no hash opclass before PostgreSQL 17 (ltree 1.3), so joins and groupings on ltree
//   fall back to sorts or nested loops on 15 and 16. Keys are compared as text (ltree2text),
//   which hashes on every version: the same plan shapes on 15 and 18.
// - ORDER BY entity_id: REFRESH ... CONCURRENTLY first checks the new rows for duplicates by
//   sorting them on the whole-row image, whose first column is entity_id. Rows that arrive in that
//   order make each sort run a linear pass (PostgreSQL's sort detects presorted input): the check
//   dropped from 9.2 s to 3.7 s for mv_descendant_counts at 1M rows, for 1.2 s spent sorting here.
import type { MigrationBuilder } from 'node-pg-migrate';
import {
  DESCENDANT_COUNTS_VIEW as DESCENDANT_COUNTS_VIEW_0002,
  ENTITY_ANCESTORS_VIEW as ENTITY_ANCESTORS_VIEW_0002,
  type ViewDefinition,
} from './0002_hierarchy_views.ts';
import { ROLES_SQL } from './0003_refresh_engine.ts';

export type { ViewDefinition };

/**
 * One row per active entity with every proper ancestor, root first, parent last.
 * `internal` holds the entities that have a child (inactive ones too: the breadcrumb is
 * structural); the walk builds their breadcrumbs level by level, and each entity appends its
 * parent to the parent's. The foreign key guarantees every non-root's parent exists, so the
 * LEFT JOIN finds it for every non-root; roots get empty arrays, never NULL or {NULL}.
 * `DISTINCT ON (key)` only tells the planner what is true anyway, that key is unique: a CTE has no
 * statistics, and without it the final join is estimated at millions of rows per thousand
 * entities, so small hierarchies paid for a JIT compilation (0.5 s at 10k entities).
 */
export const ENTITY_ANCESTORS_VIEW: ViewDefinition = {
  name: 'mv_entity_ancestors',
  query: `
    WITH RECURSIVE
      internal AS MATERIALIZED (
        SELECT p.id, p.name, ltree2text(p.path) AS key, ltree2text(p.parent_path) AS parent_key
          FROM entities p
         WHERE ltree2text(p.path) IN (SELECT ltree2text(c.parent_path) FROM entities c)
      ),
      chain AS (
        SELECT i.id, i.name, i.key, '{}'::bigint[] AS ancestor_ids, '{}'::text[] AS ancestors
          FROM internal i
         WHERE i.parent_key IS NULL
        UNION ALL
        SELECT i.id, i.name, i.key, p.ancestor_ids || p.id, p.ancestors || p.name
          FROM chain p
          JOIN internal i ON i.parent_key = p.key
      )
    SELECT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
           CASE WHEN e.parent_path IS NULL THEN '{}'::bigint[]
                ELSE p.ancestor_ids || p.id END AS ancestor_ids,
           CASE WHEN e.parent_path IS NULL THEN '{}'::text[]
                ELSE p.ancestors || p.name END AS ancestors
      FROM entities e
      LEFT JOIN (SELECT DISTINCT ON (key) * FROM chain) p ON p.key = ltree2text(e.parent_path)
     WHERE e.is_active
     ORDER BY e.id`,
  indexes: ENTITY_ANCESTORS_VIEW_0002.indexes,
};

/**
 * One row per active entity with the number of active entities strictly below it.
 * An active entity d is strictly below e exactly when d's parent is e or below e, so each
 * parent's count of active children is added to the parent itself and to each of its prefixes.
 */
export const DESCENDANT_COUNTS_VIEW: ViewDefinition = {
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
  indexes: DESCENDANT_COUNTS_VIEW_0002.indexes,
};

/**
 * Drops and recreates each view with its indexes, in the migration's transaction. Readers of the
 * views wait for the commit (the new views are computed WITH DATA, as in 0002: REFRESH ...
 * CONCURRENTLY needs a populated view), so run it when a pause of a few seconds per million
 * entities is acceptable.
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
  replaceViews(pgm, [ENTITY_ANCESTORS_VIEW, DESCENDANT_COUNTS_VIEW]);
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  replaceViews(pgm, [ENTITY_ANCESTORS_VIEW_0002, DESCENDANT_COUNTS_VIEW_0002]);
}
