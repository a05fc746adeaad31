-- Switches views between the materialized and incremental strategies, online, in short
-- transactions of its own (so: CALL it outside an explicit transaction block):
--   1. to incremental: enable row-level change capture and commit, so every write not visible to
--      the build below is captured (hierarchy_set_row_capture.sql);
--   2. per view whose strategy or relation kind differs: rebuild it beside the old relation and
--      swap (hierarchy_rebuild_view.sql), then commit;
--   3. when no view is incremental any more: disable capture and commit.
-- Idempotent: a view already in the wanted strategy, with the matching relation kind, is left as
-- it is. A procedure with transaction control cannot pin search_path, so it resolves the
-- functions it calls through the caller's search_path: call it with the hierarchy's schema on it
-- (`hierarchy-db views set-strategy` does).
CREATE OR REPLACE PROCEDURE hierarchy_set_view_strategy(
    p_strategy text,
    p_views text[] DEFAULT NULL,
    p_trigger text DEFAULT 'sql')
  LANGUAGE plpgsql
AS $fn$
DECLARE
  c_all_views constant text[] := ARRAY['mv_entity_ancestors', 'mv_descendant_counts'];
  v_view     text;
  v_views    text[];
  v_capture  boolean;
BEGIN
  IF p_strategy IS NULL OR p_strategy NOT IN ('materialized', 'incremental') THEN
    RAISE EXCEPTION 'unknown strategy %', quote_nullable(p_strategy)
      USING ERRCODE = 'invalid_parameter_value', HINT = 'strategies are materialized and incremental';
  END IF;
  IF p_views IS NOT NULL AND NOT (p_views <@ c_all_views) THEN
    RAISE EXCEPTION 'unknown view in %', p_views
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'views are mv_entity_ancestors and mv_descendant_counts';
  END IF;
  SELECT array_agg(v ORDER BY ord) INTO v_views
    FROM unnest(c_all_views) WITH ORDINALITY AS t(v, ord)
   WHERE p_views IS NULL OR v = ANY (p_views);

  SELECT bool_and(t.tgenabled <> 'D') INTO v_capture
    FROM pg_trigger t
   WHERE t.tgrelid = 'entities'::regclass AND t.tgname LIKE 'entities\_capture\_%';
  IF p_strategy = 'incremental' AND NOT v_capture THEN
    PERFORM hierarchy_set_row_capture(true);
    COMMIT;
  END IF;

  FOREACH v_view IN ARRAY v_views LOOP
    IF NOT EXISTS (
      SELECT 1 FROM hierarchy_view_state s JOIN pg_class c ON c.oid = to_regclass(s.view_name)
       WHERE s.view_name = v_view AND s.strategy = p_strategy
         AND c.relkind = CASE p_strategy WHEN 'incremental' THEN 'r' ELSE 'm' END::"char"
    ) THEN
      PERFORM hierarchy_rebuild_view(v_view, p_strategy, 'strategy_changed', p_trigger);
      COMMIT;
    END IF;
  END LOOP;

  IF p_strategy = 'materialized' AND v_capture
     AND NOT EXISTS (SELECT 1 FROM hierarchy_view_state s WHERE s.strategy = 'incremental') THEN
    PERFORM hierarchy_set_row_capture(false);
    COMMIT;
  END IF;
END
$fn$;
