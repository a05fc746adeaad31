// The refresh engine: change tracking on `entities`, the audit table, refresh_hierarchy_views(),
// hierarchy_view_status(), and the least-privilege roles (SPEC 2.4–2.6).
//
// The SQL bodies are exported: they are the canonical definitions `verify` compares the live
// objects with and `repair` recreates from.
import type { MigrationBuilder } from 'node-pg-migrate';

/** Advisory lock key of refresh single-flight (transaction-level, inside the function). */
export const REFRESH_LOCK_KEY = 4_107_315_530_992_118n;

/**
 * One row per writing transaction (not per row, not one hot row): writers never contend with
 * each other, and a refresh can tell exactly which transactions its snapshot saw.
 */
export const CHANGES_TABLE_SQL = `
  CREATE TABLE hierarchy_changes (
    xid         xid8 PRIMARY KEY,
    changed_at  timestamptz NOT NULL
  )`;

/** Per view: the snapshot of its last successful refresh (NULL: not refreshed since tracking began). */
export const VIEW_STATE_TABLE_SQL = `
  CREATE TABLE hierarchy_view_state (
    view_name          text PRIMARY KEY,
    snapshot           pg_snapshot,
    data_as_of         timestamptz,
    last_refreshed_at  timestamptz
  )`;

/** The audit of every refresh attempt, whoever made it (SPEC 2.6). */
export const AUDIT_TABLE_SQL = `
  CREATE TABLE mv_refresh_audit (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    view_name         text NOT NULL,
    trigger           text NOT NULL CHECK (trigger IN ('schedule', 'change', 'manual', 'sql')),
    status            text NOT NULL CHECK (status IN ('refreshed', 'skipped', 'failed', 'cancelled')),
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    duration_ms       double precision NOT NULL,
    rows              bigint,
    staleness_ms      bigint,
    pending_changes   bigint,
    data_as_of        timestamptz,
    error_code        text,
    error_message     text,
    application_name  text,
    backend_pid       integer
  )`;

/**
 * The change-tracking trigger function. SECURITY DEFINER so that any role allowed to write
 * `entities` is tracked without needing privileges on `hierarchy_changes`.
 */
export const TRACK_CHANGE_FUNCTION_SQL = `
  CREATE OR REPLACE FUNCTION hierarchy_track_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = __SCHEMA__, pg_temp
  AS $fn$
  BEGIN
    -- First tracked statement of this transaction inserts its row; later ones find it.
    -- The row is the writer's own (keyed by its xid), so concurrent writers never wait
    -- on each other here.
    INSERT INTO hierarchy_changes (xid, changed_at)
    VALUES (pg_current_xact_id(), clock_timestamp())
    ON CONFLICT (xid) DO NOTHING;
    IF FOUND THEN
      -- Once per writing transaction; delivered at commit, dropped on rollback.
      PERFORM pg_notify('hierarchy_changed', pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
  END
  $fn$`;

/** Statement-level triggers: one cheap call per statement, whatever its row count. */
export const TRACKING_TRIGGERS_SQL = [
  `CREATE TRIGGER entities_track_changes
     AFTER INSERT OR UPDATE OR DELETE ON entities
     FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_track_change()`,
  `CREATE TRIGGER entities_track_truncate
     AFTER TRUNCATE ON entities
     FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_track_change()`,
];

/**
 * Changes committed but not reflected in a view: not visible in the snapshot of its last
 * successful refresh. Every xid below the snapshot's xmin is visible, so only the tail is tested.
 */
export const PENDING_CHANGES_FUNCTION_SQL = `
  CREATE OR REPLACE FUNCTION hierarchy_pending_changes(
    p_view text, OUT pending_changes bigint, OUT oldest_change_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = __SCHEMA__, pg_temp
  AS $fn$
    SELECT count(*), min(c.changed_at)
      FROM hierarchy_changes c
      LEFT JOIN hierarchy_view_state s ON s.view_name = p_view
     WHERE s.snapshot IS NULL
        OR (c.xid >= pg_snapshot_xmin(s.snapshot) AND NOT pg_visible_in_snapshot(c.xid, s.snapshot))
  $fn$`;

