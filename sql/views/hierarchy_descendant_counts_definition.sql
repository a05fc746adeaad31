-- The definition of mv_descendant_counts: one row per active entity with the number of active
-- entities strictly below it (leaves have 0). An active entity d is strictly below e exactly
-- when d's parent is e or below e, so each parent's count of active children is added to the
-- parent itself and to each of its prefixes. ltree has no hash opclass before PostgreSQL 17, so
-- the large grouping and join use text keys (ltree2text), which hash on every version.
-- Rows come in entity_id order (see hierarchy_ancestors_definition.sql for why).
CREATE OR REPLACE VIEW hierarchy_descendant_counts_definition AS
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
     ORDER BY e.id;
