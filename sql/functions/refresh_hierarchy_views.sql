-- refresh_hierarchy_views(): the one refresh path, shared by the CLI, the daemon and psql users
-- (docs/semantics.md, "Refreshing"). Returns one row per view:
--   status   refreshed | skipped | failed | cancelled
--   reason   a code decided from state or SQLSTATE, never from message text: no_changes,
--            lock_busy, statement_timeout, lock_timeout, cancelled, missing, error, or null
--   method   concurrent | plain (materialized strategy), incremental | full (incremental)
--
-- A function, not a procedure: `SELECT * FROM refresh_hierarchy_views()` must return rows. So it
-- runs in the caller's transaction, and each view is refreshed in its own subtransaction (the
-- BEGIN ... EXCEPTION block): a failure in one view rolls back only that view, and its audit row
-- is written after the rollback, so it commits with everything else.
--
-- Single-flight: pg_try_advisory_xact_lock. A second caller does not queue behind the first; it
-- returns `skipped` / `lock_busy` at once, names the holder, and is audited. A clean skip (nothing
-- pending) is counted on hierarchy_view_state, not audited: a 5-second schedule would write
-- 35 000 rows a day.
--
-- Staleness: a materialized view records pg_current_snapshot() taken just before its REFRESH
-- (REFRESH reads a snapshot at least as new: conservative, never loses a change). An incremental
-- view records the exact snapshot its apply statement read (hierarchy_apply_*.sql).
--
-- Timeouts are the caller's: statement_timeout bounds the whole call, lock_timeout each lock
-- wait. Both a statement timeout and a cancel raise 57014; they are told apart by the time the
-- statement has run against the statement_timeout in force. A statement timeout fails the view
-- being refreshed and skips the rest; a cancel marks it and the rest `cancelled`.
--
-- After a refresh that changed rows, one NOTIFY on hierarchy_views_refreshed with
-- {"views", "rows_changed", "entity_ids", "all"}: the ids of the changed rows when there are at
-- most 300 and every refreshed view could name them, else "all": true (a materialized view's
-- REFRESH cannot name them). Sent by the refresher, once per call: writers never notify.
CREATE OR REPLACE FUNCTION refresh_hierarchy_views(
    p_force boolean DEFAULT false,
    p_views text[] DEFAULT NULL,
    p_trigger text DEFAULT 'sql',
    p_full boolean DEFAULT false)
  RETURNS TABLE (view_name text, status text, reason text, method text, duration_ms double precision,
                 rows bigint, rows_changed bigint, staleness_ms bigint, error_code text,
                 error_message text)
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
#variable_conflict use_column
DECLARE
  c_all_views    constant text[] := ARRAY['mv_entity_ancestors', 'mv_descendant_counts'];
  c_lock_key     constant bigint := 4107315530992118;
  c_max_ids      constant integer := 300;
  v_views        text[];
  v_view         text;
  v_started      timestamptz;
  v_pending      bigint;
  v_oldest       timestamptz;
  v_staleness    bigint;
  v_state        hierarchy_view_state%ROWTYPE;
  v_kind         "char";
  v_populated    boolean;
  v_capture      boolean;
  v_snapshot     pg_snapshot;
  v_as_of        timestamptz;
  v_rows         bigint;
  v_changed      bigint;
  v_status       text;
  v_reason       text;
  v_method       text;
  v_code         text;
  v_message      text;
  v_holder       integer;
  v_stop_status  text;
  v_stop_reason  text;
  v_stop_message text;
  v_stop_code    text;
  v_locked       boolean := false;
  v_apply        record;
  v_pending_rows bigint;
  v_truncated    boolean;
  v_timeout_ms   bigint;
  v_ids          bigint[] := '{}';
  v_ids_known    boolean := true;
  v_count_known  boolean := true;
  v_total        bigint := 0;
  v_notify_views text[] := '{}';
