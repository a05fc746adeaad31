import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertBulkHierarchy } from '../helpers/sql-fixtures.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// Readers are never blocked by a refresh (CONCURRENTLY; docs/semantics.md, "Refreshing"). A bound, not a benchmark:
// the refresh takes seconds at this size, lookups must stay far below that.
describe('readers during a forced refresh of 200k entities', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    const total = await insertBulkHierarchy(db.client, {
      roots: 100,
      children: 40,
      grandchildren: 49,
    });
    expect(total).toBeGreaterThanOrEqual(200_000);
    await db.client.query('ANALYZE entities');
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
  }, 180_000);
  afterAll(async () => {
    await db?.drop();
  });

  it('keeps point lookups on both views fast while the refresh runs', async () => {
    const reader = new pg.Client(db.url);
    await reader.connect();
    const refresher = new pg.Client(db.url);
    await refresher.connect();
    try {
      const ids = (
        await reader.query('SELECT entity_id FROM mv_entity_ancestors ORDER BY random() LIMIT 500')
      ).rows.map((r) => r.entity_id);
      const started = Date.now();
      let done = false;
      const refreshing = refresher
        .query('SELECT * FROM refresh_hierarchy_views(true)')
        .finally(() => {
          done = true;
        });
      const latencies: number[] = [];
      let i = 0;
      while (!done) {
        const id = ids[i++ % ids.length];
        const t0 = performance.now();
        await reader.query({
          name: 'anc',
          text: 'SELECT * FROM mv_entity_ancestors WHERE entity_id = $1',
          values: [id],
        });
        await reader.query({
          name: 'cnt',
          text: 'SELECT * FROM mv_descendant_counts WHERE entity_id = $1',
          values: [id],
        });
        latencies.push(performance.now() - t0);
      }
      const result = await refreshing;
      const refreshMs = Date.now() - started;
      expect(result.rows.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);
      const max = latencies.reduce((m, ms) => Math.max(m, ms), 0);
      const sorted = [...latencies].sort((x, y) => x - y);
      const p50 = sorted[Math.floor(sorted.length * 0.5)] ?? max;
      const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? max;
      console.log(
        `[readers] refresh of both views: ${refreshMs} ms; ${latencies.length} lookup pairs during it, p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms`,
      );
      expect(latencies.length).toBeGreaterThan(10);
      // A blocked reader waits for the whole refresh (seconds). On an idle machine the max stays
      // well under 100 ms (17 ms on 18, 40 ms on 15 here); the CI machine has 2 cores shared with
      // another test file and the refresh itself, so the bound leaves room for scheduling noise.
      expect(p50).toBeLessThan(25);
      expect(max).toBeLessThan(Math.min(1_000, refreshMs / 5));
    } finally {
      await reader.end();
      await refresher.end();
    }
  });
});
