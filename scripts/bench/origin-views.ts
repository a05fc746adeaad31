// The origin formulation of the views, the first sketch this project replaced: the baseline the
// benchmark compares this project's views with. Its structure is kept — GiST containment
// self-joins on `entities`, grouped per entity — and only its defects against docs/semantics.md
// ("Views") are corrected, so that both formulations produce the same rows (the benchmark checks
// that they do):
// - descendants: the sketch joined `d.path @> e.path` (ancestors, not descendants) and filtered
//   `d.is_active` in WHERE (dropping leaves); here `d.path <@ e.path AND d.path <> e.path` with
//   `d.is_active` in the join condition, so leaves count 0;
// - ancestors: the sketch returned names only, unordered, `{NULL}` for roots and `SELECT DISTINCT`;
//   here ids and names ordered root first, `{}` for roots.
// The views live in a scratch schema with the same indexes as ours (the unique index
// REFRESH ... CONCURRENTLY needs, GiST on path, btree on (path_depth, path)).

/** The scratch schema the origin views are built in (dropped before and after). */
export const ORIGIN_SCHEMA = 'hierarchy_db_bench_origin';

/** One origin view: its name (same as ours) and its query over `public.entities`. */
export interface OriginView {
  name: 'mv_entity_ancestors' | 'mv_descendant_counts';
  query: string;
}

/** The origin formulation of both views, corrected (see the file header). */
export const ORIGIN_VIEWS: OriginView[] = [
  {
    name: 'mv_entity_ancestors',
    query: `
      SELECT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
             COALESCE(array_agg(a.id ORDER BY a.path_depth) FILTER (WHERE a.id IS NOT NULL), '{}') AS ancestor_ids,
             COALESCE(array_agg(a.name ORDER BY a.path_depth) FILTER (WHERE a.id IS NOT NULL), '{}') AS ancestors
        FROM public.entities e
        LEFT JOIN public.entities a ON a.path @> e.path AND a.path <> e.path
       WHERE e.is_active
       GROUP BY e.id, e.name, e.path, e.path_depth, e.confidence_score`,
  },
  {
    name: 'mv_descendant_counts',
    query: `
      SELECT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
             count(d.id) AS descendant_count
        FROM public.entities e
        LEFT JOIN public.entities d ON d.path <@ e.path AND d.path <> e.path AND d.is_active
       WHERE e.is_active
       GROUP BY e.id, e.name, e.path, e.path_depth, e.confidence_score`,
  },
];

/** The statements that create one origin view, empty, with our index set. */
export function createOriginViewSql(view: OriginView): string[] {
  const qualified = `${ORIGIN_SCHEMA}.${view.name}`;
  return [
    `CREATE MATERIALIZED VIEW ${qualified} AS ${view.query} WITH NO DATA`,
    `CREATE UNIQUE INDEX ON ${qualified} (entity_id)`,
    `CREATE INDEX ON ${qualified} USING gist (path)`,
    `CREATE INDEX ON ${qualified} (path_depth, path)`,
  ];
}
