import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedHierarchy } from '../../src/seed/seed-hierarchy.ts';
import { summarizeLatencies } from '../../src/slo/latency.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

describe('summarizeLatencies', () => {
  it('gives the mean and nearest-rank percentiles', () => {
    const samples = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(summarizeLatencies(samples.reverse())).toEqual({
      samples: 100,
      mean_ms: 50.5,
      p50_ms: 50,
      p95_ms: 95,
      p99_ms: 99,
      max_ms: 100,
    });
    expect(summarizeLatencies([0.1234567])).toMatchObject({ mean_ms: 0.123, p99_ms: 0.123 });
  });

  it('refuses to summarize nothing', () => {
    expect(() => summarizeLatencies([])).toThrow(RangeError);
  });
});

describe('slo (CLI) outcomes', () => {
  let db: TestDatabase;
  const cli = (...args: string[]) =>
    runCli(['--log-level', 'warn', '--database-url', db.url, 'slo', ...args]);

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('exits 1 with a hint when there is nothing to look up', async () => {
    const result = await cli('--samples', '10');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('hierarchy-db seed');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('fails only the refresh check when the refresh threshold is impossible', async () => {
    await seedHierarchy(db.client, { entities: 2000, randomSeed: 1 });
    const result = await cli(
      '--json',
      '--samples',
      '200',
      '--target-mean-ms',
      '10000',
      '--target-p95-ms',
      '10000',
      '--refresh-threshold-ms',
      '0.000001',
    );
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout);
    expect(report.entities).toBe(2000);
    expect(report.ancestor_resolution.status).toBe('PASSED');
    expect(report.refresh).toMatchObject({ threshold_ms: 0.000001, status: 'FAILED' });
  });

  it('prints a table without --json', async () => {
    const result = await cli(
      '--samples',
      '100',
      '--target-mean-ms',
      '10000',
      '--target-p95-ms',
      '10000',
      '--refresh-threshold-ms',
      '600000',
    );
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('SLO validation at 2000 entities');
    expect(result.stdout).toMatch(/ancestor resolution p95\s+<= 10000 ms/);
    expect(result.stdout).not.toContain('FAILED');
  });
});