BEGIN
  IF p_trigger IS NULL OR p_trigger NOT IN ('schedule', 'change', 'manual', 'sql') THEN
    RAISE EXCEPTION 'unknown refresh trigger %', quote_nullable(p_trigger)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'use one of schedule, change, manual, sql';
  END IF;
  IF p_views IS NOT NULL AND NOT (p_views <@ c_all_views) THEN
    RAISE EXCEPTION 'unknown view in %', p_views
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'views are mv_entity_ancestors and mv_descendant_counts';
  END IF;
  -- Keep the canonical order (ancestors first) whatever order the caller gave.
  SELECT array_agg(v ORDER BY ord) INTO v_views
    FROM unnest(c_all_views) WITH ORDINALITY AS t(v, ord)
   WHERE p_views IS NULL OR v = ANY (p_views);
  -- An empty list is a no-op: callers use it to have this function compiled in their session
  -- before arming a short statement_timeout.
  IF v_views IS NULL THEN
    RETURN;
  END IF;

  -- Every step that a statement timeout or a cancel can interrupt runs inside a BEGIN ...
  -- EXCEPTION block, so an interruption is recorded instead of aborting the call.
  BEGIN
    v_locked := pg_try_advisory_xact_lock(c_lock_key);
    IF NOT v_locked THEN
      SELECT l.pid INTO v_holder FROM pg_locks l
       WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.classid = (c_lock_key >> 32)::oid
         AND l.objid = (c_lock_key & 4294967295)::oid
       LIMIT 1;
      v_stop_status := 'skipped';
      v_stop_reason := 'lock_busy';
      v_stop_message := 'another refresh is running' ||
        COALESCE(' (backend pid ' || v_holder || ')', '') || '; not queued behind it';
    END IF;
  EXCEPTION WHEN query_canceled THEN
    v_locked := false;
    v_timeout_ms := (SELECT s.setting::bigint FROM pg_settings s WHERE s.name = 'statement_timeout');
    IF v_timeout_ms > 0 AND extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000 + 5 >= v_timeout_ms THEN
      v_stop_status := 'failed'; v_stop_reason := 'statement_timeout';
    ELSE
      v_stop_status := 'cancelled'; v_stop_reason := 'cancelled';
    END IF;
    GET STACKED DIAGNOSTICS v_stop_code = RETURNED_SQLSTATE, v_stop_message = MESSAGE_TEXT;
    v_stop_message := v_stop_message || ' (before the refresh started)';
  END;

  FOREACH v_view IN ARRAY v_views LOOP
    v_started := clock_timestamp();
    v_rows := NULL; v_changed := NULL; v_code := NULL; v_message := NULL; v_as_of := NULL;
    v_pending := NULL; v_staleness := NULL; v_reason := NULL; v_method := NULL;

    IF v_stop_status IS NOT NULL THEN
      v_status := v_stop_status;
      v_reason := v_stop_reason;
      v_message := v_stop_message;
      v_code := v_stop_code;
    ELSE
      BEGIN
        SELECT p.pending_changes, p.oldest_change_at INTO v_pending, v_oldest
          FROM hierarchy_pending_changes(v_view) p;
        v_staleness := CASE WHEN v_oldest IS NULL THEN 0
          ELSE GREATEST(0, floor(extract(epoch FROM v_started - v_oldest) * 1000))::bigint END;
        SELECT * INTO v_state FROM hierarchy_view_state s WHERE s.view_name = v_view;
        SELECT c.relkind, c.relispopulated INTO v_kind, v_populated
          FROM pg_class c WHERE c.oid = to_regclass(v_view);
        IF v_kind IS NULL THEN
          v_status := 'failed'; v_reason := 'missing'; v_code := '42P01';
          v_message := format('%s does not exist; run hierarchy-db repair', v_view);
        ELSIF v_kind <> (CASE v_state.strategy WHEN 'incremental' THEN 'r' ELSE 'm' END)::"char" THEN
          v_status := 'failed'; v_reason := 'missing'; v_code := '42809';
          v_message := format('%s is a %s but its strategy is %s; run hierarchy-db repair', v_view,
                              CASE v_kind WHEN 'r' THEN 'table' WHEN 'm' THEN 'materialized view' ELSE 'relation of another kind' END,
                              v_state.strategy);
        ELSIF v_populated AND v_pending = 0 AND NOT p_force AND NOT p_full THEN
          v_status := 'skipped'; v_reason := 'no_changes';
          v_message := 'no pending changes';
          UPDATE hierarchy_view_state s SET clean_skips = s.clean_skips + 1, last_checked_at = clock_timestamp()
           WHERE s.view_name = v_view;
        ELSIF v_state.strategy = 'materialized' THEN
          v_snapshot := pg_current_snapshot();
          v_as_of := clock_timestamp();
          IF v_populated THEN
            v_method := 'concurrent';
            EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', v_view);
          ELSE
            -- CONCURRENTLY needs a populated view: the first refresh is a plain one.
            v_method := 'plain';
            EXECUTE format('REFRESH MATERIALIZED VIEW %I', v_view);
          END IF;
          EXECUTE format('SELECT count(*) FROM %I', v_view) INTO v_rows;
          -- REFRESH cannot tell which rows changed, nor how many.
          v_ids_known := false;
          v_count_known := false;
          UPDATE hierarchy_view_state s
             SET snapshot = v_snapshot, data_as_of = v_as_of, last_refreshed_at = clock_timestamp(),
                 row_count = v_rows
           WHERE s.view_name = v_view;
          v_status := 'refreshed';
          v_notify_views := v_notify_views || v_view;
        ELSE
          -- Incremental. Recompute from the definition (method full) when asked, when the table
          -- reflects no known snapshot, when capture is off (changes were not recorded), after a
          -- TRUNCATE, or when the pending set is a large share of the table.
          SELECT bool_and(t.tgenabled <> 'D') INTO v_capture
            FROM pg_trigger t
           WHERE t.tgrelid = 'entities'::regclass AND t.tgname LIKE 'entities\_capture\_%';
          v_apply := NULL;
          IF NOT p_full AND v_state.snapshot IS NOT NULL AND v_capture THEN
            SELECT count(*), COALESCE(bool_or(r.entity_id IS NULL), false) INTO v_pending_rows, v_truncated
              FROM hierarchy_change_rows r
             WHERE NOT pg_visible_in_snapshot(r.xid, v_state.snapshot);
            IF NOT v_truncated AND v_pending_rows <= GREATEST(10000, COALESCE(v_state.row_count, 0) / 5) THEN
              IF v_view = 'mv_entity_ancestors' THEN
                SELECT * INTO v_apply FROM hierarchy_apply_ancestors(v_state.snapshot);
              ELSE
                SELECT * INTO v_apply FROM hierarchy_apply_descendant_counts(v_state.snapshot);
              END IF;
              IF v_apply.needs_full THEN
                v_apply := NULL;
              ELSE
                v_method := 'incremental';
              END IF;
            END IF;
          END IF;
          IF v_apply IS NULL THEN
            v_method := 'full';
            SELECT * INTO v_apply FROM hierarchy_reconcile_view(v_view);
          END IF;
          v_snapshot := v_apply.applied_snapshot;
          v_as_of := clock_timestamp();
          v_changed := v_apply.rows_changed;
          v_rows := CASE WHEN v_method = 'full' OR v_state.row_count IS NULL
                         THEN NULL
                         ELSE v_state.row_count + v_apply.rows_inserted - v_apply.rows_deleted END;
          IF v_rows IS NULL THEN
            EXECUTE format('SELECT count(*) FROM %I', v_view) INTO v_rows;
          END IF;
          UPDATE hierarchy_view_state s
             SET snapshot = v_snapshot, data_as_of = v_as_of, last_refreshed_at = clock_timestamp(),
                 row_count = v_rows
           WHERE s.view_name = v_view;
          v_status := 'refreshed';
          IF v_changed > 0 THEN
            v_notify_views := v_notify_views || v_view;
            v_total := v_total + v_changed;
            IF v_changed > c_max_ids THEN
              v_ids_known := false;
            ELSE
              v_ids := v_ids || v_apply.changed_ids;
            END IF;
          END IF;
        END IF;
      EXCEPTION
        WHEN query_canceled THEN
          GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
          v_rows := NULL; v_changed := NULL; v_as_of := NULL;
          v_notify_views := array_remove(v_notify_views, v_view);
          v_timeout_ms := (SELECT s.setting::bigint FROM pg_settings s WHERE s.name = 'statement_timeout');
          IF v_timeout_ms > 0 AND extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000 + 5 >= v_timeout_ms THEN
            v_status := 'failed'; v_reason := 'statement_timeout';
            v_stop_status := 'skipped'; v_stop_reason := 'statement_timeout';
            v_stop_message := format('not attempted: statement timeout reached while refreshing %s', v_view);
          ELSE
            v_status := 'cancelled'; v_reason := 'cancelled';
            v_stop_status := 'cancelled'; v_stop_reason := 'cancelled';
            v_stop_message := format('not attempted: cancelled while refreshing %s', v_view);
          END IF;
        WHEN lock_not_available THEN
          GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
          v_rows := NULL; v_changed := NULL; v_as_of := NULL;
          v_status := 'failed'; v_reason := 'lock_timeout';
        WHEN OTHERS THEN
          GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
          v_rows := NULL; v_changed := NULL; v_as_of := NULL;
          v_status := 'failed'; v_reason := 'error';
      END;
    END IF;

    IF v_reason IS DISTINCT FROM 'no_changes' THEN
      INSERT INTO mv_refresh_audit (view_name, trigger, status, reason, method, started_at, finished_at,
                                    duration_ms, rows, rows_changed, staleness_ms, pending_changes,
                                    data_as_of, error_code, error_message, application_name, backend_pid)
      VALUES (v_view, p_trigger, v_status, v_reason, v_method, v_started, clock_timestamp(),
              round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision,
              v_rows, v_changed, v_staleness, v_pending, v_as_of, v_code, v_message,
              current_setting('application_name', true), pg_backend_pid());
    END IF;

    view_name := v_view;
    status := v_status;
    reason := v_reason;
    method := v_method;
    duration_ms := round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision;
    rows := v_rows;
    rows_changed := v_changed;
    staleness_ms := v_staleness;
    error_code := v_code;
    error_message := v_message;
    RETURN NEXT;
  END LOOP;

  IF v_locked THEN
    BEGIN
      IF cardinality(v_notify_views) > 0 THEN
        PERFORM pg_notify('hierarchy_views_refreshed', json_build_object(
          'views', v_notify_views,
          'rows_changed', CASE WHEN v_count_known THEN v_total END,
          'entity_ids', CASE WHEN v_ids_known AND cardinality(v_ids) <= c_max_ids
                             THEN (SELECT array_agg(DISTINCT i ORDER BY i) FROM unnest(v_ids) i) END,
          'all', NOT (v_ids_known AND cardinality(v_ids) <= c_max_ids))::text);
      END IF;
      -- Logged transactions every view reflects are no longer needed. Below the oldest xmin of
      -- the views' snapshots every xid is visible to all of them: a range delete on the key.
      DELETE FROM hierarchy_changes c
       WHERE c.xid < (SELECT min(pg_snapshot_xmin(s.snapshot)) FROM hierarchy_view_state s
                       WHERE s.view_name = ANY (c_all_views) AND s.snapshot IS NOT NULL
                      HAVING count(*) = cardinality(c_all_views));
      DELETE FROM hierarchy_changes c
       WHERE c.xid >= (SELECT min(pg_snapshot_xmin(s.snapshot)) FROM hierarchy_view_state s
                        WHERE s.view_name = ANY (c_all_views))
         AND (SELECT count(*) FROM hierarchy_view_state s
               WHERE s.view_name = ANY (c_all_views) AND s.snapshot IS NOT NULL
                 AND pg_visible_in_snapshot(c.xid, s.snapshot)) = cardinality(c_all_views);
      -- Captured rows every incremental view has applied are no longer needed either.
      DELETE FROM hierarchy_change_rows r
       WHERE NOT EXISTS (SELECT 1 FROM hierarchy_view_state s
                          WHERE s.strategy = 'incremental'
                            AND (s.snapshot IS NULL OR NOT pg_visible_in_snapshot(r.xid, s.snapshot)));
      -- Audit retention: 30 days unless ALTER DATABASE ... SET hierarchy_db.audit_retention = '7 days'.
      DELETE FROM mv_refresh_audit a
       WHERE a.started_at < now() - COALESCE(NULLIF(current_setting('hierarchy_db.audit_retention', true), ''), '30 days')::interval;
    EXCEPTION WHEN query_canceled THEN
      NULL; -- housekeeping only: the next call does it
    END;
  END IF;
END
$fn$;
