-- Enables or disables row-level change capture (the entities_capture_* triggers). ALTER TABLE
-- ... ENABLE TRIGGER waits for every transaction that has written entities to finish, and every
-- later write sees the new state (trigger state is catalog data, read whatever the writer's
-- isolation level): so once this commits, every write not yet committed is captured.
-- Run it in a short transaction of its own (hierarchy_set_view_strategy does): it holds a lock
-- that blocks writers until commit. Disabling it forgets the captured rows.
CREATE OR REPLACE FUNCTION hierarchy_set_row_capture(p_enabled boolean) RETURNS void
  LANGUAGE plpgsql
  SET search_path FROM CURRENT
AS $fn$
DECLARE
  v_action text := CASE WHEN p_enabled THEN 'ENABLE' ELSE 'DISABLE' END;
BEGIN
  EXECUTE format('ALTER TABLE entities %1$s TRIGGER entities_capture_insert, '
                 '%1$s TRIGGER entities_capture_update, %1$s TRIGGER entities_capture_delete, '
                 '%1$s TRIGGER entities_capture_truncate', v_action);
  IF NOT p_enabled THEN
    DELETE FROM hierarchy_change_rows;
  END IF;
END
$fn$;
