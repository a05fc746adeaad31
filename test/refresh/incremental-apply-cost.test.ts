import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedViews, readBothViews } from '../helpers/hierarchy-edits.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// Cost of an incremental refresh after a large subtree edit (sql/functions/hierarchy_apply_*.sql),
// counted in scans inside one transaction (pg_stat_get_xact_* is exact and immediate there), not
// in milliseconds: the ancestors apply must look each ancestor up once, not once per entity below
// it, and reach the rows it deletes by index, never by reading the whole table; the counts apply
// must count what a moved subtree finds at its new place in one index scan, not one per entity.
describe('cost of an incremental refresh after a subtree edit', () => {
  let db: TestDatabase;
  /** Active descendants of the renamed root `a`, and of the moved subtree `a.c1`. */
  let renamed = 0;
  let moved = 0;
  let entityCount = 0;

  beforeAll(async () => {
    db = await createTestDatabase();
    const { client } = db;
    // Two roots: `a` with 30 children of 40 leaves each (every tenth leaf inactive), and `b`
    // with 3 000 leaves, so a rename of `a` touches a large share of the table but not all of it.
    await client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'b')`);
    await client.query(
      `INSERT INTO entities (name, path)
       SELECT 'c' || i, text2ltree('a.c' || i) FROM generate_series(1, 30) AS i`,
    );
    await client.query(
      `INSERT INTO entities (name, path, is_active)
       SELECT 'l' || j, text2ltree('a.c' || i || '.l' || j), j % 10 <> 0
         FROM generate_series(1, 30) AS i, generate_series(1, 40) AS j`,
    );
    await client.query(
      `INSERT INTO entities (name, path)
       SELECT 'm' || i, text2ltree('b.m' || i) FROM generate_series(1, 3000) AS i`,
    );
    await client.query(`CALL hierarchy_set_view_strategy('incremental')`);
    await client.query('ANALYZE entities, mv_entity_ancestors, mv_descendant_counts');
    const { rows } = await client.query<{ path: string; n: number }>(
      `SELECT path::text AS path, descendant_count::int AS n FROM mv_descendant_counts
        WHERE path IN ('a', 'a.c1')`,
    );
    const { rows: counted } = await client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM entities',
    );
    entityCount = counted[0]?.n ?? 0;
    renamed = rows.find((r) => r.path === 'a')?.n ?? 0;
    moved = rows.find((r) => r.path === 'a.c1')?.n ?? 0;
  }, 120_000);
  afterAll(async () => {
    await db?.drop();
  });

  /** Scans and sequentially read rows of each view table and its indexes during one refresh. */
  async function refreshCost(): Promise<{
    methods: (string | null)[];
    seqRows: Record<string, number>;
    indexScans: Record<string, number>;
  }> {
    const stats = `
      SELECT c.relname::text AS relname, pg_stat_get_xact_tuples_returned(c.oid)::int AS seq_rows,
             pg_stat_get_xact_numscans(c.oid)::int AS scans
        FROM pg_class c
       WHERE c.relname LIKE 'mv\\_entity\\_ancestors%' OR c.relname LIKE 'mv\\_descendant\\_counts%'
          OR c.relname IN ('entities', 'entities_path_key', 'entities_path_gist')`;
    await db.client.query('BEGIN');
    try {
      const before = await db.client.query<{ relname: string; seq_rows: number; scans: number }>(
        stats,
      );
      const result = await db.client.query<{ method: string | null }>(
        `SELECT method FROM refresh_hierarchy_views()`,
      );
      const after = await db.client.query<{ relname: string; seq_rows: number; scans: number }>(
        stats,
      );
      const seqRows: Record<string, number> = {};
      const indexScans: Record<string, number> = {};
      for (const row of after.rows) {
        const base = before.rows.find((b) => b.relname === row.relname);
        seqRows[row.relname] = row.seq_rows - (base?.seq_rows ?? 0);
        indexScans[row.relname] = row.scans - (base?.scans ?? 0);
      }
      return { methods: result.rows.map((r) => r.method), seqRows, indexScans };
    } finally {
      await db.client.query('COMMIT');
    }
  }

  it('renames a root above 1 000 entities with one lookup per ancestor and no sequential read of mv_entity_ancestors', async () => {
    expect(renamed).toBeGreaterThan(1000);
    await db.client.query(`UPDATE entities SET name = 'a renamed' WHERE path = 'a'`);
    const cost = await refreshCost();
    expect(cost.methods).toEqual(['incremental', 'incremental']);
    // The rename's inactive descendants have no row to delete: looked up by the entity_id
    // index, not by a join that reads the whole table.
    expect(cost.seqRows.mv_entity_ancestors).toBe(0);
    // Breadcrumbs: each distinct ancestor path (a and its 30 children) looked up once, not once
    // per entity and level (over 2 000 lookups, each an index probe or, the table being small,
    // a pass over it).
    const pathLookups =
      (cost.indexScans.entities_path_key ?? 0) + (cost.indexScans.entities_path_gist ?? 0);
    expect(pathLookups).toBeLessThan(100);
    expect(cost.seqRows.entities).toBeLessThan(3 * entityCount);
    const expected = await expectedViews(db.client);
    expect(await readBothViews(db.client)).toEqual({
      ancestors: expected.ancestors,
      counts: expected.counts,
    });
  });

  it('counts what a moved subtree finds at its new place in one index scan, not one per entity', async () => {
    expect(moved).toBeGreaterThan(30);
    await db.client.query(
      `UPDATE entities SET path = 'b.m1'::ltree || subpath(path, 1) WHERE path <@ 'a.c1'`,
    );
    const cost = await refreshCost();
    expect(cost.methods).toEqual(['incremental', 'incremental']);
    expect(cost.seqRows.mv_entity_ancestors).toBe(0);
    expect(cost.indexScans.mv_descendant_counts_path_gist).toBeLessThanOrEqual(2);
    const expected = await expectedViews(db.client);
    expect(await readBothViews(db.client)).toEqual({
      ancestors: expected.ancestors,
      counts: expected.counts,
    });
  });
});
