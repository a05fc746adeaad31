-- Per view: populated, staleness (data age), pending changes, its strategy and relation kind,
-- and clean skips (refresh checks that found nothing to do; counted here, not audited).
CREATE OR REPLACE FUNCTION hierarchy_view_status()
  RETURNS TABLE (view_name text, populated boolean, staleness_ms bigint, pending_changes bigint,
                 oldest_change_at timestamptz, data_as_of timestamptz, last_refreshed_at timestamptz,
                 strategy text, relation_kind text, row_count bigint, clean_skips bigint,
                 last_checked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
  SELECT v.name,
         COALESCE(c.relispopulated, false),
         CASE WHEN p.oldest_change_at IS NULL THEN 0
              ELSE GREATEST(0, floor(extract(epoch FROM clock_timestamp() - p.oldest_change_at) * 1000))::bigint
         END,
         p.pending_changes,
         p.oldest_change_at,
         s.data_as_of,
         s.last_refreshed_at,
         s.strategy,
         CASE c.relkind WHEN 'm' THEN 'materialized view' WHEN 'r' THEN 'table'
                        WHEN 'v' THEN 'view' ELSE c.relkind::text END,
         s.row_count,
         s.clean_skips,
         s.last_checked_at
    FROM unnest(ARRAY['mv_entity_ancestors', 'mv_descendant_counts']) WITH ORDINALITY AS v(name, ord)
    LEFT JOIN pg_class c ON c.oid = to_regclass(v.name)
    LEFT JOIN hierarchy_view_state s ON s.view_name = v.name
   CROSS JOIN LATERAL hierarchy_pending_changes(v.name) p
   ORDER BY v.ord
$fn$;
