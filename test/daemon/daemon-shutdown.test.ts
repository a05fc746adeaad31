import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import {
  killDaemons,
  refreshWaitingOnLock,
  startDaemon,
  waitForReady,
  waitUntil,
} from './daemon-process.ts';

// Graceful shutdown and failed refreshes (docs/semantics.md, "Faults"). A long refresh is made by another
// session holding the view's EXCLUSIVE lock (its own uncommitted REFRESH ... CONCURRENTLY), which
// the daemon's refresh must wait for while readers go on.
describe('daemon shutdown and retries', () => {
  let db: TestDatabase;
  let blocker: pg.Client | undefined;

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
  });
  afterEach(async () => {
    await blocker?.query('ROLLBACK').catch(() => {});
    await blocker?.end().catch(() => {});
    blocker = undefined;
    await killDaemons();
  });
  afterAll(async () => {
    await killDaemons();
    await db?.drop();
  });

  const holdViewLock = async () => {
    blocker = new pg.Client(db.url);
    blocker.on('error', () => {});
    await blocker.connect();
    await blocker.query('BEGIN');
    // Holds the view's EXCLUSIVE lock until COMMIT (LOCK TABLE refuses materialized views).
    await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors');
    return blocker;
  };
  const lastAuditId = async () =>
    Number(
      (await db.client.query('SELECT coalesce(max(id), 0) AS id FROM mv_refresh_audit')).rows[0].id,
    );
  const advisoryLocks = async () =>
    Number(
      (
        await db.client.query(
          `SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
            WHERE l.locktype = 'advisory' AND d.datname = current_database()`,
        )
      ).rows[0].n,
    );

  it('SIGTERM during a long refresh with --grace 1s: exit 0 within 3 s, audited cancelled, no lock left', async () => {
    const daemon = startDaemon(db.url, [
      '--on-change',
      '--debounce',
      '100ms',
      '--grace',
      '1s',
      '--lock-timeout',
      '60s',
    ]);
    await waitForReady(daemon);
    await holdViewLock();
    const before = await lastAuditId();
    await db.client.query(`UPDATE entities SET name = 'long' WHERE path = 'a.b'`);
    const backendPid = await refreshWaitingOnLock(db.client, daemon, 10_000);
    expect(await advisoryLocks()).toBe(1); // the refresh holds single-flight while it waits

    const signalledAt = Date.now();
    daemon.child.kill('SIGTERM');
    const { code, atMs } = await daemon.exited;
    expect(code, daemon.stderr()).toBe(0);
    expect(atMs - signalledAt).toBeLessThan(3_000);
    expect(atMs - signalledAt).toBeGreaterThanOrEqual(900); // the grace period was honoured

    const { rows } = await db.client.query(
      `SELECT view_name, trigger, status, error_code, backend_pid FROM mv_refresh_audit
        WHERE id > $1 ORDER BY id`,
      [before],
    );
    expect(rows).toEqual([
      {
        view_name: 'mv_entity_ancestors',
        trigger: 'change',
        status: 'cancelled',
        error_code: '57014',
        backend_pid: backendPid,
      },
      {
        view_name: 'mv_descendant_counts',
        trigger: 'change',
        status: 'cancelled',
        error_code: null,
        backend_pid: backendPid,
      },
    ]);
    expect(await advisoryLocks()).toBe(0);
    const events = daemon.logs.map((l) => l.event);
    expect(events).toContain('daemon.cancel');
    expect(events.at(-1)).toBe('daemon.stopped');
  });

  it('lets a refresh that ends within --grace finish, and exits 0', async () => {
    const daemon = startDaemon(db.url, [
      '--on-change',
      '--debounce',
      '100ms',
      '--grace',
      '10s',
      '--lock-timeout',
      '60s',
    ]);
    await waitForReady(daemon);
    const lock = await holdViewLock();
    const before = await lastAuditId();
    await db.client.query(`UPDATE entities SET name = 'finishes' WHERE path = 'a.b'`);
    await refreshWaitingOnLock(db.client, daemon, 10_000);

    daemon.child.kill('SIGTERM');
    await daemon.waitForLog((l) => l.event === 'daemon.draining');
    // Still running and no longer ready while it drains.
    expect((await daemon.get('/readyz')).status).toBe(503);
    await new Promise((r) => setTimeout(r, 500));
    await lock.query('COMMIT');
    const { code } = await daemon.exited;
    expect(code, daemon.stderr()).toBe(0);
    const { rows } = await db.client.query(
      `SELECT view_name, status FROM mv_refresh_audit WHERE id > $1 ORDER BY id`,
      [before],
    );
    expect(rows.map((r) => [r.view_name, r.status])).toEqual([
      ['mv_entity_ancestors', 'refreshed'],
      ['mv_descendant_counts', 'refreshed'],
    ]);
    expect(daemon.logs.some((l) => l.event === 'daemon.cancel')).toBe(false);
  });

  it('exits at once on a second signal', async () => {
    const daemon = startDaemon(db.url, ['--on-change', '--debounce', '100ms', '--grace', '30s']);
    await waitForReady(daemon);
    await holdViewLock();
    await db.client.query(`UPDATE entities SET name = 'second' WHERE path = 'a.b'`);
    const backendPid = await refreshWaitingOnLock(db.client, daemon, 10_000);

    daemon.child.kill('SIGTERM');
    await daemon.waitForLog((l) => l.event === 'daemon.draining');
    const secondAt = Date.now();
    daemon.child.kill('SIGINT');
    const { code, atMs } = await daemon.exited;
    expect(atMs - secondAt).toBeLessThan(1_000);
    expect(code).toBe(1);
    expect(daemon.logs.some((l) => l.event === 'daemon.forced')).toBe(true);
    // A backend waiting on a lock does not notice its client is gone: end it for the next test.
    await db.client.query('SELECT pg_terminate_backend($1)', [backendPid]);
  });

  it('bounds a hung refresh with --statement-timeout and retries it with backoff, auditing every attempt', async () => {
    const daemon = startDaemon(db.url, [
      '--on-change',
      '--debounce',
      '100ms',
      '--statement-timeout',
      '300ms',
    ]);
    await waitForReady(daemon);
    const lock = await holdViewLock();
    const before = await lastAuditId();
    await db.client.query(`UPDATE entities SET name = 'retried' WHERE path = 'a.b'`);

    const failedAttempts = async () =>
      (
        await db.client.query(
          `SELECT trigger, status, error_code FROM mv_refresh_audit
            WHERE id > $1 AND view_name = 'mv_entity_ancestors' ORDER BY id`,
          [before],
        )
      ).rows;
    await waitUntil(
      async () => (await failedAttempts()).length >= 2,
      10_000,
      'two failed attempts',
    );
    await lock.query('COMMIT');
    await waitUntil(
      async () => (await failedAttempts()).some((r) => r.status === 'refreshed'),
      10_000,
      'a retry succeeds once the lock is gone',
    );
    const attempts = await failedAttempts();
    const failures = attempts.filter((r) => r.status === 'failed');
    expect(failures.length).toBeGreaterThanOrEqual(2);
    for (const f of failures)
      expect(f).toEqual({ trigger: 'change', status: 'failed', error_code: '57014' });
    expect(attempts.at(-1)?.status).toBe('refreshed');

    const retries = daemon.logs.filter((l) => l.event === 'refresh.retry');
    expect(retries.length).toBeGreaterThanOrEqual(2);
    expect(retries.map((l) => l.attempt)).toEqual(retries.map((_, i) => i + 1));
    // 1 s, 2 s, ... each with jitter between half and all of it.
    expect(Number(retries[0]?.delay_ms)).toBeGreaterThanOrEqual(500);
    expect(Number(retries[0]?.delay_ms)).toBeLessThanOrEqual(1_000);
    expect(Number(retries[1]?.delay_ms)).toBeGreaterThanOrEqual(1_000);
    expect(Number(retries[1]?.delay_ms)).toBeLessThanOrEqual(2_000);
  });
});
