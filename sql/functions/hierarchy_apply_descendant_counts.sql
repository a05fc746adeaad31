-- Incremental apply for mv_descendant_counts under the incremental strategy: applies the captured
-- row changes committed after p_since (the snapshot the table reflects) and visible in this
-- call's first statement, whose snapshot is returned (see hierarchy_apply_ancestors.sql for why
-- that is exact in READ COMMITTED, and why the id sets are passed as arrays).
--
-- Counts change by deltas, never by recounting a subtree. Let C be the changed entities. The
-- table holds exactly the entities active at p_since, with their paths then; entities holds the
-- state now. For any path P, count_now(P) = count_then(P) + delta(P), where delta(P) adds 1 for
-- each entity of C active now strictly below P and subtracts 1 for each entity of C in the table
-- (active then) strictly below P; entities outside C contribute the same to both.
--   - an entity outside C keeps its path: its new count is its stored count + delta(its path);
--   - an entity of C active now at path P: count_then(P) is its stored count when its path did
--     not change, else the number of table rows strictly below P (an index scan of what was
--     there: nothing, for a subtree moved to a new place; the old subtree, for a reactivation).
--     Counting what the table holds keeps every row equal to the rows below it whichever
--     snapshot each statement read (READ COMMITTED), so later refreshes converge exactly;
--   - an entity of C not active now loses its row.
-- A moved subtree's inner counts come out unchanged on their own. The delta is computed from the
-- table and entities in one statement, before the table changes. A TRUNCATE in the batch returns
-- needs_full without changing anything.
CREATE OR REPLACE FUNCTION hierarchy_apply_descendant_counts(
    p_since pg_snapshot,
    OUT applied_snapshot pg_snapshot, OUT needs_full boolean, OUT rows_changed bigint,
    OUT rows_inserted bigint, OUT rows_deleted bigint, OUT changed_ids bigint[])
  LANGUAGE plpgsql VOLATILE
  SET search_path FROM CURRENT
  -- Per-row index work over a few rows: JIT compiling it would cost more than running it (its
  -- generate_series and lateral estimates look large to the planner).
  SET jit = off
AS $fn$
DECLARE
  v_changed bigint[];
