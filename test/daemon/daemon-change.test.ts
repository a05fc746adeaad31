import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import {
  killDaemons,
  parsePrometheusText,
  startDaemon,
  waitForReady,
  waitUntil,
} from './daemon-process.ts';

/** A 6-field schedule that never fires while a test runs (midnight, January 1st). */
const NEVER = '0 0 0 1 1 *';

// Change-driven refresh (--on-change), health, readiness and metrics (docs/semantics.md,
// "On change", "Metrics").
describe('daemon --on-change', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(
      `INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b'), ('c', 'a.b.c'), ('d', 'd')`,
    );
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
  });
  afterEach(killDaemons);
  afterAll(async () => {
    await killDaemons();
    await db?.drop();
  });

  const lastAuditId = async () =>
    Number(
      (await db.client.query('SELECT coalesce(max(id), 0) AS id FROM mv_refresh_audit')).rows[0].id,
    );

  it('reflects an update in mv_entity_ancestors within 3 s, audited with trigger change', async () => {
    // At debug, so that a tick would be logged if one fired.
    const daemon = startDaemon(db.url, [
      ...['--on-change', '--debounce', '300ms', '--schedule', NEVER, '--log-level', 'debug'],
    ]);
    await waitForReady(daemon);
    expect((await daemon.get('/healthz')).status).toBe(200);
    const before = await lastAuditId();

    const started = Date.now();
    await db.client.query(`UPDATE entities SET name = 'b-renamed' WHERE path = 'a.b'`);
    await waitUntil(
      async () => {
        const { rows } = await db.client.query(
          `SELECT ancestors FROM mv_entity_ancestors WHERE path = 'a.b.c'`,
        );
        return rows[0]?.ancestors.includes('b-renamed') === true;
      },
      3_000,
      'the rename reaches mv_entity_ancestors',
    );
    expect(Date.now() - started).toBeLessThan(3_000);
    // Debounced, not immediate: the daemon waited out the quiet period.
    const debounced = await daemon.waitForLog((l) => l.event === 'change.debounced');
    expect(Number(debounced.waited_ms)).toBeGreaterThanOrEqual(295);

    const { rows } = await db.client.query(
      `SELECT view_name, trigger, status, application_name FROM mv_refresh_audit
        WHERE id > $1 AND status = 'refreshed' ORDER BY id`,
      [before],
    );
    expect(rows).toEqual([
      {
        view_name: 'mv_entity_ancestors',
        trigger: 'change',
        status: 'refreshed',
        application_name: 'hierarchy-db/daemon',
      },
      {
        view_name: 'mv_descendant_counts',
        trigger: 'change',
        status: 'refreshed',
        application_name: 'hierarchy-db/daemon',
      },
    ]);
    // Never a schedule refresh: the schedule does not fire during the test.
    expect(daemon.logs.some((l) => l.event === 'schedule.tick')).toBe(false);
  });

  it('refreshes within --max-wait while writes never stay quiet for --debounce', async () => {
    const daemon = startDaemon(db.url, ['--on-change', '--debounce', '1s', '--max-wait', '1500ms']);
    await waitForReady(daemon);
    const before = await lastAuditId();
    const writesStarted = Date.now();
    let i = 0;
    // One write every 200 ms for 4 s: the 1 s quiet period never comes.
    while (Date.now() - writesStarted < 4_000) {
      await db.client.query(`UPDATE entities SET name = $1 WHERE path = 'd'`, [`d${i++}`]);
      await sleep(200);
    }
    const writesEnded = new Date();
    const first = daemon.logs.find((l) => l.event === 'change.debounced');
    expect(first, daemon.stderr()).toBeDefined();
    expect(Number(first?.waited_ms)).toBeGreaterThanOrEqual(1_400);
    expect(Number(first?.waited_ms)).toBeLessThan(1_900);
    const { rows } = await db.client.query(
      `SELECT count(*)::int AS n FROM mv_refresh_audit
        WHERE id > $1 AND trigger = 'change' AND status = 'refreshed'
          AND view_name = 'mv_entity_ancestors' AND started_at < $2`,
      [before, writesEnded],
    );
    // 4 s of writes with a 1.5 s cap: at least two refreshes while writes were still going.
    expect(rows[0].n).toBeGreaterThanOrEqual(2);
  });

  it('refreshes once after losing its probe connection, without missing the change', async () => {
    // Nothing pending from earlier tests, so the start-up catch-up has nothing to do.
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    const daemon = startDaemon(db.url, ['--on-change', '--debounce', '200ms']);
    await waitForReady(daemon);
    const before = await lastAuditId();
    // Writers send no NOTIFY: the daemon polls the change log. Kill its probe session and write
    // at once; the next probe (on a new connection) still sees the change.
    const killed = await db.client.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'hierarchy-db/daemon-poll'`,
    );
    expect(killed.rowCount).toBe(1);
    await db.client.query(`UPDATE entities SET name = 'a-missed' WHERE path = 'a'`);
    await waitUntil(
      async () => {
        const { rows } = await db.client.query(
          `SELECT name FROM mv_entity_ancestors WHERE path = 'a'`,
        );
        return rows[0]?.name === 'a-missed';
      },
      5_000,
      'the missed change is refreshed',
    );
    const { rows } = await db.client.query(
      `SELECT count(*)::int AS n FROM mv_refresh_audit
        WHERE id > $1 AND view_name = 'mv_entity_ancestors' AND status = 'refreshed'`,
      [before],
    );
    expect(rows[0].n).toBe(1);
    expect((await daemon.get('/readyz')).status).toBe(200);
  });

  it('refreshes a change that arrived while another session held the refresh lock', async () => {
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    const daemon = startDaemon(db.url, ['--on-change', '--debounce', '100ms']);
    await waitForReady(daemon);
    // A manual refresh in an open transaction holds single-flight; its snapshot predates the
    // update below, so that update stays pending after it commits.
    const other = new pg.Client(db.url);
    other.on('error', () => {});
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query(`SELECT * FROM refresh_hierarchy_views(true, NULL, 'manual')`);
      await db.client.query(`UPDATE entities SET name = 'during-lock' WHERE path = 'd'`);
      await daemon.waitForLog(
        (l) => l.event === 'refresh.result' && l.status === 'skipped' && l.reason === 'lock_busy',
      );
      await other.query('COMMIT');
    } finally {
      await other.end();
    }
    // No new notification comes; the daemon looks again by itself.
    await waitUntil(
      async () => {
        const { rows } = await db.client.query(
          `SELECT name FROM mv_entity_ancestors WHERE path = 'd'`,
        );
        return rows[0]?.name === 'during-lock';
      },
      8_000,
      'the change is refreshed after the other session commits',
    );
  });

  it('serves /healthz, /readyz and /metrics with every documented metric and its labels', async () => {
    // Changed before the start: the start-up catch-up refreshes it at once; the changes made
    // afterwards wait out the long debounce, so they show as pending.
    await db.client.query(`UPDATE entities SET name = 'c-metrics' WHERE path = 'a.b.c'`);
    const daemon = startDaemon(db.url, ['--on-change', '--debounce', '20s', '--max-wait', '20s']);
    await waitForReady(daemon);
    await daemon.waitForLog((l) => l.event === 'refresh.result' && l.status === 'refreshed');

    const health = await daemon.get('/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toBe('ok\n');
    const ready = await daemon.get('/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ ready: true, reasons: [] });
    expect((await daemon.get('/nope')).status).toBe(404);

    const beforeWrites = Date.now();
    await db.client.query(`UPDATE entities SET name = 'pending' WHERE path = 'd'`);
    await db.client.query(`UPDATE entities SET name = 'pending2' WHERE path = 'd'`);
    // A scrape re-samples the database when its last sample is older than 250 ms: scrape until
    // one shows both writes and a data age of at least 0.3 s.
    let metrics = { status: 0, body: '', contentType: null as string | null };
    const gauges = (body: string, name: string) =>
      parsePrometheusText(body)
        .samples.filter((s) => s.name === name)
        .map((s) => s.value);
    await waitUntil(
      async () => {
        metrics = await daemon.get('/metrics');
        return (
          gauges(metrics.body, 'hierarchy_view_pending_changes').every((v) => v === 2) &&
          gauges(metrics.body, 'hierarchy_view_staleness_seconds').every((v) => v >= 0.3)
        );
      },
      10_000,
      '/metrics shows 2 pending changes, at least 0.3 s old, for both views',
      100,
    );
    const scrapedAt = Date.now();
    expect(metrics.status).toBe(200);
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const { types, samples } = parsePrometheusText(metrics.body);

    expect(Object.fromEntries(types)).toEqual({
      hierarchy_refresh_duration_seconds: 'histogram',
      hierarchy_refresh_total: 'counter',
      hierarchy_view_staleness_seconds: 'gauge',
      hierarchy_view_pending_changes: 'gauge',
      hierarchy_last_refresh_success_timestamp_seconds: 'gauge',
      hierarchy_db_up: 'gauge',
      hierarchy_refresh_consecutive_failures: 'gauge',
    });
    const views = ['mv_entity_ancestors', 'mv_descendant_counts'];
    const labelKeys = (name: string) =>
      new Set(
        samples.filter((s) => s.name === name).map((s) => Object.keys(s.labels).sort().join(',')),
      );
    expect(labelKeys('hierarchy_refresh_duration_seconds_bucket')).toEqual(
      new Set(['le,method,view']),
    );
    expect(labelKeys('hierarchy_refresh_duration_seconds_count')).toEqual(new Set(['method,view']));
    expect(labelKeys('hierarchy_refresh_total')).toEqual(new Set(['status,view']));
    expect(labelKeys('hierarchy_view_staleness_seconds')).toEqual(new Set(['view']));
    expect(labelKeys('hierarchy_view_pending_changes')).toEqual(new Set(['view']));
    expect(labelKeys('hierarchy_last_refresh_success_timestamp_seconds')).toEqual(
      new Set(['view']),
    );
    expect(labelKeys('hierarchy_db_up')).toEqual(new Set(['']));

    const value = (name: string, labels: Record<string, string> = {}) =>
      samples.find(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      )?.value;
    expect(value('hierarchy_db_up')).toBe(1);
    for (const view of views) {
      expect(
        value('hierarchy_refresh_total', { view, status: 'refreshed' }),
      ).toBeGreaterThanOrEqual(1);
      for (const status of ['skipped', 'failed', 'cancelled']) {
        expect(value('hierarchy_refresh_total', { view, status })).toBeDefined();
      }
      expect(
        value('hierarchy_refresh_duration_seconds_count', { view, method: 'concurrent' }),
      ).toBeGreaterThanOrEqual(1);
      expect(value('hierarchy_view_pending_changes', { view })).toBe(2);
      expect(value('hierarchy_view_staleness_seconds', { view })).toBeGreaterThanOrEqual(0.3);
      expect(value('hierarchy_view_staleness_seconds', { view })).toBeLessThanOrEqual(
        (scrapedAt - beforeWrites) / 1000,
      );
      const lastSuccess = value('hierarchy_last_refresh_success_timestamp_seconds', { view }) ?? 0;
      expect(Math.abs(lastSuccess - Date.now() / 1000)).toBeLessThan(60);
    }

    // promtool (CI installs it) parses and lints the same text.
    if (hasPromtool()) {
      execFileSync('promtool', ['check', 'metrics'], { input: metrics.body });
    }
  });
});

function hasPromtool(): boolean {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
