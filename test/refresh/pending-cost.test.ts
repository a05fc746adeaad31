import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// A view that keeps failing leaves the change log unpruned. Status calls, metrics scrapes and the
// daemon's change probe must still cost the same: counted in rows read, inside one transaction
// (pg_stat_get_xact_* is exact and immediate there), with 1M pending transactions in the log.
describe('cost of status and the change probe at 1M pending changes', () => {
  let db: TestDatabase;
  const PENDING = 1_000_000;

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a')`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    // Transactions after every view's snapshot: pending for both (xids the server has not
    // reached yet are not visible in any snapshot).
    await db.client.query(
      `INSERT INTO hierarchy_changes (xid, changed_at)
       SELECT (pg_current_xact_id()::text::bigint + 1000 + i)::text::xid8, now() - interval '1 hour'
         FROM generate_series(1, $1) AS i`,
      [PENDING],
    );
    await db.client.query('ANALYZE hierarchy_changes');
  }, 300_000);
  afterAll(async () => {
    await db?.drop();
  });

  /** Rows of hierarchy_changes read (heap fetches + index-only returns) by `sql`. */
  async function rowsRead(
    sql: string,
  ): Promise<{ rows: number; result: Record<string, unknown>[] }> {
    await db.client.query('BEGIN');
    try {
      const base = await db.client.query<{ n: string }>(
        `SELECT (pg_stat_get_xact_tuples_fetched(c.oid) + pg_stat_get_xact_tuples_returned(c.oid)
                 + COALESCE((SELECT sum(pg_stat_get_xact_tuples_fetched(i.indexrelid) + pg_stat_get_xact_tuples_returned(i.indexrelid))
                               FROM pg_index i WHERE i.indrelid = c.oid), 0))::text AS n
           FROM pg_class c WHERE c.oid = 'hierarchy_changes'::regclass`,
      );
      const result = await db.client.query(sql);
      const after = await db.client.query<{ n: string }>(
        `SELECT (pg_stat_get_xact_tuples_fetched(c.oid) + pg_stat_get_xact_tuples_returned(c.oid)
                 + COALESCE((SELECT sum(pg_stat_get_xact_tuples_fetched(i.indexrelid) + pg_stat_get_xact_tuples_returned(i.indexrelid))
                               FROM pg_index i WHERE i.indrelid = c.oid), 0))::text AS n
           FROM pg_class c WHERE c.oid = 'hierarchy_changes'::regclass`,
      );
      return { rows: Number(after.rows[0]!.n) - Number(base.rows[0]!.n), result: result.rows };
    } finally {
      await db.client.query('COMMIT');
    }
  }

  it('status reads a bounded number of log rows and reports at least 10 000 pending', async () => {
    const { rows, result } = await rowsRead(
      'SELECT view_name, pending_changes::int AS pending, staleness_ms FROM hierarchy_view_status()',
    );
    // Two views, at most 10 001 rows each (index and heap counted): nowhere near 1M.
    expect(rows).toBeLessThanOrEqual(4 * 10_001 + 100);
    for (const view of result) {
      expect(view.pending).toBe(10_001);
      expect(Number(view.staleness_ms)).toBeGreaterThanOrEqual(3_600_000);
    }
  });

  it('the change probe reads a handful of rows', async () => {
    const { rows, result } = await rowsRead('SELECT * FROM hierarchy_changes_probe()');
    expect(result[0]?.pending).toBe(true);
    expect(rows).toBeLessThan(50);
  });
});