BEGIN
  SELECT pg_current_snapshot(), COALESCE(bool_or(r.entity_id IS NULL), false),
         COALESCE(array_agg(DISTINCT r.entity_id) FILTER (WHERE r.entity_id IS NOT NULL), '{}')
    INTO applied_snapshot, needs_full, v_changed
    FROM hierarchy_change_rows r
   WHERE pg_visible_in_snapshot(r.xid, pg_current_snapshot())
     AND NOT pg_visible_in_snapshot(r.xid, p_since);
  rows_changed := 0; rows_inserted := 0; rows_deleted := 0; changed_ids := '{}';
  IF needs_full OR cardinality(v_changed) = 0 THEN
    RETURN;
  END IF;

  EXECUTE $q$
    WITH state AS MATERIALIZED (
      SELECT c.id, o.path AS old_path, o.path_depth AS old_depth, o.descendant_count AS old_count,
             n.id IS NOT NULL AS active_now, n.name, n.path, n.path_depth, n.confidence_score
        FROM unnest($1) AS c(id)
        LEFT JOIN mv_descendant_counts o ON o.entity_id = c.id
        LEFT JOIN entities n ON n.id = c.id AND n.is_active
    ),
    delta AS MATERIALIZED (
      SELECT x.key, sum(x.d)::bigint AS d
        FROM (SELECT ltree2text(subpath(s.path, 0, l.level)) AS key, 1 AS d
                FROM state s CROSS JOIN LATERAL generate_series(1, s.path_depth - 1) AS l(level)
               WHERE s.active_now
              UNION ALL
              SELECT ltree2text(subpath(s.old_path, 0, l.level)), -1
                FROM state s CROSS JOIN LATERAL generate_series(1, s.old_depth - 1) AS l(level)
               WHERE s.old_path IS NOT NULL) x
       GROUP BY x.key
      HAVING sum(x.d) <> 0
    ),
    -- count_then for the entities whose path changed, set-based: one index scan of the table
    -- below each of them that is not below another (a moved subtree's root), each row found
    -- counted for every such path above it. A correlated count per entity would scan the same
    -- subtree once per entity in it.
    relocated AS MATERIALIZED (
      SELECT s.id, s.path FROM state s
       WHERE s.active_now AND s.old_path IS DISTINCT FROM s.path
    ),
    nested AS MATERIALIZED (
      SELECT DISTINCT m.id
        FROM relocated m CROSS JOIN LATERAL generate_series(1, nlevel(m.path) - 1) AS l(level)
        JOIN relocated q ON ltree2text(q.path) = ltree2text(subpath(m.path, 0, l.level))
    ),
    below AS MATERIALIZED (
      SELECT ltree2text(subpath(b.path, 0, l.level)) AS key, count(*) AS n
        FROM relocated m
        CROSS JOIN LATERAL (SELECT t.path FROM mv_descendant_counts t
                             WHERE t.path <@ m.path AND t.path <> m.path) b
        CROSS JOIN LATERAL generate_series(nlevel(m.path), nlevel(b.path) - 1) AS l(level)
       WHERE m.id NOT IN (SELECT n.id FROM nested n)
       GROUP BY 1
    ),
    deleted AS (
      DELETE FROM mv_descendant_counts t USING state s
       WHERE t.entity_id = s.id AND s.old_path IS NOT NULL AND NOT s.active_now
      RETURNING t.entity_id
    ),
    adjusted AS (
      UPDATE mv_descendant_counts t
         SET descendant_count = t.descendant_count + dl.d
        FROM delta dl
       WHERE t.path_depth = nlevel(text2ltree(dl.key)) AND t.path = text2ltree(dl.key)
         AND NOT EXISTS (SELECT 1 FROM state s WHERE s.id = t.entity_id)
      RETURNING t.entity_id
    ),
    upserted AS (
      INSERT INTO mv_descendant_counts AS t
             (entity_id, name, path, path_depth, confidence_score, descendant_count)
      SELECT s.id, s.name, s.path, s.path_depth, s.confidence_score,
             CASE WHEN s.old_path = s.path THEN s.old_count ELSE COALESCE(bl.n, 0)
             END + COALESCE(dl.d, 0)
        FROM state s
        LEFT JOIN delta dl ON dl.key = ltree2text(s.path)
        LEFT JOIN below bl ON bl.key = ltree2text(s.path)
       WHERE s.active_now
      ON CONFLICT (entity_id) DO UPDATE
         SET name = EXCLUDED.name, path = EXCLUDED.path, path_depth = EXCLUDED.path_depth,
             confidence_score = EXCLUDED.confidence_score,
             descendant_count = EXCLUDED.descendant_count
       WHERE (t.name, t.path, t.path_depth, t.confidence_score, t.descendant_count)
             IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.path, EXCLUDED.path_depth,
                               EXCLUDED.confidence_score, EXCLUDED.descendant_count)
      RETURNING t.entity_id, (t.xmax = 0) AS inserted
    ),
    changed AS (
      SELECT entity_id, false AS inserted, true AS deleted FROM deleted
      UNION ALL
      SELECT entity_id, false, false FROM adjusted
      UNION ALL
      SELECT entity_id, inserted, false FROM upserted
    )
    SELECT (SELECT count(*) FROM changed),
           (SELECT count(*) FROM changed WHERE inserted),
           (SELECT count(*) FROM changed WHERE deleted),
           (SELECT COALESCE(array_agg(c.entity_id), '{}') FROM (SELECT entity_id FROM changed LIMIT 1001) c)$q$
    INTO rows_changed, rows_inserted, rows_deleted, changed_ids USING v_changed;
END
$fn$;
