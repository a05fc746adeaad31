-- The session holding the refresh single-flight lock, if any (docs/semantics.md, "Single-flight"):
-- a refresh or a rebuild in progress, for `status`. One row at most: its backend pid, who it is
-- (application_name), since when its transaction and its statement run, what it waits for, and
-- which views it has reached so far (relations it holds or waits for a lock on, in refresh
-- order; the last one is being refreshed, or was just finished). SECURITY DEFINER: a role with
-- hierarchy_reader sees what the owner of the views may see in pg_stat_activity (another role's
-- transaction start, state and wait are hidden from a plain role; pid and application_name are
-- not). The key is REFRESH_LOCK_KEY in src/refresh/refresh-lock.ts.
CREATE OR REPLACE FUNCTION hierarchy_refresh_activity()
  RETURNS TABLE (pid integer, application_name text, started_at timestamptz,
                 query_start timestamptz, state text, wait_event_type text, wait_event text,
                 views text[])
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
  SELECT l.pid, a.application_name, a.xact_start, a.query_start, a.state, a.wait_event_type,
         a.wait_event,
         ARRAY(SELECT v.name
                 FROM unnest(ARRAY['mv_entity_ancestors', 'mv_descendant_counts']) WITH ORDINALITY AS v(name, ord)
                WHERE EXISTS (SELECT 1 FROM pg_locks r
                               WHERE r.pid = l.pid AND r.locktype = 'relation'
                                 AND r.database = l.database AND r.relation = to_regclass(v.name))
                ORDER BY v.ord)
    FROM pg_locks l
    LEFT JOIN pg_stat_activity a ON a.pid = l.pid
   WHERE l.locktype = 'advisory' AND l.granted
     AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
     AND l.classid = (4107315530992118 >> 32)::oid
     AND l.objid = (4107315530992118 & 4294967295)::oid
     AND l.objsubid = 1
   LIMIT 1
$fn$;
