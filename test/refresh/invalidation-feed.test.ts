import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import { waitUntil } from '../helpers/wait-until.ts';

interface Feed {
  views: string[];
  rows_changed: number | null;
  entity_ids: number[] | null;
  all: boolean;
}

// The cache-invalidation feed: after a refresh that changed rows, one NOTIFY on
// hierarchy_views_refreshed from the refresher, naming the changed entities when they are few.
describe('hierarchy_views_refreshed on incremental views', () => {
  let db: TestDatabase;
  let listener: pg.Client;
  const received: Feed[] = [];
  const next = async (count: number) => {
    await waitUntil(() => received.length >= count, 10_000, `${count} notification(s)`, 20);
    expect(received).toHaveLength(count);
    return received[count - 1]!;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(
      `INSERT INTO entities (name, path)
       SELECT name, path::ltree FROM (
         SELECT 'r' AS name, 'r' AS path
         UNION ALL SELECT 'n' || i, 'r.n' || i FROM generate_series(1, 400) AS i) e`,
    );
    await db.client.query(`CALL hierarchy_set_view_strategy('incremental')`);
    listener = new pg.Client(db.url);
    await listener.connect();
    listener.on('notification', (n) => {
      if (n.channel === 'hierarchy_views_refreshed') received.push(JSON.parse(n.payload ?? '{}'));
    });
    await listener.query('LISTEN hierarchy_views_refreshed');
  });
  afterAll(async () => {
    await listener?.end().catch(() => {});
    await db?.drop();
  });

  it('names the changed entities of a small edit', async () => {
    const leaf = (await db.client.query(`SELECT id FROM entities WHERE path = 'r.n7'`)).rows[0].id;
    const root = (await db.client.query(`SELECT id FROM entities WHERE path = 'r'`)).rows[0].id;
    await db.client.query(`UPDATE entities SET name = 'renamed' WHERE path = 'r.n7'`);
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('x', 'r.n7.x')`);
    const rows = (await db.client.query('SELECT * FROM refresh_hierarchy_views()')).rows;
    expect(rows.map((r) => r.method)).toEqual(['incremental', 'incremental']);
    const feed = await next(1);
    const x = (await db.client.query(`SELECT id FROM entities WHERE path = 'r.n7.x'`)).rows[0].id;
    expect(feed.views).toEqual(['mv_entity_ancestors', 'mv_descendant_counts']);
    expect(feed.all).toBe(false);
    // ancestors: the renamed leaf and the new node; counts: those two plus the root's count.
    expect(feed.entity_ids).toEqual([Number(root), Number(leaf), Number(x)].sort((a, b) => a - b));
    expect(feed.rows_changed).toBe(rows.reduce((sum, r) => sum + Number(r.rows_changed), 0));
  });

  it('says nothing after a refresh that changed no row', async () => {
    await db.client.query(`UPDATE entities SET updated_at = now() WHERE path = 'r.n8'`);
    const rows = (await db.client.query('SELECT * FROM refresh_hierarchy_views()')).rows;
    expect(rows.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);
    await db.client.query(`UPDATE entities SET name = 'again' WHERE path = 'r.n9'`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    // Only the second refresh changed rows: the next notification is its.
    const feed = await next(2);
    expect(feed.all).toBe(false);
    expect(feed.views).toEqual(['mv_entity_ancestors', 'mv_descendant_counts']);
  });

  it('says all when too many entities changed to list', async () => {
    await db.client.query(`UPDATE entities SET confidence_score = 0.5 WHERE path <@ 'r'`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    const feed = await next(3);
    expect(feed).toMatchObject({ all: true, entity_ids: null });
    expect(feed.rows_changed).toBeGreaterThan(300);
  });
});
