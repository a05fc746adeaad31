-- Row-level change capture for the incremental strategy (docs/semantics.md, "Strategies"): one
-- INSERT per statement, from the statement's transition tables, recording per changed row what
-- the incremental apply needs. Its triggers (entities_capture_*) are enabled only while some
-- view uses the incremental strategy (hierarchy_set_row_capture), so writers of a database with
-- only materialized views pay nothing for it. A TRUNCATE is recorded as one row without an
-- entity id: the next refresh of an incremental view recomputes it from its definition. So is
-- every statement of a transaction that set hierarchy_db.bulk_load (seed, large imports): one
-- row instead of a million, and the recompute is cheaper than applying a million changes.
CREATE OR REPLACE FUNCTION hierarchy_capture_rows() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
BEGIN
  IF TG_OP = 'TRUNCATE' OR current_setting('hierarchy_db.bulk_load', true) = 'on' THEN
    INSERT INTO hierarchy_change_rows (xid, entity_id) VALUES (pg_current_xact_id(), NULL);
  ELSIF TG_OP = 'INSERT' THEN
    INSERT INTO hierarchy_change_rows (xid, entity_id, new_path, new_active)
    SELECT pg_current_xact_id(), n.id, n.path, n.is_active FROM new_rows n;
  ELSIF TG_OP = 'UPDATE' THEN
    -- A FULL JOIN: an update that changes an id reads as a delete of the old id and an insert
    -- of the new one. Rows whose hierarchy columns did not change are not recorded.
    INSERT INTO hierarchy_change_rows (xid, entity_id, old_path, new_path, old_active, new_active,
                                       name_changed, score_changed)
    SELECT pg_current_xact_id(), COALESCE(n.id, o.id), o.path, n.path, o.is_active, n.is_active,
           o.name IS DISTINCT FROM n.name, o.confidence_score IS DISTINCT FROM n.confidence_score
      FROM old_rows o FULL JOIN new_rows n ON n.id = o.id
     WHERE o.id IS NULL OR n.id IS NULL
        OR o.path IS DISTINCT FROM n.path OR o.is_active IS DISTINCT FROM n.is_active
        OR o.name IS DISTINCT FROM n.name OR o.confidence_score IS DISTINCT FROM n.confidence_score;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO hierarchy_change_rows (xid, entity_id, old_path, old_active)
    SELECT pg_current_xact_id(), o.id, o.path, o.is_active FROM old_rows o;
  END IF;
  RETURN NULL;
END
$fn$;
