import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runNode } from '../helpers/cli.ts';

const BENCH = fileURLToPath(new URL('../../scripts/bench.ts', import.meta.url));

/**
 * The smoke run measures both view strategies (each with its daemon run and writer phases):
 * about a minute on two idle cores; on loaded ones it has taken over four, hence the bound.
 */
const RUN_TIMEOUT_MS = 480_000;

/** `npm run bench -- ...args`, through tsx like the npm script. */
const run = (args: string[]) =>
  runNode(['--import', 'tsx', BENCH, ...args], { timeoutMs: RUN_TIMEOUT_MS });

// CI smoke run of `npm run bench` at 10k entities with short phases: the report must be
// produced and well-formed. Never a timing assertion: durations only have to be numbers.
describe('npm run bench (smoke, 10k)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hierarchy-db-bench-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'writes a well-formed JSON report and prints the markdown table',
    async () => {
      const out = join(dir, 'results.json');
      const result = await run([
        '--sizes',
        '10k',
        '--database-url',
        inject('adminUrl'),
        '--out',
        out,
        '--lookup-samples',
        '1000',
        '--writer-seconds',
        '1',
        '--daemon-edits',
        '1',
        '--edit-repeats',
        '2',
        '--capture-clients',
        '4',
      ]);
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(await readFile(out, 'utf8'));

      expect(report).toMatchObject({ version: 1, server: { kind: 'external' } });
      expect(report.machine.cpus).toBeGreaterThan(0);
      expect(report.results).toHaveLength(1);
      const [size] = report.results;
      expect(size.entities).toBe(10_000);
      expect(size.active_entities).toBeGreaterThan(0);
      expect(size.active_entities).toBeLessThan(10_000);
      // Both formulations hold the same rows: the comparison is between equals.
      expect(size.refresh.same_rows).toBe(true);

      const isDuration = (value: unknown) => typeof value === 'number' && value >= 0;
      for (const formulation of [size.refresh.ours, size.refresh.origin]) {
        for (const kind of ['plain_ms', 'concurrently_ms']) {
          const t = formulation[kind];
          expect(
            [t.mv_entity_ancestors, t.mv_descendant_counts, t.total].every(isDuration),
            kind,
          ).toBe(true);
        }
      }
      expect(size.refresh.ratio_concurrently).toBeGreaterThan(0);
      expect(isDuration(size.refresh_function_forced_ms)).toBe(true);
      for (const summary of [
        size.lookups.idle,
        size.lookups.during_concurrent_refresh,
        size.lookups.during_plain_refresh,
        size.clean_skip_call,
      ]) {
        expect(summary.samples).toBeGreaterThan(0);
        expect(
          ['mean_ms', 'p50_ms', 'p95_ms', 'p99_ms', 'max_ms'].every((k) => isDuration(summary[k])),
        ).toBe(true);
        expect(summary.p50_ms).toBeLessThanOrEqual(summary.p99_ms);
      }
      expect(size.lookups.idle.samples).toBe(1000);
      expect(size.lookups.during_concurrent_refresh.statement_runs).toBeGreaterThanOrEqual(1);
      // Nothing changed between the calls: every view skipped.
      expect(size.clean_skip_call.statuses).toEqual(['skipped']);
      expect(size.writer.with_tracking_per_s).toBeGreaterThan(0);
      expect(size.writer.without_tracking_per_s).toBeGreaterThan(0);
      expect(size.writer.phases).toBe(4);
      expect(size.edit_to_visible.measured, size.edit_to_visible.reason).toBe(true);
      expect(size.edit_to_visible.samples).toBe(1);

      // The strategies side by side: every refresh after an edit refreshed both views, with the
      // method of the strategy in force (a materialized view CONCURRENTLY, a table incrementally).
      const strategies = size.strategies;
      expect(isDuration(strategies.switch_to_incremental_ms)).toBe(true);
      // The last (only) size stays incremental: nothing to switch back for.
      expect(strategies.switch_to_materialized_ms).toBeNull();
      const methodsOf = (series: { ms: number; views: { method: string; status: string }[] }[]) => {
        expect(series.every((r) => isDuration(r.ms))).toBe(true);
        expect(series.every((r) => r.views.length === 2)).toBe(true);
        expect(series.every((r) => r.views.every((v) => v.status === 'refreshed'))).toBe(true);
        return [...new Set(series.flatMap((r) => r.views.map((v) => v.method)))];
      };
      const edits = strategies.one_row_edit;
      for (const kind of ['leaf_rename', 'leaf_insert']) {
        expect(edits.materialized[kind]).toHaveLength(1);
        expect(methodsOf(edits.materialized[kind])).toEqual(['concurrent']);
        expect(edits.incremental[kind]).toHaveLength(2);
        expect(methodsOf(edits.incremental[kind])).toEqual(['incremental']);
      }
      expect(edits.ratio_leaf_rename).toBeGreaterThan(0);
      expect(edits.ratio_leaf_insert).toBeGreaterThan(0);
      for (const subtree of [strategies.subtree.move, strategies.subtree.rename]) {
        expect(subtree.descendant_count).toBeGreaterThan(0);
        expect(subtree.subtree_rows).toBeGreaterThan(subtree.descendant_count);
        expect(subtree.refreshes).toHaveLength(2);
        expect(methodsOf(subtree.refreshes)).toEqual(['incremental']);
      }
      // The moved subtree really moved: its rows were rewritten in the ancestors table.
      expect(strategies.subtree.move.refreshes[0].views[0].rows_changed).toBeGreaterThanOrEqual(
        strategies.subtree.move.descendant_count,
      );
      for (const summary of [
        strategies.lookups.idle,
        strategies.lookups.during_incremental_refresh,
      ]) {
        expect(summary.samples).toBeGreaterThan(0);
        expect(isDuration(summary.p95_ms)).toBe(true);
      }
      expect(strategies.lookups.during_incremental_refresh.refresh_runs).toBeGreaterThanOrEqual(1);
      expect(strategies.lookups.during_incremental_refresh.methods).toEqual(['incremental']);
      expect(strategies.edit_to_visible.measured, strategies.edit_to_visible.reason).toBe(true);
      const capture = strategies.writer_capture;
      expect(capture).toMatchObject({ clients: 4, synchronous_commit: 'on' });
      expect(capture.phases).toHaveLength(6);
      for (const rate of [
        capture.off_per_s,
        capture.materialized_per_s,
        capture.incremental_per_s,
      ]) {
        expect(rate).toBeGreaterThan(0);
      }
      expect(capture.ratio_materialized).toBeGreaterThan(0);
      expect(capture.ratio_incremental).toBeGreaterThan(0);
      expect(isDuration(capture.reconcile_ms)).toBe(true);

      expect(report.targets.length).toBeGreaterThanOrEqual(19);
      for (const target of report.targets) {
        expect(typeof target.target).toBe('string');
        expect(typeof target.measured).toBe('string');
        expect([true, false, null]).toContain(target.met);
      }

      expect(result.stdout).toContain('| measure | 10k |');
      expect(result.stdout).toContain('| target | measured | met |');
      expect(result.stdout).toContain('materialized / incremental');
      // The scratch database it created is gone.
      const database = /\/(hierarchy_db_bench_[0-9a-f]+)/.exec(result.stderr)?.[1];
      expect(database).toBeDefined();
      const admin = new pg.Client(inject('adminUrl'));
      await admin.connect();
      try {
        const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [
          database,
        ]);
        expect(rowCount).toBe(0);
      } finally {
        await admin.end();
      }
    },
    RUN_TIMEOUT_MS + 10_000,
  );
});
