-- Incremental apply for mv_entity_ancestors under the incremental strategy: applies the captured
-- row changes committed after p_since (the snapshot the table reflects) and visible now.
--
-- One statement, so the change log, entities and the table are all read in one snapshot, which
-- is the snapshot returned: exact even when called in READ COMMITTED, where each statement of a
-- function sees a newer snapshot. Rows are recomputed from the current state of entities, never
-- replayed from the log's images, so applying is idempotent.
--
-- Affected rows: every changed entity, plus the current descendants of each changed entity whose
-- name or path changed or that was inserted (their breadcrumbs hold its id and name; a path
-- left by one entity and taken by another changes the breadcrumbs below it). (De)activations
-- and score changes touch only the entity's own row: breadcrumbs are structural.
-- A TRUNCATE in the pending set (an entity id of NULL) makes the statement change nothing and
-- return needs_full: the caller recomputes from the definition (hierarchy_reconcile_view).
CREATE OR REPLACE FUNCTION hierarchy_apply_ancestors(
    p_since pg_snapshot,
    OUT applied_snapshot pg_snapshot, OUT needs_full boolean, OUT rows_changed bigint,
    OUT rows_inserted bigint, OUT rows_deleted bigint, OUT changed_ids bigint[])
  LANGUAGE plpgsql VOLATILE
  SET search_path FROM CURRENT
AS $fn$
BEGIN
  WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
  pending AS MATERIALIZED (
    SELECT r.entity_id, r.old_path, r.new_path, r.name_changed
      FROM hierarchy_change_rows r CROSS JOIN snap
     WHERE pg_visible_in_snapshot(r.xid, snap.s)
       AND NOT pg_visible_in_snapshot(r.xid, p_since)
  ),
  guard AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM pending WHERE entity_id IS NULL) AS truncated
  ),
  reparented AS MATERIALIZED (
    SELECT DISTINCT e.path
      FROM pending p JOIN entities e ON e.id = p.entity_id
     WHERE p.name_changed OR p.old_path IS DISTINCT FROM p.new_path
  ),
  affected AS MATERIALIZED (
    SELECT p.entity_id AS id FROM pending p WHERE p.entity_id IS NOT NULL
    UNION
    SELECT d.id FROM reparented r JOIN entities d ON d.path <@ r.path AND d.path <> r.path
  ),
  fresh AS MATERIALIZED (
    SELECT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
           COALESCE(b.ids, '{}'::bigint[]) AS ancestor_ids,
           COALESCE(b.names, '{}'::text[]) AS ancestors
      FROM affected a
      JOIN entities e ON e.id = a.id AND e.is_active
      LEFT JOIN LATERAL (
        SELECT array_agg(p.id ORDER BY l.level) AS ids, array_agg(p.name ORDER BY l.level) AS names
          FROM generate_series(1, e.path_depth - 1) AS l(level)
          JOIN entities p ON p.path = subpath(e.path, 0, l.level)
      ) b ON true
  ),
  deleted AS (
    DELETE FROM mv_entity_ancestors t
     USING affected a, guard g
     WHERE t.entity_id = a.id AND NOT g.truncated
       AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.entity_id = t.entity_id)
    RETURNING t.entity_id
  ),
  upserted AS (
    INSERT INTO mv_entity_ancestors AS t
           (entity_id, name, path, path_depth, confidence_score, ancestor_ids, ancestors)
    SELECT f.entity_id, f.name, f.path, f.path_depth, f.confidence_score, f.ancestor_ids, f.ancestors
      FROM fresh f CROSS JOIN guard g
     WHERE NOT g.truncated
    ON CONFLICT (entity_id) DO UPDATE
       SET name = EXCLUDED.name, path = EXCLUDED.path, path_depth = EXCLUDED.path_depth,
           confidence_score = EXCLUDED.confidence_score, ancestor_ids = EXCLUDED.ancestor_ids,
           ancestors = EXCLUDED.ancestors
     WHERE (t.name, t.path, t.path_depth, t.confidence_score, t.ancestor_ids, t.ancestors)
           IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.path, EXCLUDED.path_depth,
                             EXCLUDED.confidence_score, EXCLUDED.ancestor_ids, EXCLUDED.ancestors)
    RETURNING t.entity_id, (t.xmax = 0) AS inserted
  ),
  changed AS (
    SELECT entity_id, false AS inserted, true AS deleted FROM deleted
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
