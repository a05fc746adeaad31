import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import {
  databaseWithForest,
  dropDatabases,
  expectViewsMatchOracle,
  verify,
} from './verify-fixtures.ts';

afterEach(dropDatabases);

// `verify --data`: each view's contents against its definition view, in one snapshot. An
// incremental table edited by hand is reported row by row, and a full refresh restores it.

interface Differences {
  missing: number;
  extra: number;
  changed: number;
  pending_changes: number | null;
  sample: { entity_id: string; kind: string }[];
}

describe('verify --data', () => {
  it('reports a tampered incremental table (a row deleted, another edited) until refresh --full restores it', async () => {
    const db = await databaseWithForest(6000);
    await db.client.query(`CALL hierarchy_set_view_strategy('incremental')`);
    const clean = await verify(db, '--data');
    expect(clean.failed).toEqual([]);
    expect(
      clean.report.checks.filter((c) => c.name.startsWith('data ')).map((c) => c.name),
    ).toEqual(['data mv_entity_ancestors', 'data mv_descendant_counts']);

    const { rows } = await db.client.query<{ deleted: string; edited: string; counted: string }>(
      `SELECT (SELECT min(entity_id) FROM mv_entity_ancestors)::text AS deleted,
              (SELECT max(entity_id) FROM mv_entity_ancestors)::text AS edited,
              (SELECT min(entity_id) FROM mv_descendant_counts WHERE descendant_count > 0)::text AS counted`,
    );
    const { deleted, edited, counted } = rows[0]!;
    await db.client.query(`
      DELETE FROM mv_entity_ancestors WHERE entity_id = ${deleted};
      UPDATE mv_entity_ancestors SET name = 'edited by hand' WHERE entity_id = ${edited};
      UPDATE mv_descendant_counts SET descendant_count = descendant_count + 1 WHERE entity_id = ${counted};`);

    // The schema is intact: only the data comparison sees it.
    expect((await verify(db)).code).toBe(0);
    const tampered = await verify(db, '--data');
    expect(tampered.code).toBe(1);
    expect(tampered.failed.map((c) => c.name)).toEqual([
      'data mv_entity_ancestors',
      'data mv_descendant_counts',
    ]);
    const [ancestors, counts] = tampered.failed as unknown as {
      detail: string;
      fix: string;
      differences: Differences;
    }[];
    expect(ancestors!.differences).toMatchObject({
      missing: 1,
      extra: 0,
      changed: 1,
      pending_changes: 0,
    });
    expect(ancestors!.differences.sample.map((r) => [r.entity_id, r.kind]).sort()).toEqual(
      [
        [deleted, 'missing'],
        [edited, 'changed'],
      ].sort(),
    );
    expect(ancestors!.detail).toContain(`entity ${deleted} missing`);
    expect(ancestors!.detail).toContain(`entity ${edited} name is "edited by hand"`);
    expect(ancestors!.fix).toContain('refresh --full');
    expect(counts!.differences).toMatchObject({ missing: 0, extra: 0, changed: 1 });
    expect(counts!.detail).toMatch(
      new RegExp(`entity ${counted} descendant_count is \\d+, expected \\d+`),
    );

    // Nothing is pending, so a plain refresh has nothing to apply; `refresh --full` recomputes.
    const full = await runCli(['refresh', '--full', '--json', '--database-url', db.url]);
    expect(full.code, full.stderr).toBe(0);
    const { results } = JSON.parse(full.stdout) as {
      results: { view: string; status: string; method: string; rows_changed: number }[];
    };
    expect(
      results.map(({ view, status, method, rows_changed }) => ({
        view,
        status,
        method,
        rows_changed,
      })),
    ).toEqual([
      { view: 'mv_entity_ancestors', status: 'refreshed', method: 'full', rows_changed: 2 },
      { view: 'mv_descendant_counts', status: 'refreshed', method: 'full', rows_changed: 1 },
    ]);
    const restored = await verify(db, '--data');
    expect(restored.failed).toEqual([]);
    expect(restored.code).toBe(0);
    await expectViewsMatchOracle(db.client);
  });

  it('tells a materialized view that is only stale from drift: the pending changes and `refresh` as the fix', async () => {
    const db = await databaseWithForest(6100);
    await db.client.query(
      `UPDATE entities SET name = name || ' (renamed)' WHERE id = (SELECT min(id) FROM entities)`,
    );
    const stale = await verify(db, '--data');
    expect(stale.code).toBe(1);
    const failed = stale.failed as unknown as {
      name: string;
      detail: string;
      fix: string;
      differences: Differences;
    }[];
    expect(failed.map((c) => c.name)).toContain('data mv_entity_ancestors');
    const ancestors = failed.find((c) => c.name === 'data mv_entity_ancestors')!;
    expect(ancestors.differences.pending_changes).toBe(1);
    expect(ancestors.detail).toContain('1 change(s) are not yet reflected');
    expect(ancestors.fix).toMatch(/^hierarchy-db refresh --view mv_entity_ancestors/);
    const refreshed = await db.client.query(`SELECT * FROM refresh_hierarchy_views()`);
    expect(refreshed.rowCount).toBe(2);
    expect((await verify(db, '--data')).code).toBe(0);
  });
});
