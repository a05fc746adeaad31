-- The daemon's change probe, polled every few hundred milliseconds: the newest logged
-- transaction (a backward step on the primary key) and whether any view has a pending change.
-- Logged transactions every view reflects are pruned by each refresh, so the EXISTS stops at
-- the first row it reads: the probe costs the same at any log size.
CREATE OR REPLACE FUNCTION hierarchy_changes_probe(OUT last_change text, OUT pending boolean)
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
  SELECT (SELECT max(c.xid) FROM hierarchy_changes c)::text,
         EXISTS (SELECT 1 FROM hierarchy_view_state s
                  WHERE s.snapshot IS NULL
                     OR EXISTS (SELECT 1 FROM hierarchy_changes c
                                 WHERE c.xid >= pg_snapshot_xmin(s.snapshot)
                                   AND NOT pg_visible_in_snapshot(c.xid, s.snapshot)))
$fn$;