/** Per view: populated, pending changes, staleness (data age), and when its data was read. */
export const VIEW_STATUS_FUNCTION_SQL = `
  CREATE OR REPLACE FUNCTION hierarchy_view_status()
    RETURNS TABLE (view_name text, populated boolean, staleness_ms bigint, pending_changes bigint,
                   oldest_change_at timestamptz, data_as_of timestamptz, last_refreshed_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = __SCHEMA__, pg_temp
  AS $fn$
    SELECT v.name,
           COALESCE(c.relispopulated, false),
           CASE WHEN p.oldest_change_at IS NULL THEN 0
                ELSE GREATEST(0, floor(extract(epoch FROM clock_timestamp() - p.oldest_change_at) * 1000))::bigint
           END,
           p.pending_changes,
           p.oldest_change_at,
           s.data_as_of,
           s.last_refreshed_at
      FROM unnest(ARRAY['mv_entity_ancestors', 'mv_descendant_counts']) WITH ORDINALITY AS v(name, ord)
      LEFT JOIN pg_class c ON c.oid = to_regclass(v.name)
      LEFT JOIN hierarchy_view_state s ON s.view_name = v.name
      CROSS JOIN LATERAL hierarchy_pending_changes(v.name) p
     ORDER BY v.ord
  $fn$`;

/**
 * refresh_hierarchy_views(): SPEC 2.5.
 *
 * A function, not a procedure: `SELECT * FROM refresh_hierarchy_views()` must return one row per
 * view, which a procedure cannot. So it runs in the caller's transaction, and each view is
 * refreshed in its own subtransaction (the BEGIN ... EXCEPTION block): a failure in one view
 * rolls back only that view's refresh, and its audit row is written after the rollback, so it
 * commits with everything else. Holding both views' locks to the end costs readers nothing:
 * REFRESH ... CONCURRENTLY takes an EXCLUSIVE lock, which does not conflict with SELECT.
 *
 * Single-flight: pg_try_advisory_xact_lock. A second caller does not queue a second full refresh
 * behind the first; it returns `skipped` at once, says who holds the lock, and is audited.
 *
 * Staleness: the snapshot is taken just before each REFRESH. REFRESH reads with a snapshot taken
 * at the same moment or later, so every change our snapshot saw is in the new data; a change it
 * did not see stays pending even if the REFRESH happened to include it (conservative, never lost).
 *
 * Timeouts are the caller's: statement_timeout bounds the whole call, lock_timeout each lock
 * wait. A statement timeout fails the view being refreshed (57014) and skips the rest; a cancel
 * (pg_cancel_backend) marks it and the rest `cancelled`.
 */
