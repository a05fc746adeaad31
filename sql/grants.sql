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
