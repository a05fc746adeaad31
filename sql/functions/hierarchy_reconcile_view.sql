-- Method `full` of the incremental strategy: recomputes a view's table from its definition and
-- applies only the difference (deletes, inserts, updates of changed rows), so readers are never
-- blocked and unchanged rows are not rewritten. Used after a TRUNCATE, for a large pending set,
-- for `refresh --full`, and to restore a table that drifted (`verify --data` finds drift).
-- One statement, one snapshot: the snapshot returned is the one the definition was read in.
-- The columns compared come from the definition view, so they cannot fall out of step with it.
CREATE OR REPLACE FUNCTION hierarchy_reconcile_view(
    p_view text,
    OUT applied_snapshot pg_snapshot, OUT rows_changed bigint, OUT rows_inserted bigint,
    OUT rows_deleted bigint, OUT changed_ids bigint[])
  LANGUAGE plpgsql VOLATILE
  SET search_path FROM CURRENT
AS $fn$
DECLARE
  v_definition text := CASE p_view
    WHEN 'mv_entity_ancestors' THEN 'hierarchy_ancestors_definition'
    WHEN 'mv_descendant_counts' THEN 'hierarchy_descendant_counts_definition' END;
  v_columns text;
  v_excluded text;
  v_current text;
BEGIN
  IF v_definition IS NULL THEN
    RAISE EXCEPTION 'unknown view %', quote_nullable(p_view)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'views are mv_entity_ancestors and mv_descendant_counts';
  END IF;
  SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
         string_agg('EXCLUDED.' || quote_ident(a.attname), ', ' ORDER BY a.attnum),
         string_agg('t.' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
    INTO v_columns, v_excluded, v_current
    FROM pg_attribute a
   WHERE a.attrelid = v_definition::regclass AND a.attnum > 0 AND NOT a.attisdropped
     AND a.attname <> 'entity_id';
  EXECUTE format($q$
    WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
    fresh AS MATERIALIZED (SELECT * FROM %2$I),
    deleted AS (
      DELETE FROM %1$I t
       WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.entity_id = t.entity_id)
      RETURNING t.entity_id
    ),
    upserted AS (
      INSERT INTO %1$I AS t (entity_id, %3$s)
      SELECT entity_id, %3$s FROM fresh
      ON CONFLICT (entity_id) DO UPDATE SET (%3$s) = ROW(%4$s)
       WHERE (%5$s) IS DISTINCT FROM (%4$s)
      RETURNING t.entity_id, (t.xmax = 0) AS inserted
    ),
    changed AS (
      SELECT entity_id, false AS inserted, true AS deleted FROM deleted
      UNION ALL
      SELECT entity_id, inserted, false FROM upserted
    )
    SELECT snap.s,
           (SELECT count(*) FROM changed),
           (SELECT count(*) FROM changed WHERE inserted),
           (SELECT count(*) FROM changed WHERE deleted),
           (SELECT array_agg(c.entity_id) FROM (SELECT entity_id FROM changed LIMIT 1001) c)
      FROM snap$q$, p_view, v_definition, v_columns, v_excluded, v_current)
    INTO applied_snapshot, rows_changed, rows_inserted, rows_deleted, changed_ids;
END
$fn$;
