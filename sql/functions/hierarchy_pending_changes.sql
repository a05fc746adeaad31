-- Changes committed but not reflected in a view: transactions not visible in the snapshot of
-- its last successful refresh. Every xid below the snapshot's xmin is visible, so only the tail
-- is read, through the primary key. The count stops at 10 001 (a view that keeps failing must
-- not make every status call and metrics scrape read the whole log); the oldest change is the
-- oldest among them, in xid order.
CREATE OR REPLACE FUNCTION hierarchy_pending_changes(
    p_view text, OUT pending_changes bigint, OUT oldest_change_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
  SELECT count(*), min(p.changed_at)
    FROM (SELECT c.changed_at
            FROM hierarchy_view_state s
            JOIN hierarchy_changes c
              ON s.snapshot IS NULL
              OR (c.xid >= pg_snapshot_xmin(s.snapshot)
                  AND NOT pg_visible_in_snapshot(c.xid, s.snapshot))
           WHERE s.view_name = p_view
           ORDER BY c.xid
           LIMIT 10001) p
$fn$;
