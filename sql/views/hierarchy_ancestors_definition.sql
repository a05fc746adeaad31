-- The definition of mv_entity_ancestors: one row per active entity with every proper ancestor,
-- root first, parent last (ids and names). Breadcrumbs are structural: inactive ancestors appear.
-- Walks down from the roots one level per iteration (one parent_path index probe per entity),
-- carrying the breadcrumb arrays; inactive entities are walked through and filtered at the end.
-- Rows come in entity_id order: REFRESH ... CONCURRENTLY sorts the new rows on their whole-row
-- image (entity_id first) to check for duplicates, and presorted input makes that sort linear.
-- Both strategies read it (docs/semantics.md): the materialized view selects from it, and the
-- incremental table is built, reconciled and checked (`verify --data`) against it.
CREATE OR REPLACE VIEW hierarchy_ancestors_definition AS
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
     ORDER BY id;
