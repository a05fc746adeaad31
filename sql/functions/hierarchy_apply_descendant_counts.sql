-- Incremental apply for mv_descendant_counts under the incremental strategy: applies the
-- captured row changes committed after p_since (the snapshot the table reflects) and visible
-- now, in one statement and one snapshot (see hierarchy_apply_ancestors.sql for why).
--
-- Counts change by deltas, never by recounting a subtree. Let C be the changed entities. The
-- table holds exactly the entities active at p_since, with their paths then; entities holds the
-- state now. For any path P, count_now(P) = count_then(P) + delta(P), where delta(P) adds 1 for
-- each entity of C active now strictly below P and subtracts 1 for each entity of C in the table
-- (active then) strictly below P; entities outside C are unchanged and contribute equally.
--   - an entity outside C keeps its path: its new count is its stored count + delta(its path);
--   - an entity of C active now at path P: count_then(P) is its stored count when its path did
--     not change, else the number of table rows strictly below P (an index scan of what was
--     there: nothing, for a subtree moved to a new place; the old subtree, for a reactivation);
--   - an entity of C not active now loses its row.
-- A moved subtree's inner counts come out unchanged on their own. A TRUNCATE in the pending set
-- makes the statement change nothing and return needs_full.
CREATE OR REPLACE FUNCTION hierarchy_apply_descendant_counts(
    p_since pg_snapshot,
    OUT applied_snapshot pg_snapshot, OUT needs_full boolean, OUT rows_changed bigint,
    OUT rows_inserted bigint, OUT rows_deleted bigint, OUT changed_ids bigint[])
  LANGUAGE plpgsql VOLATILE
  SET search_path FROM CURRENT
AS $fn$
BEGIN
  WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
  pending AS MATERIALIZED (
    SELECT DISTINCT r.entity_id
      FROM hierarchy_change_rows r CROSS JOIN snap
     WHERE pg_visible_in_snapshot(r.xid, snap.s)
       AND NOT pg_visible_in_snapshot(r.xid, p_since)
  ),
  guard AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM pending WHERE entity_id IS NULL) AS truncated
  ),
  old_rows AS MATERIALIZED (
    SELECT t.entity_id, t.path, t.path_depth, t.descendant_count
      FROM mv_descendant_counts t JOIN pending p ON p.entity_id = t.entity_id
  ),
  new_rows AS MATERIALIZED (
    SELECT e.id, e.name, e.path, e.path_depth, e.confidence_score
      FROM entities e JOIN pending p ON p.entity_id = e.id
     WHERE e.is_active
  ),
  delta AS MATERIALIZED (
    SELECT x.path, sum(x.d)::bigint AS d
      FROM (SELECT subpath(n.path, 0, l.level) AS path, 1 AS d
              FROM new_rows n CROSS JOIN LATERAL generate_series(1, n.path_depth - 1) AS l(level)
            UNION ALL
            SELECT subpath(o.path, 0, l.level), -1
              FROM old_rows o CROSS JOIN LATERAL generate_series(1, o.path_depth - 1) AS l(level)) x
     GROUP BY x.path
    HAVING sum(x.d) <> 0
  ),
  deleted AS (
    DELETE FROM mv_descendant_counts t
     USING old_rows o, guard g
     WHERE t.entity_id = o.entity_id AND NOT g.truncated
       AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.id = o.entity_id)
    RETURNING t.entity_id
  ),
  adjusted AS (
    UPDATE mv_descendant_counts t
       SET descendant_count = t.descendant_count + dl.d
      FROM delta dl, guard g
     WHERE NOT g.truncated
       AND t.path_depth = nlevel(dl.path) AND t.path = dl.path
       AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.entity_id = t.entity_id)
    RETURNING t.entity_id
  ),
  upserted AS (
    INSERT INTO mv_descendant_counts AS t
           (entity_id, name, path, path_depth, confidence_score, descendant_count)
    SELECT n.id, n.name, n.path, n.path_depth, n.confidence_score,
           CASE WHEN o.path = n.path THEN o.descendant_count
                ELSE (SELECT count(*) FROM mv_descendant_counts b
                       WHERE b.path <@ n.path AND b.path <> n.path)
           END + COALESCE(dl.d, 0)
      FROM new_rows n
      LEFT JOIN old_rows o ON o.entity_id = n.id
      LEFT JOIN delta dl ON dl.path = n.path
     CROSS JOIN guard g
     WHERE NOT g.truncated
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
  SELECT snap.s, g.truncated,
         (SELECT count(*) FROM changed),
         (SELECT count(*) FROM changed WHERE inserted),
         (SELECT count(*) FROM changed WHERE deleted),
         (SELECT array_agg(c.entity_id) FROM (SELECT entity_id FROM changed LIMIT 1001) c)
    INTO applied_snapshot, needs_full, rows_changed, rows_inserted, rows_deleted, changed_ids
    FROM snap CROSS JOIN guard g;
END
$fn$;
