import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { auditRows } from '../helpers/sql-fixtures.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import { waitUntil } from '../helpers/wait-until.ts';

// refresh_hierarchy_views(), change tracking and the audit (docs/semantics.md), called from plain
// SQL the way a person in psql would.
describe('refresh_hierarchy_views() from SQL', () => {
  let db: TestDatabase;
  const extra: pg.Client[] = [];
  const connect = async () => {
    const client = new pg.Client(db.url);
    client.on('error', () => {});
    await client.connect();
    extra.push(client);
    return client;
  };
  const cleanSkips = async () =>
    (
      await db.client.query<{ n: number }>(
        'SELECT clean_skips::int AS n FROM hierarchy_view_status()',
      )
    ).rows.map((r) => r.n);
  const status = async () =>
    (
      await db.client.query(
        'SELECT view_name, pending_changes::int AS pending, staleness_ms::int AS staleness FROM hierarchy_view_status()',
      )
    ).rows;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    for (const c of extra) await c.end().catch(() => {});
    await db?.drop();
  });
  beforeEach(async () => {
    await db.client.query('TRUNCATE entities RESTART IDENTITY');
    await db.client.query(
      `INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b'), ('c', 'a.b.c')`,
    );
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    await db.client.query('TRUNCATE mv_refresh_audit');
  });

  it('audits a psql call with trigger sql, counts clean skips without auditing them, and reports the rows', async () => {
    await db.client.query(`UPDATE entities SET name = 'b2' WHERE path = 'a.b'`);
    const first = await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    expect(
      first.rows.map((r) => [r.view_name, r.status, r.reason, r.method, Number(r.rows)]),
    ).toEqual([
      ['mv_entity_ancestors', 'refreshed', null, 'concurrent', 3],
      ['mv_descendant_counts', 'refreshed', null, 'concurrent', 3],
    ]);
    const skipsBefore = await cleanSkips();
    const second = await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    expect(second.rows.map((r) => [r.view_name, r.status, r.reason, r.method])).toEqual([
      ['mv_entity_ancestors', 'skipped', 'no_changes', null],
      ['mv_descendant_counts', 'skipped', 'no_changes', null],
    ]);
    // A clean skip is counted on the view's state, not written as an audit row.
    expect((await cleanSkips()).map((n, i) => n - (skipsBefore[i] ?? 0))).toEqual([1, 1]);
    const audit = await auditRows(db.client);
    expect(audit.map((r) => [r.view_name, r.trigger, r.status])).toEqual([
      ['mv_entity_ancestors', 'sql', 'refreshed'],
      ['mv_descendant_counts', 'sql', 'refreshed'],
    ]);
    const pid = (await db.client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    for (const row of audit) {
      expect(row.backend_pid).toBe(pid);
      expect(row.finished_at.getTime()).toBeGreaterThanOrEqual(row.started_at.getTime());
    }
    expect(audit[0].pending_changes).toBe(1);
    expect(audit[0].data_as_of).not.toBeNull();
    const view = await db.client.query(
      `SELECT ancestors FROM mv_entity_ancestors WHERE path = 'a.b.c'`,
    );
    expect(view.rows[0].ancestors).toEqual(['a', 'b2']);
  });

  it('measures staleness as data age: the earliest unreflected change', async () => {
    const before = Date.now();
    await db.client.query(`UPDATE entities SET name = 'x' WHERE path = 'a'`);
    const afterWrite = Date.now();
    // Time must pass between the two writes for "earliest" and "latest" change to differ.
    await new Promise((r) => setTimeout(r, 600));
    await db.client.query(`UPDATE entities SET name = 'y' WHERE path = 'a'`); // a later change does not reset it
    const checkStart = Date.now();
    const rows = await status();
    const checkEnd = Date.now();
    for (const row of rows) {
      expect(row.pending).toBe(2);
      // The oracle: the first write happened in [before, afterWrite]; the check in [checkStart, checkEnd].
      expect(row.staleness).toBeGreaterThanOrEqual(checkStart - afterWrite - 5);
      expect(row.staleness).toBeLessThanOrEqual(checkEnd - before + 5);
    }
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    expect((await status()).map((r) => [r.pending, r.staleness])).toEqual([
      [0, 0],
      [0, 0],
    ]);
  });

  it('keeps a change pending when its transaction commits after the refresh took its snapshot', async () => {
    const writer = await connect();
    const blocker = await connect();
    // Another session's open REFRESH holds the view's EXCLUSIVE lock: ours waits after taking its snapshot.
    await blocker.query('BEGIN');
    await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors'); // holds its EXCLUSIVE lock until COMMIT
    await writer.query('BEGIN');
    await writer.query(`UPDATE entities SET name = 'late' WHERE path = 'a.b'`);
    const refresher = await connect();
    const refreshing = refresher.query('SELECT * FROM refresh_hierarchy_views(true)');
    await waitForLockWait(db.client, 'mv_entity_ancestors');
    await writer.query('COMMIT'); // committed while the refresh is in flight
    await blocker.query('COMMIT');
    const result = await refreshing;
    expect(result.rows.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);
    // mv_entity_ancestors took its snapshot before the commit: still pending. mv_descendant_counts
    // was refreshed after the lock was released, so its snapshot saw the commit.
    expect((await status()).map((r) => [r.view_name, r.pending])).toEqual([
      ['mv_entity_ancestors', 1],
      ['mv_descendant_counts', 0],
    ]);
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    expect((await status()).every((r) => r.pending === 0)).toBe(true);
    const view = await db.client.query(`SELECT name FROM mv_entity_ancestors WHERE path = 'a.b'`);
    expect(view.rows[0].name).toBe('late');
  });

  it('is single-flight: a second caller returns skipped at once instead of queuing', async () => {
    const blocker = await connect();
    await blocker.query('BEGIN');
    await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors'); // holds its EXCLUSIVE lock until COMMIT
    const first = await connect();
    const firstCall = first.query('SELECT * FROM refresh_hierarchy_views(true)');
    await waitForLockWait(db.client, 'mv_entity_ancestors');
    const started = Date.now();
    const second = await db.client.query('SELECT * FROM refresh_hierarchy_views(true)');
    const secondMs = Date.now() - started;
    expect(second.rows.map((r) => [r.status, r.reason])).toEqual([
      ['skipped', 'lock_busy'],
      ['skipped', 'lock_busy'],
    ]);
    expect(second.rows[0].error_message).toMatch(/another refresh is running \(backend pid \d+\)/);
    expect(secondMs).toBeLessThan(1000);
    await blocker.query('COMMIT');
    expect((await firstCall).rows.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);
    const audit = await auditRows(db.client);
    expect(audit.filter((r) => r.status === 'skipped')).toHaveLength(2);
    expect(audit.filter((r) => r.status === 'refreshed')).toHaveLength(2);
  });

  it('isolates a failing view: the other is refreshed and the failure is audited', async () => {
    // Without its unique index, CONCURRENTLY cannot refresh mv_descendant_counts.
    await db.client.query('DROP INDEX mv_descendant_counts_entity_id_key');
    try {
      await db.client.query(`UPDATE entities SET name = 'z' WHERE path = 'a.b.c'`);
      const { rows } = await db.client.query('SELECT * FROM refresh_hierarchy_views()');
      expect(rows.map((r) => [r.view_name, r.status, r.error_code])).toEqual([
        ['mv_entity_ancestors', 'refreshed', null],
        ['mv_descendant_counts', 'failed', '55000'],
      ]);
      const audit = await auditRows(db.client);
      expect(audit.map((r) => [r.view_name, r.status, r.error_code])).toEqual([
        ['mv_entity_ancestors', 'refreshed', null],
        ['mv_descendant_counts', 'failed', '55000'],
      ]);
      const pending = await status();
      expect(pending.map((r) => [r.view_name, r.pending])).toEqual([
        ['mv_entity_ancestors', 0],
        ['mv_descendant_counts', 1],
      ]);
    } finally {
      await db.client.query(
        'CREATE UNIQUE INDEX mv_descendant_counts_entity_id_key ON mv_descendant_counts (entity_id)',
      );
    }
  });

  it('gives an unpopulated view one plain refresh', async () => {
    await db.client.query('REFRESH MATERIALIZED VIEW mv_descendant_counts WITH NO DATA');
    const { rows } = await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    expect(rows.map((r) => [r.view_name, r.status])).toEqual([
      ['mv_entity_ancestors', 'skipped'],
      ['mv_descendant_counts', 'refreshed'],
    ]);
    const populated = await db.client.query(
      `SELECT relispopulated FROM pg_class WHERE oid = 'mv_descendant_counts'::regclass`,
    );
    expect(populated.rows[0].relispopulated).toBe(true);
  });

  it('records a statement timeout as failed 57014 and the other view as not attempted', async () => {
    await db.client.query(`UPDATE entities SET name = 't' WHERE path = 'a'`);
    const blocker = await connect();
    await blocker.query('BEGIN');
    await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors'); // holds its EXCLUSIVE lock until COMMIT
    try {
      await db.client.query(`SET statement_timeout = '300ms'`);
      const { rows } = await db.client.query('SELECT * FROM refresh_hierarchy_views(true)');
      expect(rows.map((r) => [r.view_name, r.status, r.reason, r.error_code])).toEqual([
        ['mv_entity_ancestors', 'failed', 'statement_timeout', '57014'],
        ['mv_descendant_counts', 'skipped', 'statement_timeout', null],
      ]);
    } finally {
      await db.client.query('RESET statement_timeout');
      await blocker.query('COMMIT');
    }
    const audit = await auditRows(db.client);
    expect(audit.map((r) => [r.status, r.error_code])).toEqual([
      ['failed', '57014'],
      ['skipped', null],
    ]);
    expect((await status()).every((r) => r.pending === 1)).toBe(true);
  });

  it('records a cancel (pg_cancel_backend) as cancelled', async () => {
    const blocker = await connect();
    await blocker.query('BEGIN');
    await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors'); // holds its EXCLUSIVE lock until COMMIT
    const victim = await connect();
    const victimPid = (await victim.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const call = victim.query('SELECT * FROM refresh_hierarchy_views(true)');
    await waitUntil(
      async () => {
        const { rows } = await db.client.query(
          `SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1`,
          [victimPid],
        );
        return rows[0]?.wait_event_type === 'Lock';
      },
      10_000,
      'the refresh waits for the lock',
    );
    await db.client.query('SELECT pg_cancel_backend($1)', [victimPid]);
    const { rows } = await call;
    await blocker.query('COMMIT');
    expect(rows.map((r) => [r.status, r.reason, r.error_code])).toEqual([
      ['cancelled', 'cancelled', '57014'],
      ['cancelled', 'cancelled', null],
    ]);
    const locks = await db.client.query(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = $1`,
      [victimPid],
    );
    expect(locks.rows[0].n).toBe(0);
  });

  it('tells a lock timeout by its SQLSTATE: failed, reason lock_timeout', async () => {
    await db.client.query(`UPDATE entities SET name = 'l' WHERE path = 'a'`);
    const blocker = await connect();
    await blocker.query('BEGIN');
    await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors'); // holds its EXCLUSIVE lock until COMMIT
    try {
      await db.client.query(`SET lock_timeout = '200ms'`);
      const { rows } = await db.client.query('SELECT * FROM refresh_hierarchy_views(true)');
      expect(rows.map((r) => [r.view_name, r.status, r.reason, r.error_code])).toEqual([
        ['mv_entity_ancestors', 'failed', 'lock_timeout', '55P03'],
        ['mv_descendant_counts', 'refreshed', null, null],
      ]);
    } finally {
      await db.client.query('RESET lock_timeout');
      await blocker.query('COMMIT');
    }
  });

  it('sends no NOTIFY from writers, and one from the refresher after a refresh', async () => {
    const listener = await connect();
    const writes: string[] = [];
    const refreshes: string[] = [];
    listener.on('notification', (n) => {
      if (n.channel === 'hierarchy_changed') writes.push(n.payload ?? '');
      if (n.channel === 'hierarchy_views_refreshed') refreshes.push(n.payload ?? '');
    });
    await listener.query('LISTEN hierarchy_changed');
    await listener.query('LISTEN hierarchy_views_refreshed');
    await db.client.query('BEGIN');
    await db.client.query(`UPDATE entities SET name = 'n1' WHERE path = 'a'`);
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('d', 'a.d')`);
    await db.client.query('COMMIT');
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    // Notifications of one session arrive in commit order: once the refresher's has arrived, a
    // writer's sent before it would have arrived too.
    await waitUntil(() => refreshes.length === 1, 10_000, "the refresher's notification");
    expect(writes).toEqual([]);
    const payload = JSON.parse(refreshes[0]!);
    expect(payload).toEqual({
      views: ['mv_entity_ancestors', 'mv_descendant_counts'],
      rows_changed: null,
      entity_ids: null,
      all: true,
    });
    await db.client.query('SELECT * FROM refresh_hierarchy_views()'); // nothing pending: no NOTIFY
    await db.client.query(`UPDATE entities SET name = 'n2' WHERE path = 'a'`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    await waitUntil(() => refreshes.length === 2, 10_000, "the second refresh's notification");
    expect(writes).toEqual([]);
  });

  it('lets concurrent writers proceed without waiting on each other', async () => {
    const a = await connect();
    const b = await connect();
    await a.query('BEGIN');
    await a.query(`UPDATE entities SET name = 'wa' WHERE path = 'a.b'`);
    await b.query('BEGIN');
    await b.query(`SET LOCAL lock_timeout = '500ms'`);
    await b.query(`UPDATE entities SET name = 'wb' WHERE path = 'a.b.c'`);
    await b.query('COMMIT');
    await a.query('COMMIT');
    const changes = await db.client.query('SELECT count(*)::int AS n FROM hierarchy_changes');
    expect(changes.rows[0].n).toBe(2);
  });

  it('prunes audit rows older than the retention', async () => {
    await db.client.query(
      `INSERT INTO mv_refresh_audit (view_name, trigger, status, started_at, finished_at, duration_ms)
       VALUES ('mv_entity_ancestors', 'sql', 'refreshed', now() - interval '31 days', now() - interval '31 days', 1),
              ('mv_entity_ancestors', 'sql', 'refreshed', now() - interval '2 hours', now() - interval '2 hours', 1)`,
    );
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    expect(
      (await auditRows(db.client)).filter((r) => r.started_at < new Date(Date.now() - 3600_000)),
    ).toHaveLength(1);
    await db.client.query(`SET hierarchy_db.audit_retention = '1 hour'`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    await db.client.query('RESET hierarchy_db.audit_retention');
    expect(
      (await auditRows(db.client)).filter((r) => r.started_at < new Date(Date.now() - 3600_000)),
    ).toHaveLength(0);
  });

  it('rejects an unknown view or trigger without refreshing anything', async () => {
    await expect(
      db.client.query(`SELECT * FROM refresh_hierarchy_views(true, ARRAY['entities'])`),
    ).rejects.toThrow(/unknown view/);
    await expect(
      db.client.query(`SELECT * FROM refresh_hierarchy_views(true, NULL, 'cron')`),
    ).rejects.toThrow(/unknown refresh trigger/);
    expect(await auditRows(db.client)).toEqual([]);
  });
});

/** Waits until some session waits for a lock on `relation`. */
function waitForLockWait(client: pg.Client, relation: string): Promise<number> {
  return waitUntil(
    async () => {
      const { rows } = await client.query(
        'SELECT count(*)::int AS n FROM pg_locks WHERE relation = $1::regclass AND NOT granted',
        [relation],
      );
      return rows[0].n > 0;
    },
    10_000,
    `a session waits for a lock on ${relation}`,
    25,
  );
}
