import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { auditRows } from '../helpers/sql-fixtures.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import { waitUntil } from '../helpers/wait-until.ts';

// `refresh`, `status` and `history` as an operator runs them (README, "Commands").
describe('refresh, status and history (CLI)', () => {
  let db: TestDatabase;
  const cli = (...args: string[]) =>
    runCli([...args, '--log-level', 'warn', '--database-url', db.url]);

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(
      `INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b'), ('c', 'a.b.c'), ('d', 'd')`,
    );
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('shows staleness growing after an edit, and fresh after a refresh', async () => {
    const beforeWrite = Date.now();
    await db.client.query(`UPDATE entities SET name = 'b-renamed' WHERE path = 'a.b'`);
    // Until the change is older than the 1 s budget checked below.
    await waitUntil(
      async () => {
        const { rows } = await db.client.query(
          'SELECT min(staleness_ms)::int AS ms FROM hierarchy_view_status()',
        );
        return rows[0].ms > 1_000;
      },
      10_000,
      'both views more than 1 s stale',
    );

    const stale = await cli('status', '--json');
    expect(stale.code, stale.stderr).toBe(0);
    const staleDoc = JSON.parse(stale.stdout);
    expect(staleDoc.ok).toBe(true);
    expect(staleDoc.max_staleness_ms).toBeNull();
    expect(Number.isNaN(Date.parse(staleDoc.checked_at))).toBe(false);
    for (const view of staleDoc.views) {
      expect(view.populated).toBe(true);
      expect(view.staleness_ms).toBeGreaterThan(1_000);
      expect(view.staleness_ms).toBeLessThanOrEqual(Date.now() - beforeWrite);
      expect(view.pending_changes).toBeGreaterThanOrEqual(1);
    }
    const overBudget = await cli('status', '--max-staleness', '1s', '--json');
    expect(overBudget.code).toBe(1);
    expect(JSON.parse(overBudget.stdout)).toMatchObject({ ok: false, max_staleness_ms: 1_000 });

    const refresh = await cli('refresh', '--json');
    expect(refresh.code, refresh.stderr).toBe(0);
    const results = JSON.parse(refresh.stdout).results;
    expect(results.map((r: { view: string; status: string }) => [r.view, r.status])).toEqual([
      ['mv_entity_ancestors', 'refreshed'],
      ['mv_descendant_counts', 'refreshed'],
    ]);
    for (const r of results) {
      expect(Object.keys(r).sort()).toEqual(
        [
          'duration_ms',
          'error_code',
          'error_message',
          'method',
          'reason',
          'rows',
          'rows_changed',
          'staleness_ms',
          'status',
          'view',
        ].sort(),
      );
      expect([r.method, r.reason]).toEqual(['concurrent', null]);
      expect(r.rows).toBe(4);
      expect(r.staleness_ms).toBeGreaterThan(1_000);
    }

    const fresh = JSON.parse((await cli('status', '--json')).stdout);
    for (const view of fresh.views) {
      expect(view.staleness_ms).toBe(0);
      expect(view.pending_changes).toBe(0);
      expect(view.last_refresh).toMatchObject({ status: 'refreshed', trigger: 'manual' });
    }
    expect((await cli('status', '--max-staleness', '1s')).code).toBe(0);
    const audit = await auditRows(db.client);
    expect(audit.at(-1)).toMatchObject({ trigger: 'manual', application_name: 'hierarchy-db/cli' });
  });

  it('lets one of two simultaneous forced refreshes run and skips the other at once', async () => {
    const blocker = new pg.Client(db.url);
    await blocker.connect();
    try {
      // An open REFRESH elsewhere holds the view's lock, so the winner takes a while.
      await blocker.query('BEGIN');
      await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors');
      const before = (await auditRows(db.client)).length;
      const a = cli('refresh', '--force', '--json');
      const b = cli('refresh', '--force', '--json');
      let settled = 0;
      for (const call of [a, b])
        call.then(
          () => settled++,
          () => settled++,
        );
      // The loser returns while the view is still locked; one that queued would never return.
      const first = await Promise.race([a, b, sleep(20_000, null, { ref: false })]);
      if (!first)
        throw new Error('neither refresh returned while the view was locked: both queued');
      expect(JSON.parse(first.stdout).results.map((r: { status: string }) => r.status)).toEqual([
        'skipped',
        'skipped',
      ]);
      // ...and the winner is still in flight, waiting for the lock: the loser did not wait for it.
      await waitUntil(
        async () => {
          const { rows } = await db.client.query(
            `SELECT count(*)::int AS n FROM pg_locks
              WHERE relation = 'mv_entity_ancestors'::regclass AND NOT granted`,
          );
          return rows[0].n > 0;
        },
        10_000,
        'the winning refresh waits for the lock on mv_entity_ancestors',
      );
      expect(settled).toBe(1);
      await blocker.query('COMMIT');
      const [ra, rb] = await Promise.all([a, b]);
      const statuses = [ra, rb].map((r) =>
        JSON.parse(r.stdout).results.map((x: { status: string }) => x.status),
      );
      expect(statuses).toContainEqual(['refreshed', 'refreshed']);
      expect(statuses).toContainEqual(['skipped', 'skipped']);
      const audit = (await auditRows(db.client)).slice(before);
      for (const view of ['mv_entity_ancestors', 'mv_descendant_counts']) {
        const refreshed = audit.filter((r) => r.view_name === view && r.status === 'refreshed');
        expect(refreshed).toHaveLength(1);
      }
    } finally {
      await blocker.end();
    }
  });

  it('exits 1 on a statement timeout, with failed rows carrying 57014', async () => {
    const before = (await auditRows(db.client)).length;
    // A refresh that waits on a lock for longer than its statement timeout (but within its lock
    // timeout) is stopped by the statement timeout inside the function; a bare 1 ms timeout
    // could instead expire on a loaded machine before the function starts.
    const blocker = new pg.Client({ connectionString: db.url });
    await blocker.connect();
    let result: Awaited<ReturnType<typeof cli>>;
    try {
      await blocker.query('BEGIN');
      await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors'); // holds its lock until COMMIT
      result = await cli(
        'refresh',
        '--force',
        '--statement-timeout',
        '500ms',
        '--lock-timeout',
        '60s',
        '--json',
      );
    } finally {
      await blocker.query('COMMIT').catch(() => {});
      await blocker.end();
    }
    expect(result.code, result.stderr).toBe(1);
    const results = JSON.parse(result.stdout).results;
    expect(results[0]).toMatchObject({
      view: 'mv_entity_ancestors',
      status: 'failed',
      error_code: '57014',
    });
    const audit = (await auditRows(db.client)).slice(before);
    expect(audit).toHaveLength(2);
    expect(audit[0]).toMatchObject({ status: 'failed', error_code: '57014', trigger: 'manual' });
    expect(audit[1].view_name).toBe('mv_descendant_counts'); // the other view's outcome is recorded
  });

  it('refreshes only the named view and rejects unknown ones with exit 2', async () => {
    const one = await cli('refresh', '--force', '--view', 'mv_descendant_counts', '--json');
    expect(one.code, one.stderr).toBe(0);
    expect(JSON.parse(one.stdout).results.map((r: { view: string }) => r.view)).toEqual([
      'mv_descendant_counts',
    ]);
    const bad = await cli('refresh', '--view', 'entities; DROP TABLE entities');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown view/);
    expect((await cli('refresh', '--lock-timeout', 'soon')).code).toBe(2);
  });

  it('lists history newest first, filtered by view, as JSON', async () => {
    const result = await cli('history', '--view', 'mv_entity_ancestors', '--limit', '3', '--json');
    expect(result.code, result.stderr).toBe(0);
    const rows = JSON.parse(result.stdout).history;
    expect(rows).toHaveLength(3);
    expect(rows.every((r: { view: string }) => r.view === 'mv_entity_ancestors')).toBe(true);
    const times = rows.map((r: { started_at: string }) => Date.parse(r.started_at));
    expect([...times].sort((x, y) => y - x)).toEqual(times);
    const table = await cli('history', '--limit', '2');
    expect(table.stdout).toMatch(/started_at\s+view\s+trigger\s+status/);
  });

  it('exits 1 and says what to do when the schema is not migrated', async () => {
    const empty = await createTestDatabase({ migrated: false });
    try {
      const result = await runCli(['refresh', '--database-url', empty.url]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/migrate up/);
    } finally {
      await empty.drop();
    }
  });
});
