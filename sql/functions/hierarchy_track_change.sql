-- Change tracking for staleness: one row per writing transaction in hierarchy_changes, keyed by
-- the writer's own xid, so concurrent writers never wait on each other or on a shared row.
-- Writers send no NOTIFY: PostgreSQL commits every notifying transaction one at a time on a
-- database-wide lock held across the commit flush. The daemon polls hierarchy_changes_probe().
-- SECURITY DEFINER: any role allowed to write entities is tracked without privileges on the log.
CREATE OR REPLACE FUNCTION hierarchy_track_change() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
BEGIN
  -- The first tracked statement of a transaction inserts its row; later ones find it.
  INSERT INTO hierarchy_changes (xid, changed_at)
  VALUES (pg_current_xact_id(), clock_timestamp())
  ON CONFLICT (xid) DO NOTHING;
  RETURN NULL;
END
$fn$;
