-- The one way a view's relation is (re)built: for a definition change (migrations), for `repair`
-- and for a strategy switch (hierarchy_set_view_strategy). Readers never wait for the build:
--   1. build the new relation beside the old one, under `<view>_rebuild`, from the view's
--      definition (a materialized view selecting from it, or, for the incremental strategy, a
--      table filled from it in path order so a subtree's rows share pages), with its indexes;
--   2. swap: drop the old relation, rename the new one and its indexes, re-grant the old
--      relation's privileges (or SELECT to hierarchy_reader for a relation that was missing).
-- The swap takes an ACCESS EXCLUSIVE lock on the old relation, held to the end of the caller's
-- transaction: commit right after. It is tried with a short lock_timeout and retried, so a
-- long-running reader makes it wait instead of queueing every other reader behind it.
-- It waits for a running refresh (the single-flight lock), records the strategy and the
-- snapshot the new contents reflect in hierarchy_view_state, and writes one audit row.
CREATE OR REPLACE FUNCTION hierarchy_rebuild_view(
    p_view text,
    p_strategy text DEFAULT NULL,
    p_reason text DEFAULT 'rebuilt',
    p_trigger text DEFAULT 'sql')
  RETURNS TABLE (view_name text, strategy text, method text, rows bigint, duration_ms double precision)
  LANGUAGE plpgsql VOLATILE
  SET search_path FROM CURRENT
AS $fn$
#variable_conflict use_column
DECLARE
  v_definition text := CASE p_view
    WHEN 'mv_entity_ancestors' THEN 'hierarchy_ancestors_definition'
    WHEN 'mv_descendant_counts' THEN 'hierarchy_descendant_counts_definition' END;
  v_build       text := p_view || '_rebuild';
  v_strategy    text;
  v_kind        "char";
  v_owner       oid;
  v_acl         aclitem[];
  v_snapshot    pg_snapshot;
  v_as_of       timestamptz;
  v_rows        bigint;
  v_started     timestamptz := clock_timestamp();
  v_attempts    integer := 0;
  v_lock_timeout text := current_setting('lock_timeout');
  v_grant       record;
  v_suffix      text;
  c_suffixes    constant text[] := ARRAY['entity_id_key', 'path_gist', 'depth_path_idx'];
BEGIN
  IF v_definition IS NULL THEN
    RAISE EXCEPTION 'unknown view %', quote_nullable(p_view)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'views are mv_entity_ancestors and mv_descendant_counts';
  END IF;
  SELECT COALESCE(p_strategy, s.strategy, 'materialized') INTO v_strategy
    FROM (SELECT 1) one LEFT JOIN hierarchy_view_state s ON s.view_name = p_view;
  IF v_strategy NOT IN ('materialized', 'incremental') THEN
    RAISE EXCEPTION 'unknown strategy %', quote_nullable(v_strategy)
      USING ERRCODE = 'invalid_parameter_value', HINT = 'strategies are materialized and incremental';
  END IF;
  IF p_trigger IS NULL OR p_trigger NOT IN ('schedule', 'change', 'manual', 'sql') THEN
    RAISE EXCEPTION 'unknown refresh trigger %', quote_nullable(p_trigger)
      USING ERRCODE = 'invalid_parameter_value', HINT = 'use one of schedule, change, manual, sql';
  END IF;

  -- No refresh may run on the old relation while its replacement is built.
  PERFORM pg_advisory_xact_lock(4107315530992118);

  SELECT c.relkind, c.relowner, c.relacl INTO v_kind, v_owner, v_acl
    FROM pg_class c WHERE c.oid = to_regclass(p_view);
  IF v_kind IS NOT NULL AND v_kind NOT IN ('m', 'r') THEN
    RAISE EXCEPTION '% exists but is neither a materialized view nor a table', p_view
      USING ERRCODE = 'wrong_object_type', HINT = 'drop or rename it, then run hierarchy-db repair';
  END IF;

  IF v_strategy = 'incremental' THEN
    EXECUTE format('CREATE TABLE %I (LIKE %I) WITH (fillfactor = %s)', v_build, v_definition,
                   CASE WHEN p_view = 'mv_descendant_counts' THEN 80 ELSE 90 END);
    v_as_of := clock_timestamp();
    -- One statement: the snapshot returned is the one the definition was read in.
    EXECUTE format('WITH filled AS (INSERT INTO %I SELECT * FROM %I ORDER BY path RETURNING 1) '
                   'SELECT pg_current_snapshot(), count(*) FROM filled', v_build, v_definition)
      INTO v_snapshot, v_rows;
  ELSE
    -- Taken before the build reads: whatever it saw is in the data (conservative).
    v_snapshot := pg_current_snapshot();
    v_as_of := clock_timestamp();
    EXECUTE format('CREATE MATERIALIZED VIEW %I AS SELECT * FROM %I WITH DATA', v_build, v_definition);
    EXECUTE format('SELECT count(*) FROM %I', v_build) INTO v_rows;
  END IF;
  -- The unique index has no WHERE clause: REFRESH ... CONCURRENTLY and ON CONFLICT need it.
  EXECUTE format('CREATE UNIQUE INDEX %I ON %I (entity_id)', v_build || '_entity_id_key', v_build);
  EXECUTE format('CREATE INDEX %I ON %I USING gist (path)', v_build || '_path_gist', v_build);
  EXECUTE format('CREATE INDEX %I ON %I (path_depth, path)', v_build || '_depth_path_idx', v_build);

  LOOP
    BEGIN
      PERFORM set_config('lock_timeout', '100ms', true);
      IF v_kind = 'm' THEN
        EXECUTE format('DROP MATERIALIZED VIEW %I', p_view);
      ELSIF v_kind = 'r' THEN
        EXECUTE format('DROP TABLE %I', p_view);
      END IF;
      EXECUTE format('ALTER %s %I RENAME TO %I',
                     CASE WHEN v_strategy = 'incremental' THEN 'TABLE' ELSE 'MATERIALIZED VIEW' END,
                     v_build, p_view);
      FOREACH v_suffix IN ARRAY c_suffixes LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', v_build || '_' || v_suffix, p_view || '_' || v_suffix);
      END LOOP;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      v_attempts := v_attempts + 1;
      IF v_attempts >= 100 THEN
        RAISE EXCEPTION 'could not swap in the rebuilt % within 10 s: a long transaction is reading it', p_view
          USING ERRCODE = 'lock_not_available',
                HINT = 'find it in pg_stat_activity, end it, and run the command again';
      END IF;
      PERFORM set_config('lock_timeout', v_lock_timeout, true);
      PERFORM pg_sleep(0.1);
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', v_lock_timeout, true);

  IF v_acl IS NOT NULL THEN
    FOR v_grant IN
      SELECT a.grantee, a.privilege_type, a.is_grantable FROM aclexplode(v_acl) a WHERE a.grantee <> v_owner
    LOOP
      EXECUTE format('GRANT %s ON %I TO %s%s', v_grant.privilege_type, p_view,
                     CASE WHEN v_grant.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(v_grant.grantee)) END,
                     CASE WHEN v_grant.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
  ELSIF v_kind IS NULL AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_reader') THEN
    EXECUTE format('GRANT SELECT ON %I TO hierarchy_reader', p_view);
  END IF;

  INSERT INTO hierarchy_view_state AS s (view_name, strategy, snapshot, data_as_of, last_refreshed_at, row_count)
  VALUES (p_view, v_strategy, v_snapshot, v_as_of, clock_timestamp(), v_rows)
  ON CONFLICT (view_name) DO UPDATE
    SET strategy = EXCLUDED.strategy, snapshot = EXCLUDED.snapshot, data_as_of = EXCLUDED.data_as_of,
        last_refreshed_at = EXCLUDED.last_refreshed_at, row_count = EXCLUDED.row_count;

  INSERT INTO mv_refresh_audit (view_name, trigger, status, reason, method, started_at, finished_at,
                                duration_ms, rows, rows_changed, data_as_of, application_name, backend_pid)
  VALUES (p_view, p_trigger, 'refreshed', p_reason, 'rebuild', v_started, clock_timestamp(),
          round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision,
          v_rows, v_rows, v_as_of, current_setting('application_name', true), pg_backend_pid());

  view_name := p_view;
  strategy := v_strategy;
  method := 'rebuild';
  rows := v_rows;
  duration_ms := round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision;
  RETURN NEXT;
END
$fn$;
