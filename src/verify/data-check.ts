import type pg from 'pg';
import { isConnectionFailure } from '../db/connection-error.ts';
import type { CheckResult, DataDifferences } from './checks.ts';
import type { RelationFact, SchemaFacts } from './schema-inspector.ts';

/** Differing rows listed in `differences.sample` (the detail names the first five). */
const SAMPLE_ROWS = 20;

/**
 * `verify --data`: compares each view's rows with its definition view's, full join on
 * entity_id, in one REPEATABLE READ READ ONLY snapshot. An incremental table must never drift
 * unnoticed; a materialized view differs only by the changes it has not reflected yet (counted
 * too). Costs a full computation of each definition.
 */
export async function checkViewData(client: pg.Client, facts: SchemaFacts): Promise<CheckResult[]> {
  const checks: CheckResult[] = [];
  const schema = facts.quotedSchema;
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    for (const view of facts.views) {
      await client.query('SAVEPOINT hdb_verify_data');
      try {
        const { rows } = await client.query<DataDifferences>(
          `WITH d AS MATERIALIZED (SELECT x.entity_id, to_jsonb(x) AS row FROM ${schema}.${view.definition} x),
                r AS MATERIALIZED (SELECT x.entity_id, to_jsonb(x) AS row FROM ${schema}.${view.name} x),
                diff AS (
                  SELECT COALESCE(d.entity_id, r.entity_id) AS id, d.row AS expected, r.row AS actual,
                         CASE WHEN r.entity_id IS NULL THEN 'missing' WHEN d.entity_id IS NULL THEN 'extra'
                              ELSE 'changed' END AS kind
                    FROM d FULL JOIN r ON r.entity_id = d.entity_id
                   WHERE d.row IS DISTINCT FROM r.row)
           SELECT (SELECT count(*) FROM d)::int AS expected_rows, (SELECT count(*) FROM r)::int AS rows,
                  count(*) FILTER (WHERE kind = 'missing')::int AS missing,
                  count(*) FILTER (WHERE kind = 'extra')::int AS extra,
                  count(*) FILTER (WHERE kind = 'changed')::int AS changed,
                  (SELECT pending_changes::int FROM ${schema}.hierarchy_pending_changes($2)) AS pending_changes,
                  (SELECT COALESCE(json_agg(json_build_object('entity_id', s.id::text, 'kind', s.kind,
                                                              'expected', s.expected, 'actual', s.actual)), '[]')
                     FROM (SELECT * FROM diff ORDER BY id LIMIT $1) s) AS sample
             FROM diff`,
          [SAMPLE_ROWS, view.name],
        );
        await client.query('RELEASE SAVEPOINT hdb_verify_data');
        checks.push(dataCheck(view, rows[0]!));
      } catch (error) {
        if (isConnectionFailure(error)) throw error;
        await client.query('ROLLBACK TO SAVEPOINT hdb_verify_data');
        const detail = `cannot compare with ${view.definition}: ${(error as Error).message}`;
        checks.push({
          name: `data ${view.name}`,
          ok: false,
          detail,
          fix: 'hierarchy-db repair',
          repairs: [],
        });
      }
    }
  } finally {
    await client.query('ROLLBACK').catch(() => {});
  }
  return checks;
}

function dataCheck(view: RelationFact, d: DataDifferences): CheckResult {
  const result = { name: `data ${view.name}`, repairs: [], differences: d };
  const differing = d.missing + d.extra + d.changed;
  if (differing === 0) {
    return {
      ...result,
      ok: true,
      detail: `${d.rows} rows, identical to ${view.definition}`,
      fix: null,
    };
  }
  const examples = d.sample.slice(0, 5).map(({ entity_id, kind, expected, actual }) => {
    if (kind !== 'changed') return `entity ${entity_id} ${kind}`;
    const [want, have] = [expected, actual] as Record<string, unknown>[];
    const show = (k: string) =>
      `${k} is ${JSON.stringify(have![k])}, expected ${JSON.stringify(want![k])}`;
    const columns = Object.keys(want!).filter(
      (k) => JSON.stringify(want![k]) !== JSON.stringify(have![k]),
    );
    return `entity ${entity_id} ${columns.map(show).join(', ')}`;
  });
  const stale = d.pending_changes
    ? `; ${d.pending_changes} change(s) are not yet reflected in it`
    : '';
  const counts = `${d.missing} missing, ${d.extra} extra, ${d.changed} changed${stale}`;
  const detail = `${differing} of ${d.expected_rows} rows differ from ${view.definition} (${counts}): ${examples.join('; ')}`;
  const fix = d.pending_changes
    ? `hierarchy-db refresh --view ${view.name}, then verify --data again`
    : view.strategy === 'incremental'
      ? `hierarchy-db refresh --full --view ${view.name} (recomputes it from ${view.definition})`
      : `hierarchy-db refresh --force --view ${view.name}`;
  return { ...result, ok: false, detail, fix };
}
