-- Incremental apply for mv_entity_ancestors under the incremental strategy: applies the captured
-- row changes committed after p_since (the snapshot the table reflects) and visible in this
-- call's first statement, whose snapshot is returned (and becomes the table's).
--
-- Exact in READ COMMITTED too, where each statement sees a newer snapshot: the batch is fixed by
-- the first statement's snapshot, and rows are recomputed from the current state of entities,
-- never replayed from the log's images. A change committed after that snapshot may already show
-- in a recomputed row; it stays pending and the next refresh recomputes its rows again
-- (idempotent), so nothing is lost or counted twice.
--
-- Affected rows: every changed entity, plus the current descendants of each changed entity whose
-- name or path changed or that was inserted (their breadcrumbs hold its id and name; a path
-- left by one entity and taken by another changes the breadcrumbs below it). (De)activations
-- and score changes touch only the entity's own row: breadcrumbs are structural.
-- A TRUNCATE in the batch (an entity id of NULL) returns needs_full without changing anything:
-- the caller recomputes from the definition (hierarchy_reconcile_view).
--
-- The id sets are passed as arrays to statements planned with their values (EXECUTE ... USING):
-- the change log has no statistics worth the name, and a plan that guessed hundreds of thousands
-- of changed rows would scan the whole hierarchy for a one-row edit.
CREATE OR REPLACE FUNCTION hierarchy_apply_ancestors(
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
  v_changed    bigint[];
  v_reparented bigint[];
  v_affected   bigint[];
BEGIN
  SELECT pg_current_snapshot(), COALESCE(bool_or(r.entity_id IS NULL), false),
         COALESCE(array_agg(DISTINCT r.entity_id) FILTER (WHERE r.entity_id IS NOT NULL), '{}'),
         COALESCE(array_agg(DISTINCT r.entity_id)
                    FILTER (WHERE r.entity_id IS NOT NULL
                              AND (r.name_changed OR r.old_path IS DISTINCT FROM r.new_path)), '{}')
    INTO applied_snapshot, needs_full, v_changed, v_reparented
    FROM hierarchy_change_rows r
   WHERE pg_visible_in_snapshot(r.xid, pg_current_snapshot())
     AND NOT pg_visible_in_snapshot(r.xid, p_since);
  rows_changed := 0; rows_inserted := 0; rows_deleted := 0; changed_ids := '{}';
  IF needs_full OR cardinality(v_changed) = 0 THEN
    RETURN;
  END IF;

  EXECUTE $q$
    SELECT array_agg(DISTINCT x.id) FROM (
      SELECT unnest($1) AS id
      UNION ALL
      SELECT d.id FROM entities r JOIN entities d ON d.path <@ r.path AND d.path <> r.path
       WHERE r.id = ANY ($2)
         -- Below a reparented parent, its own expansion already covers every descendant.
         AND NOT EXISTS (SELECT 1 FROM entities q WHERE q.path = r.parent_path AND q.id = ANY ($2))
      ) x$q$
    INTO v_affected USING v_changed, v_reparented;

  EXECUTE $q$
    WITH entity AS MATERIALIZED (
      SELECT a.id, e.id IS NOT NULL AS keep, e.name, e.path, e.path_depth, e.confidence_score
        FROM unnest($1) AS a(id)
        LEFT JOIN entities e ON e.id = a.id AND e.is_active
    ),
    -- One row per (entity, ancestor level). The entities below a renamed or moved node share
    -- its ancestors and each other: each distinct ancestor path is looked up once, and the
    -- breadcrumbs are assembled by a hash join on it, instead of one lookup per entity and level
    -- (tens of thousands of index probes for a subtree of 10 000).
    level AS MATERIALIZED (
      SELECT x.id, l.level, ltree2text(subpath(x.path, 0, l.level)) AS key
        FROM entity x CROSS JOIN LATERAL generate_series(1, x.path_depth - 1) AS l(level)
       WHERE x.keep
    ),
    ancestor AS MATERIALIZED (
      SELECT p.id, p.name, k.key
        FROM (SELECT DISTINCT v.key FROM level v) k
        CROSS JOIN LATERAL (SELECT e.id, e.name FROM entities e WHERE e.path = text2ltree(k.key)) p
    ),
    crumbs AS MATERIALIZED (
      SELECT v.id, array_agg(p.id ORDER BY v.level) AS ids, array_agg(p.name ORDER BY v.level) AS names
        FROM level v JOIN ancestor p ON p.key = v.key
       GROUP BY v.id
    ),
    target AS MATERIALIZED (
      SELECT x.id, x.keep, x.name, x.path, x.path_depth, x.confidence_score,
             COALESCE(b.ids, '{}'::bigint[]) AS ancestor_ids,
             COALESCE(b.names, '{}'::text[]) AS ancestors
        FROM entity x
        LEFT JOIN crumbs b ON b.id = x.id
    ),
    -- By the unique index on entity_id: a join here would read the whole table.
    deleted AS (
      DELETE FROM mv_entity_ancestors t
       WHERE t.entity_id = ANY (ARRAY(SELECT x.id FROM target x WHERE NOT x.keep))
      RETURNING t.entity_id
    ),
    upserted AS (
      INSERT INTO mv_entity_ancestors AS t
             (entity_id, name, path, path_depth, confidence_score, ancestor_ids, ancestors)
      SELECT x.id, x.name, x.path, x.path_depth, x.confidence_score, x.ancestor_ids, x.ancestors
        FROM target x WHERE x.keep
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
    SELECT (SELECT count(*) FROM changed),
           (SELECT count(*) FROM changed WHERE inserted),
           (SELECT count(*) FROM changed WHERE deleted),
           (SELECT COALESCE(array_agg(c.entity_id), '{}') FROM (SELECT entity_id FROM changed LIMIT 1001) c)$q$
    INTO rows_changed, rows_inserted, rows_deleted, changed_ids USING v_affected;
END
$fn$;
