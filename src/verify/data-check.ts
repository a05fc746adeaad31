import type pg from 'pg';
import { isConnectionFailure } from '../db/connection-error.ts';
import type { CheckResult, DataDifferences } from './checks.ts';
import type { SchemaFacts } from './schema-inspector.ts';

const SAMPLE_ROWS = 20;
const DETAIL_ROWS = 5;

/**
 * `verify --data`: compares each view's rows with its definition view's, row by row on
 * entity_id, in one REPEATABLE READ snapshot (read-only). An incremental table must never drift
 * unnoticed; a materialized view differs only by the changes it has not yet reflected.
 * Costs a full computation of both definitions.
 */
export async function checkViewData(client: pg.Client, facts: SchemaFacts): Promise<CheckResult[]> {
  const checks: CheckResult[] = [];
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    for (const view of facts.views) {
      const name = `data ${view.name}`;
      const relation = `${facts.quotedSchema}.${view.name}`;
      const definition = `${facts.quotedSchema}.${view.definition}`;
      await client.query('SAVEPOINT hdb_verify_data');
      let differences: DataDifferences;
      try {
        const { rows } = await client.query<DataDifferences>(
          `WITH d AS MATERIALIZED (SELECT x.entity_id, to_jsonb(x) AS row FROM ${definition} x),
                r AS MATERIALIZED (SELECT x.entity_id, to_jsonb(x) AS row FROM ${relation} x),
                diff AS (
                  SELECT COALESCE(d.entity_id, r.entity_id)::text AS entity_id, d.row AS expected, r.row AS actual,
                         CASE WHEN r.entity_id IS NULL THEN 'missing' WHEN d.entity_id IS NULL THEN 'extra'
                              ELSE 'changed' END AS kind
                    FROM d FULL JOIN r ON r.entity_id = d.entity_id
                   WHERE d.row IS DISTINCT FROM r.row)
           SELECT (SELECT count(*) FROM d)::int AS expected_rows, (SELECT count(*) FROM r)::int AS rows,
                  count(*) FILTER (WHERE kind = 'missing')::int AS missing,
                  count(*) FILTER (WHERE kind = 'extra')::int AS extra,
                  count(*) FILTER (WHERE kind = 'changed')::int AS changed,
                  (SELECT COALESCE(json_agg(s), '[]') FROM (SELECT * FROM diff ORDER BY entity_id::bigint LIMIT $1) s) AS sample
             FROM diff`,
          [SAMPLE_ROWS],
        );
        differences = {
          ...rows[0]!,
          pending_changes: await pendingChanges(client, facts, view.name),
        };
        await client.query('RELEASE SAVEPOINT hdb_verify_data');
      } catch (error) {
        if (isConnectionFailure(error)) throw error;
        await client.query('ROLLBACK TO SAVEPOINT hdb_verify_data');
        const message = error instanceof Error ? error.message : String(error);
        checks.push({
          name,
          ok: false,
          detail: `cannot compare with ${view.definition}: ${message}`,
          fix: 'hierarchy-db repair',
          repairs: [],
        });
        continue;
      }
      checks.push(dataCheck(name, view.name, view.definition, view.strategy, differences));
    }
  } finally {
    await client.query('ROLLBACK').catch(() => {});
  }
  return checks;
}

async function pendingChanges(
  client: pg.Client,
  facts: SchemaFacts,
  view: string,
): Promise<number | null> {
  await client.query('SAVEPOINT hdb_verify_pending');
  try {
    const { rows } = await client.query<{ pending: number }>(
      `SELECT pending_changes::int AS pending FROM ${facts.quotedSchema}.hierarchy_pending_changes($1)`,
      [view],
    );
    await client.query('RELEASE SAVEPOINT hdb_verify_pending');
    return rows[0]?.pending ?? null;
  } catch (error) {
    if (isConnectionFailure(error)) throw error;
    await client.query('ROLLBACK TO SAVEPOINT hdb_verify_pending');
    return null;
  }
}

function dataCheck(
  name: string,
  view: string,
  definition: string,
  strategy: string,
  d: DataDifferences,
): CheckResult {
  const differing = d.missing + d.extra + d.changed;
  if (differing === 0) {
    return {
      name,
      ok: true,
      detail: `${d.rows} rows, identical to ${definition}`,
      fix: null,
      repairs: [],
      differences: d,
    };
  }
  const examples = d.sample.slice(0, DETAIL_ROWS).map((row) => {
    if (row.kind !== 'changed') return `entity ${row.entity_id} ${row.kind}`;
    const expected = row.expected as Record<string, unknown>;
    const actual = row.actual as Record<string, unknown>;
    const columns = Object.keys(expected).filter(
      (k) => JSON.stringify(expected[k]) !== JSON.stringify(actual[k]),
    );
    return `entity ${row.entity_id} ${columns.map((k) => `${k} is ${JSON.stringify(actual[k])}, expected ${JSON.stringify(expected[k])}`).join(', ')}`;
  });
  const stale = d.pending_changes
    ? `; ${d.pending_changes} change(s) are not yet reflected in it`
    : '';
  const fix = d.pending_changes
    ? `hierarchy-db refresh --view ${view}, then verify --data again`
    : strategy === 'incremental'
      ? `hierarchy-db refresh --full --view ${view} (recomputes it from ${definition})`
      : `hierarchy-db refresh --force --view ${view}`;
  return {
    name,
    ok: false,
    detail: `${differing} of ${d.expected_rows} rows differ from ${definition} (${d.missing} missing, ${d.extra} extra, ${d.changed} changed${stale}): ${examples.join('; ')}`,
    fix,
    repairs: [],
    differences: d,
  };
}
