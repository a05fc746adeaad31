import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { auditRows, insertBulkHierarchy } from '../helpers/sql-fixtures.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// `slo` (README, "hierarchy-db slo"): the report's JSON shape and exit codes. Targets are set
// impossibly generous or impossibly strict to decide PASSED/FAILED; no timing is asserted.
describe('slo (CLI)', () => {
  let db: TestDatabase;
  const cli = (...args: string[]) =>
    runCli([...args, '--log-level', 'warn', '--database-url', db.url]);

  beforeAll(async () => {
    db = await createTestDatabase();
    await insertBulkHierarchy(db.client, { roots: 5, children: 10, grandchildren: 10 });
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('prints the report in the documented shape and passes generous targets', async () => {
    const result = await cli(
      'slo',
      '--json',
      '--samples',
      '300',
      '--target-mean-ms',
      '10000',
      '--target-p95-ms',
      '10000',
      '--refresh-threshold-ms',
      '600000',
    );
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(Object.keys(report).sort()).toEqual(['ancestor_resolution', 'entities', 'refresh']);
    expect(report.entities).toBe(5 * (1 + 10 * (1 + 10)));
    expect(Object.keys(report.ancestor_resolution).sort()).toEqual(
      [
        'actual_mean_ms',
        'actual_p95_ms',
        'actual_p99_ms',
        'samples',
        'status',
        'target_mean_ms',
        'target_p95_ms',
      ].sort(),
    );
    expect(report.ancestor_resolution).toMatchObject({
      target_mean_ms: 10000,
      target_p95_ms: 10000,
      samples: 300,
      status: 'PASSED',
    });
    const a = report.ancestor_resolution;
    expect(a.actual_mean_ms).toBeGreaterThan(0);
    expect(a.actual_p95_ms).toBeGreaterThanOrEqual(0);
    expect(a.actual_p99_ms).toBeGreaterThanOrEqual(a.actual_p95_ms);
    expect(report.refresh).toMatchObject({ threshold_ms: 600000, status: 'PASSED' });
    expect(report.refresh.actual_ms).toBeGreaterThan(0);
    // The measured refresh is a real, audited one.
    const audit = await auditRows(db.client);
    expect(audit.filter((r) => r.trigger === 'manual' && r.status === 'refreshed')).toHaveLength(2);
  });

  it('measures the refresh SLO on the audit: the p95 of refreshes in the window', async () => {
    await db.client.query('SELECT * FROM refresh_hierarchy_views()'); // nothing left pending
    // Known durations, newest first: the p95 (continuous) of 10, 20, ..., 200 is 190.5.
    await db.client.query(
      `INSERT INTO mv_refresh_audit (view_name, trigger, status, method, started_at, finished_at, duration_ms)
       SELECT 'mv_entity_ancestors', 'schedule', 'refreshed', 'concurrent', now() - i * interval '1 minute',
              now() - i * interval '1 minute', 10 * i
         FROM generate_series(1, 20) AS i`,
    );
    // Outside the window, or not a refresh: ignored.
    await db.client.query(
      `INSERT INTO mv_refresh_audit (view_name, trigger, status, method, started_at, finished_at, duration_ms)
       VALUES ('mv_entity_ancestors', 'schedule', 'refreshed', 'concurrent', now() - interval '3 days', now() - interval '3 days', 999999),
              ('mv_entity_ancestors', 'schedule', 'failed', 'concurrent', now(), now(), 999999),
              ('mv_entity_ancestors', 'sql', 'refreshed', 'rebuild', now(), now(), 999999)`,
    );
    const { rows } = await db.client.query<{ p95: number; n: number }>(
      `SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95, count(*)::int AS n
         FROM mv_refresh_audit
        WHERE status = 'refreshed' AND method IS DISTINCT FROM 'rebuild' AND started_at > now() - interval '1 day'`,
    );
    const auditBefore = (await auditRows(db.client)).length;
    const threshold = String(Math.floor(Number(rows[0]!.p95))); // the p95 reaches it: FAILED
    const result = await cli(
      'slo',
      '--json',
      '--samples',
      '100',
      '--refresh-threshold-ms',
      threshold,
    );
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout);
    expect(report.refresh).toMatchObject({
      source: 'audit',
      window_ms: 86_400_000,
      samples: rows[0]!.n,
      status: 'FAILED',
    });
    expect(report.refresh.actual_ms).toBeCloseTo(Number(rows[0]!.p95), 3);
    expect(rows[0]!.n).toBeGreaterThanOrEqual(20);
    // Measuring on the audit forces no refresh (nothing was pending).
    expect(await auditRows(db.client)).toHaveLength(auditBefore);

    const measured = await cli('slo', '--json', '--samples', '100', '--measure-refresh');
    expect(JSON.parse(measured.stdout).refresh).toMatchObject({
      source: 'measured',
      samples: null,
    });
    expect(await auditRows(db.client)).toHaveLength(auditBefore + 2);
  });

  it('exits 1 when a target is missed', async () => {
    const result = await cli('slo', '--json', '--samples', '100', '--target-mean-ms', '0.000001');
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout).ancestor_resolution.status).toBe('FAILED');
  });

  it('exits 2 for a bad target', async () => {
    const result = await cli('slo', '--samples', '0');
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });
});
