import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import {
  killDaemons,
  parsePrometheusText,
  startDaemon,
  waitForReady,
  waitUntil,
} from './daemon-process.ts';

// A daemon whose refreshes keep failing never looks healthy (docs/semantics.md, "Faults"):
// after 3 failed refreshes of a view in a row /readyz answers 503 naming the view, and
// hierarchy_refresh_consecutive_failures counts them; the next successful refresh makes it ready
// again. The failure is real: without its unique index, REFRESH ... CONCURRENTLY of
// mv_descendant_counts fails every time (55000).
describe('daemon whose refreshes keep failing', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
  });
  afterEach(async () => {
    await killDaemons();
  });
  afterAll(async () => {
    await killDaemons();
    await db?.drop();
  });

  it('turns not ready after 3 failures in a row, counts them, and is ready again after a success', async () => {
    const daemon = startDaemon(db.url, ['--on-change', '--debounce', '100ms']);
    await waitForReady(daemon);
    const failures = async () =>
      parsePrometheusText((await daemon.get('/metrics')).body).samples.find(
        (s) =>
          s.name === 'hierarchy_refresh_consecutive_failures' &&
          s.labels['view'] === 'mv_descendant_counts',
      )?.value;
    expect(await failures()).toBe(0);

    await db.client.query('DROP INDEX mv_descendant_counts_entity_id_key');
    await db.client.query(`UPDATE entities SET name = 'b2' WHERE path = 'a.b'`);
    // Retries back off 1 s, 2 s, ... (each between half and all of that): 3 failures within ~8 s.
    await waitForReady(daemon, 20_000, 503);
    const notReady = JSON.parse((await daemon.get('/readyz')).body);
    expect(notReady.reasons).toEqual([
      expect.stringMatching(/^\d+ refreshes of mv_descendant_counts failed in a row$/),
    ]);
    expect(await failures()).toBeGreaterThanOrEqual(3);
    // The other view refreshed: it is not counted against.
    const ancestors = parsePrometheusText((await daemon.get('/metrics')).body).samples.find(
      (s) =>
        s.name === 'hierarchy_refresh_consecutive_failures' &&
        s.labels['view'] === 'mv_entity_ancestors',
    );
    expect(ancestors?.value).toBe(0);
    const { rows } = await db.client.query(
      `SELECT count(*)::int AS n FROM mv_refresh_audit
        WHERE view_name = 'mv_descendant_counts' AND status = 'failed' AND error_code = '55000'`,
    );
    expect(rows[0].n).toBeGreaterThanOrEqual(3);

    await db.client.query(
      'CREATE UNIQUE INDEX mv_descendant_counts_entity_id_key ON mv_descendant_counts (entity_id)',
    );
    // The next retry (at most 8 s after the third failure, or 16 s after a fourth) succeeds.
    await waitForReady(daemon, 30_000, 200);
    await waitUntil(async () => (await failures()) === 0, 5_000, 'the failure count is reset');
  });
});
