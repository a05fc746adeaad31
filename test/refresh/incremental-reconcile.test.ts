import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { forestArbitrary, insertForest } from '../helpers/hierarchy.ts';
import { expectedViews, readBothViews } from '../helpers/hierarchy-edits.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// Reconciliation of the incremental strategy (sql/functions/hierarchy_reconcile_view.sql): an
// incremental table edited by hand drifts from its definition, and a forced full refresh
// recomputes it and writes back exactly the rows that differ.
describe('a tampered incremental table', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    const [forest] = fc.sample(forestArbitrary({ maxRoots: 3, maxDepth: 6 }), {
      seed: 11,
      numRuns: 1,
    });
    await insertForest(db.client, forest ?? []);
    await db.client.query(`CALL hierarchy_set_view_strategy('incremental')`);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('is restored by refresh_hierarchy_views(p_full => true), method full', async () => {
    const { client } = db;
    const expected = await expectedViews(client);
    expect(expected.ancestors.length).toBeGreaterThan(5);
    expect(await readBothViews(client)).toEqual({
      ancestors: expected.ancestors,
      counts: expected.counts,
    });

    // By hand: one row deleted and another edited in each table.
    const [gone, edited] = [expected.ancestors[1]!, expected.ancestors[2]!];
    await client.query('DELETE FROM mv_entity_ancestors WHERE entity_id = $1', [gone.entity_id]);
    await client.query(
      `UPDATE mv_entity_ancestors SET name = 'tampered', ancestors = '{x}' WHERE entity_id = $1`,
      [edited.entity_id],
    );
    await client.query('DELETE FROM mv_descendant_counts WHERE entity_id = $1', [
      expected.counts[0]!.entity_id,
    ]);
    await client.query(
      'UPDATE mv_descendant_counts SET descendant_count = descendant_count + 7 WHERE entity_id = $1',
      [expected.counts[3]!.entity_id],
    );
    const tampered = await readBothViews(client);
    expect(tampered.ancestors).not.toEqual(expected.ancestors);
    expect(tampered.counts).not.toEqual(expected.counts);

    // Nothing pending: a plain refresh skips both (the drift is not a change it knows of)...
    const plain = await client.query(
      'SELECT view_name, status, reason FROM refresh_hierarchy_views()',
    );
    expect(plain.rows).toEqual([
      { view_name: 'mv_entity_ancestors', status: 'skipped', reason: 'no_changes' },
      { view_name: 'mv_descendant_counts', status: 'skipped', reason: 'no_changes' },
    ]);

    // ...and a forced full one writes back exactly the two rows of each table.
    const full = await client.query(
      `SELECT view_name, status, method, rows, rows_changed
         FROM refresh_hierarchy_views(p_full => true)`,
    );
    expect(full.rows).toEqual([
      {
        view_name: 'mv_entity_ancestors',
        status: 'refreshed',
        method: 'full',
        rows: expected.ancestors.length,
        rows_changed: 2,
      },
      {
        view_name: 'mv_descendant_counts',
        status: 'refreshed',
        method: 'full',
        rows: expected.counts.length,
        rows_changed: 2,
      },
    ]);
    expect(await readBothViews(client)).toEqual({
      ancestors: expected.ancestors,
      counts: expected.counts,
    });
    const audit = await client.query(
      `SELECT view_name, method, rows_changed::int FROM mv_refresh_audit
        WHERE trigger = 'sql' AND method = 'full' ORDER BY id`,
    );
    expect(audit.rows).toEqual([
      { view_name: 'mv_entity_ancestors', method: 'full', rows_changed: 2 },
      { view_name: 'mv_descendant_counts', method: 'full', rows_changed: 2 },
    ]);
    // The relations are still the incremental tables.
    const kinds = await client.query(
      `SELECT relname, relkind FROM pg_class
        WHERE relname IN ('mv_entity_ancestors', 'mv_descendant_counts') ORDER BY relname`,
    );
    expect(kinds.rows).toEqual([
      { relname: 'mv_descendant_counts', relkind: 'r' },
      { relname: 'mv_entity_ancestors', relkind: 'r' },
    ]);
  });
  it('is restored by `hierarchy-db refresh --full`', async () => {
    const { client } = db;
    const expected = await expectedViews(client);
    expect(await readBothViews(client)).toEqual(expected);
    const victim = expected.counts[expected.counts.length - 1]!;
    await client.query('DELETE FROM mv_entity_ancestors WHERE entity_id = $1', [victim.entity_id]);
    await client.query(`UPDATE mv_descendant_counts SET name = 'tampered' WHERE entity_id = $1`, [
      victim.entity_id,
    ]);
    expect(await readBothViews(client)).not.toEqual(expected);

    const result = await runCli(['--database-url', db.url, 'refresh', '--full', '--json']);
    expect(result.code, result.stderr).toBe(0);
    const { results } = JSON.parse(result.stdout) as {
      results: { view: string; status: string; method: string; rows_changed: number }[];
    };
    expect(results.map((r) => [r.view, r.status, r.method, r.rows_changed])).toEqual([
      ['mv_entity_ancestors', 'refreshed', 'full', 1],
      ['mv_descendant_counts', 'refreshed', 'full', 1],
    ]);
    expect(await readBothViews(client)).toEqual(expected);
  });
});
