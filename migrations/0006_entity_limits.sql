-- Up Migration
-- Limits on the shape of a path (docs/semantics.md, "Limits"): at most 100 levels, at most 512
-- bytes of text, labels of at most 64 characters. A GiST key of an ltree holds whole paths (an
-- inner key two of them), so one very deep or long path makes every page split of the path
-- indexes degenerate: a chain of 254 short levels ran 80 s in one INSERT, ignoring
-- statement_timeout, grew entities_depth_path_gist to 1.8 GB and ended in "stack depth limit
-- exceeded". Well inside these limits the indexes stay small and a row costs well under a
-- millisecond; beyond them a write is rejected before it reaches an index.
--
-- Added NOT VALID here (new writes are checked from this commit on; the lock is held only for
-- the catalog change) and validated by 0007_entity_limits_validate.sql in a transaction of its
-- own, whose scan takes a lock that neither readers nor writers wait for.
SELECT set_config('search_path', format('%I, pg_temp', current_schema()), true);

-- Existing rows beyond the limits: fail with what to do, before changing anything.
DO $do$
DECLARE
  v_count bigint;
  v_example record;
BEGIN
  SELECT count(*) INTO v_count FROM entities
   WHERE nlevel(path) > 100 OR octet_length(path::text) > 512 OR path::text ~ '[^.]{65}';
  IF v_count > 0 THEN
    SELECT id, nlevel(path) AS depth, octet_length(path::text) AS bytes INTO v_example
      FROM entities
     WHERE nlevel(path) > 100 OR octet_length(path::text) > 512 OR path::text ~ '[^.]{65}'
     ORDER BY nlevel(path) DESC, id LIMIT 1;
    RAISE EXCEPTION '% entities exceed the path limits (at most 100 levels, 512 bytes, labels of 64 characters), e.g. id % (% levels, % bytes): shorten or move them, then migrate again',
        v_count, v_example.id, v_example.depth, v_example.bytes
      USING ERRCODE = 'check_violation',
            HINT = 'shorten or move those paths (one UPDATE moves a whole subtree), then run `hierarchy-db migrate up` again';
  END IF;
END
$do$;

-- ACCESS EXCLUSIVE for a moment: tried with a short lock_timeout and retried, so a long
-- transaction on entities delays the migration instead of queueing every writer behind it.
DO $do$
DECLARE
  v_attempts integer := 0;
  v_lock_timeout text := current_setting('lock_timeout');
BEGIN
  LOOP
    BEGIN
      PERFORM set_config('lock_timeout', '100ms', true);
      ALTER TABLE entities
        ADD CONSTRAINT entities_path_depth_limit CHECK (nlevel(path) <= 100) NOT VALID,
        ADD CONSTRAINT entities_path_length_limit CHECK (octet_length(path::text) <= 512) NOT VALID,
        ADD CONSTRAINT entities_path_label_length_limit CHECK (path::text !~ '[^.]{65}') NOT VALID;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      v_attempts := v_attempts + 1;
      IF v_attempts >= 150 THEN
        RAISE EXCEPTION 'could not lock entities within 30 s to add the path limits: a long transaction is using it'
          USING ERRCODE = 'lock_not_available',
                HINT = 'find it in pg_stat_activity, end it, and run `hierarchy-db migrate up` again';
      END IF;
      PERFORM set_config('lock_timeout', v_lock_timeout, true);
      PERFORM pg_sleep(0.1);
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', v_lock_timeout, true);
END
$do$;

COMMENT ON CONSTRAINT entities_path_depth_limit ON entities IS
  'A path has at most 100 levels (docs/semantics.md, "Limits").';
COMMENT ON CONSTRAINT entities_path_length_limit ON entities IS
  'A path is at most 512 bytes of text (docs/semantics.md, "Limits").';
COMMENT ON CONSTRAINT entities_path_label_length_limit ON entities IS
  'A label is at most 64 characters (docs/semantics.md, "Limits").';

-- `status` names the refresh in progress: a copy of sql/functions/hierarchy_refresh_activity.sql
-- as of this release, and of sql/grants.sql (which grants it to both roles).
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

-- Roles and privileges (docs/semantics.md, "Roles"). Idempotent: migrations and `repair` run it.
--   hierarchy_reader     reads the views, their status, the refresh in progress and the audit
--                        (status, history)
--   hierarchy_refresher  runs refresh_hierarchy_views() and the daemon's change probe
-- A daemon logs in with both. The roles are created when the migrating role may create roles,
-- and skipped with a notice when it may not. No function of the project is executable by PUBLIC.
REVOKE ALL ON FUNCTION refresh_hierarchy_views(boolean, text[], text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_view_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_refresh_activity() FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_pending_changes(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_changes_probe() FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_track_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION entities_touch_updated_at() FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_capture_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_set_row_capture(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_apply_ancestors(pg_snapshot) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_apply_descendant_counts(pg_snapshot) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_reconcile_view(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_rebuild_view(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE hierarchy_set_view_strategy(text, text[], text) FROM PUBLIC;

DO $do$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
    -- Roles are cluster-wide: another database may have created them, possibly right now.
    BEGIN
      CREATE ROLE hierarchy_reader NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
      CREATE ROLE hierarchy_refresher NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  ELSIF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname IN ('hierarchy_reader', 'hierarchy_refresher')) THEN
    RAISE NOTICE 'hierarchy-db: role % may not create roles; skipping hierarchy_reader and hierarchy_refresher', current_user;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_reader') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hierarchy_reader', current_schema());
    GRANT SELECT ON mv_entity_ancestors, mv_descendant_counts TO hierarchy_reader;
    GRANT SELECT ON mv_refresh_audit TO hierarchy_reader;
    GRANT EXECUTE ON FUNCTION hierarchy_view_status() TO hierarchy_reader;
    GRANT EXECUTE ON FUNCTION hierarchy_refresh_activity() TO hierarchy_reader;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_refresher') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hierarchy_refresher', current_schema());
    GRANT EXECUTE ON FUNCTION refresh_hierarchy_views(boolean, text[], text, boolean) TO hierarchy_refresher;
    GRANT EXECUTE ON FUNCTION hierarchy_changes_probe() TO hierarchy_refresher;
    GRANT EXECUTE ON FUNCTION hierarchy_view_status() TO hierarchy_refresher;
    GRANT EXECUTE ON FUNCTION hierarchy_refresh_activity() TO hierarchy_refresher;
  END IF;
END
$do$;

-- Down Migration
DROP FUNCTION IF EXISTS hierarchy_refresh_activity();
ALTER TABLE entities
  DROP CONSTRAINT IF EXISTS entities_path_depth_limit,
  DROP CONSTRAINT IF EXISTS entities_path_length_limit,
  DROP CONSTRAINT IF EXISTS entities_path_label_length_limit;
