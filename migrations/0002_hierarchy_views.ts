// The two materialized views that make ancestor and descendant questions cheap.
// The definitions are exported: they are the canonical source `verify` compares the live views
// with and `repair` rebuilds from (through src/verify/canonical-objects.ts).
import type { MigrationBuilder } from 'node-pg-migrate';

/** A materialized view with the indexes it needs. */
export interface ViewDefinition {
  name: string;
  query: string;
  indexes: { name: string; sql: string }[];
}

/**
 * One row per active entity with every proper ancestor, root first, parent last.
 * Walks down from the roots one level per iteration (a hash join on parent_path each time),
 * carrying the breadcrumb arrays: no containment self-join. Inactive entities are walked
 * through (the breadcrumb is structural) and filtered out at the end.
 */
export const ENTITY_ANCESTORS_VIEW: ViewDefinition = {
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
  indexes: [
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
  ],
};

/**
 * One row per active entity with the number of active entities strictly below it.
 * Every active entity contributes 1 to each of its proper prefixes; a hash aggregate over those
 * prefixes replaces the containment self-join.
 */
export const DESCENDANT_COUNTS_VIEW: ViewDefinition = {
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
  indexes: [
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
  ],
};

export async function up(pgm: MigrationBuilder): Promise<void> {
  for (const view of [ENTITY_ANCESTORS_VIEW, DESCENDANT_COUNTS_VIEW]) {
    // Created WITH DATA: REFRESH ... CONCURRENTLY needs a populated view, and it must work
    // right after `migrate up`.
    pgm.sql(`CREATE MATERIALIZED VIEW ${view.name} AS ${view.query} WITH DATA`);
    // The unique index has no WHERE clause: CONCURRENTLY requires exactly that.
    for (const index of view.indexes) pgm.sql(index.sql);
  }
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.sql('DROP MATERIALIZED VIEW IF EXISTS mv_descendant_counts');
  pgm.sql('DROP MATERIALIZED VIEW IF EXISTS mv_entity_ancestors');
}
