import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { insertBulkHierarchy } from '../helpers/sql-fixtures.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import { killDaemons, startDaemon, waitForReady } from './daemon-process.ts';

// The daemon --on-change on incremental views: it polls the change log (writers send no NOTIFY)
// and applies an edit quickly. The bound is generous (1 s); the figure belongs to `npm run bench`.
describe('daemon --on-change on incremental views', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
    await insertBulkHierarchy(db.client, { roots: 5, children: 20, grandchildren: 20 });
    await db.client.query(`CALL hierarchy_set_view_strategy('incremental')`);
  });
  afterEach(killDaemons);
  afterAll(async () => {
    await killDaemons();
    await db?.drop();
  });

  it('makes an edit visible within 1 s, applied incrementally', async () => {
    const daemon = startDaemon(db.url, [
      '--on-change',
      '--poll-interval',
      '100ms',
      '--debounce',
      '100ms',
    ]);
    await waitForReady(daemon);
    const leaf = (
      await db.client.query<{ id: string; path: string }>(
        `SELECT id, path::text FROM entities WHERE nlevel(path) = 3 ORDER BY id LIMIT 1`,
      )
    ).rows[0]!;
    const latencies: number[] = [];
    for (let i = 0; i < 3; i++) {
      const name = `edited-${i}`;
      await db.client.query('UPDATE entities SET name = $1 WHERE id = $2', [name, leaf.id]);
      const committed = Date.now();
      for (;;) {
        const { rows } = await db.client.query(
          'SELECT name FROM mv_entity_ancestors WHERE entity_id = $1',
          [leaf.id],
        );
        if (rows[0]?.name === name) break;
        if (Date.now() - committed > 5_000) throw new Error(`edit ${i} not visible after 5 s`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      latencies.push(Date.now() - committed);
    }
    expect(Math.max(...latencies), `latencies ${latencies.join(', ')} ms`).toBeLessThan(1_000);
    const methods = daemon.logs
      .filter((l) => l.event === 'refresh.result' && l.status === 'refreshed')
      .map((l) => l.method);
    expect(methods.length).toBeGreaterThanOrEqual(2);
    expect(new Set(methods)).toEqual(new Set(['incremental']));
  });
});
