-- The daemon's change probe, polled every few hundred milliseconds: the newest logged
-- transaction and whether some view has a change it does not reflect yet. Both read the primary
-- key backwards from the newest entry, and the second stops at the first pending one: each
-- refresh prunes the transactions every view reflects, so what is left is pending (newest
-- first), and the read is bounded at 1 000 entries whatever the log's size.
CREATE OR REPLACE FUNCTION hierarchy_changes_probe(OUT last_change text, OUT pending boolean)
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
  SELECT (SELECT max(c.xid) FROM hierarchy_changes c)::text,
         EXISTS (SELECT 1
                   FROM (SELECT c.xid FROM hierarchy_changes c ORDER BY c.xid DESC LIMIT 1000) x
                   JOIN hierarchy_view_state s
                     ON s.snapshot IS NULL OR NOT pg_visible_in_snapshot(x.xid, s.snapshot))
$fn$;