export const REFRESH_FUNCTION_SQL = `
  CREATE OR REPLACE FUNCTION refresh_hierarchy_views(
    p_force boolean DEFAULT false,
    p_views text[] DEFAULT NULL,
    p_trigger text DEFAULT 'sql')
    RETURNS TABLE (view_name text, status text, duration_ms double precision, rows bigint,
                   staleness_ms bigint, error_code text, error_message text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = __SCHEMA__, pg_temp
  AS $fn$
  #variable_conflict use_column
  DECLARE
    c_all_views   constant text[] := ARRAY['mv_entity_ancestors', 'mv_descendant_counts'];
    v_views       text[];
    v_view        text;
    v_started     timestamptz;
    v_pending     bigint;
    v_oldest      timestamptz;
    v_staleness   bigint;
    v_populated   boolean;
    v_snapshot    pg_snapshot;
    v_as_of       timestamptz;
    v_rows        bigint;
    v_status      text;
    v_code        text;
    v_message     text;
    v_holder      integer;
    v_stop_status text;
    v_stop_reason text;
    v_locked      boolean := false;
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

    -- Every step that can be interrupted by statement_timeout or a cancel runs inside a
    -- BEGIN ... EXCEPTION block, so an interruption is recorded instead of aborting the call.
    BEGIN
      v_locked := pg_try_advisory_xact_lock(${REFRESH_LOCK_KEY});
      IF NOT v_locked THEN
        SELECT l.pid INTO v_holder FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid = (${REFRESH_LOCK_KEY} >> 32)::oid
           AND l.objid = (${REFRESH_LOCK_KEY} & 4294967295)::oid
         LIMIT 1;
        v_stop_status := 'skipped';
        v_stop_reason := 'another refresh is running' ||
          COALESCE(' (backend pid ' || v_holder || ')', '') || '; not queued behind it';
      END IF;
    EXCEPTION WHEN query_canceled THEN
      GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
      v_locked := false;
      v_stop_status := CASE WHEN v_message LIKE '%statement timeout%' THEN 'failed' ELSE 'cancelled' END;
      v_stop_reason := v_message || ' (before the refresh started)';
    END;

    FOREACH v_view IN ARRAY v_views LOOP
      v_started := clock_timestamp();
      v_rows := NULL; v_code := NULL; v_message := NULL; v_as_of := NULL;
      v_pending := NULL; v_staleness := NULL;

      IF v_stop_status IS NOT NULL THEN
        v_status := v_stop_status;
        v_message := v_stop_reason;
        v_code := CASE WHEN v_stop_status IN ('failed', 'cancelled') AND v_stop_reason NOT LIKE 'not attempted%'
                       THEN '57014' END;
      ELSE
        BEGIN
          SELECT p.pending_changes, p.oldest_change_at INTO v_pending, v_oldest
            FROM hierarchy_pending_changes(v_view) p;
          v_staleness := CASE WHEN v_oldest IS NULL THEN 0
            ELSE GREATEST(0, floor(extract(epoch FROM v_started - v_oldest) * 1000))::bigint END;
          SELECT c.relispopulated INTO v_populated FROM pg_class c WHERE c.oid = to_regclass(v_view);
          IF v_populated IS NULL THEN
            v_status := 'failed';
            v_code := '42P01';
            v_message := format('materialized view %s does not exist; run hierarchy-db repair', v_view);
          ELSIF v_populated AND v_pending = 0 AND NOT p_force THEN
            v_status := 'skipped';
            v_message := 'no pending changes';
          ELSE
            v_snapshot := pg_current_snapshot();
            v_as_of := clock_timestamp();
            IF v_populated THEN
              EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', v_view);
            ELSE
              -- CONCURRENTLY needs a populated view: the first refresh is a plain one.
              EXECUTE format('REFRESH MATERIALIZED VIEW %I', v_view);
            END IF;
            EXECUTE format('SELECT count(*) FROM %I', v_view) INTO v_rows;
            INSERT INTO hierarchy_view_state AS s (view_name, snapshot, data_as_of, last_refreshed_at)
            VALUES (v_view, v_snapshot, v_as_of, clock_timestamp())
            ON CONFLICT (view_name) DO UPDATE
              SET snapshot = EXCLUDED.snapshot, data_as_of = EXCLUDED.data_as_of,
                  last_refreshed_at = EXCLUDED.last_refreshed_at;
            v_status := 'refreshed';
          END IF;
        EXCEPTION
          WHEN query_canceled THEN
            GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
            v_rows := NULL; v_as_of := NULL;
            IF v_message LIKE '%statement timeout%' THEN
              v_status := 'failed';
              v_stop_status := 'skipped';
              v_stop_reason := format('not attempted: statement timeout reached while refreshing %s', v_view);
            ELSE
              v_status := 'cancelled';
              v_stop_status := 'cancelled';
              v_stop_reason := format('not attempted: cancelled while refreshing %s', v_view);
            END IF;
          WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
            v_rows := NULL; v_as_of := NULL;
            v_status := 'failed';
        END;
      END IF;

      INSERT INTO mv_refresh_audit (view_name, trigger, status, started_at, finished_at, duration_ms,
                                    rows, staleness_ms, pending_changes, data_as_of, error_code,
                                    error_message, application_name, backend_pid)
      VALUES (v_view, p_trigger, v_status, v_started, clock_timestamp(),
              round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision,
              v_rows, v_staleness, v_pending, v_as_of, v_code, v_message,
              current_setting('application_name', true), pg_backend_pid());

      view_name := v_view;
      status := v_status;
      duration_ms := round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision;
      rows := v_rows;
      staleness_ms := v_staleness;
      error_code := v_code;
      error_message := v_message;
      RETURN NEXT;
    END LOOP;

    IF v_locked THEN
      BEGIN
        -- Changes every view has reflected are no longer needed.
        DELETE FROM hierarchy_changes c
         WHERE (SELECT count(*) FROM hierarchy_view_state s
                 WHERE s.view_name = ANY (c_all_views) AND s.snapshot IS NOT NULL
                   AND pg_visible_in_snapshot(c.xid, s.snapshot)) = cardinality(c_all_views);
        -- Audit retention: 30 days unless ALTER DATABASE ... SET hierarchy_db.audit_retention = '7 days'.
        DELETE FROM mv_refresh_audit a
         WHERE a.started_at < now() - COALESCE(NULLIF(current_setting('hierarchy_db.audit_retention', true), ''), '30 days')::interval;
      EXCEPTION WHEN query_canceled THEN
        NULL; -- housekeeping only: the next call does it
      END;
    END IF;
  END
  $fn$`;

export async function up(pgm: MigrationBuilder): Promise<void> {
  pgm.sql(CHANGES_TABLE_SQL);
  pgm.sql(VIEW_STATE_TABLE_SQL);
  pgm.sql(
    `INSERT INTO hierarchy_view_state (view_name) VALUES ('mv_entity_ancestors'), ('mv_descendant_counts')`,
  );
  pgm.sql(AUDIT_TABLE_SQL);
  pgm.sql(
    'CREATE INDEX mv_refresh_audit_latest_idx ON mv_refresh_audit (view_name, started_at DESC, id DESC)',
  );
  pgm.sql('CREATE INDEX mv_refresh_audit_started_at_idx ON mv_refresh_audit (started_at)');

  // The schema is pinned in each SECURITY DEFINER function's search_path: PostgreSQL 17+ runs
  // REFRESH with a restricted search_path, and a definer function must never resolve names
  // through the caller's path.
  for (const definition of [
    TRACK_CHANGE_FUNCTION_SQL,
    PENDING_CHANGES_FUNCTION_SQL,
    VIEW_STATUS_FUNCTION_SQL,
    REFRESH_FUNCTION_SQL,
  ]) {
    pgm.sql(inCurrentSchema(definition));
  }
  for (const trigger of TRACKING_TRIGGERS_SQL) pgm.sql(trigger);

  pgm.sql(`REVOKE ALL ON FUNCTION refresh_hierarchy_views(boolean, text[], text) FROM PUBLIC`);
  pgm.sql(`REVOKE ALL ON FUNCTION hierarchy_track_change() FROM PUBLIC`);
  pgm.sql(ROLES_SQL);
}

/** Creates the roles when the migrating role may, and grants them their privileges. */
export const ROLES_SQL = `DO $do$
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
    GRANT EXECUTE ON FUNCTION hierarchy_view_status() TO hierarchy_reader;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_refresher') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hierarchy_refresher', current_schema());
    GRANT EXECUTE ON FUNCTION refresh_hierarchy_views(boolean, text[], text) TO hierarchy_refresher;
  END IF;
END $do$`;

export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.sql('DROP TRIGGER IF EXISTS entities_track_truncate ON entities');
  pgm.sql('DROP TRIGGER IF EXISTS entities_track_changes ON entities');
  pgm.sql('DROP FUNCTION IF EXISTS refresh_hierarchy_views(boolean, text[], text)');
  pgm.sql('DROP FUNCTION IF EXISTS hierarchy_view_status()');
  pgm.sql('DROP FUNCTION IF EXISTS hierarchy_pending_changes(text)');
  pgm.sql('DROP FUNCTION IF EXISTS hierarchy_track_change()');
  pgm.sql('DROP TABLE IF EXISTS mv_refresh_audit, hierarchy_view_state, hierarchy_changes');
  pgm.sql(`DO $do$
  BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_reader') THEN
      REVOKE SELECT ON mv_entity_ancestors, mv_descendant_counts FROM hierarchy_reader;
    END IF;
  END $do$`);
  // The roles stay: they are cluster-wide and other databases may use them.
}

/**
 * Wraps a function definition so it is created with `__SCHEMA__` replaced by the migrating
 * session's current schema, quoted by the server.
 */
export function inCurrentSchema(definition: string): string {
  return `DO $do$ BEGIN EXECUTE replace($q$${definition}$q$, '__SCHEMA__', quote_ident(current_schema())); END $do$`;
}
