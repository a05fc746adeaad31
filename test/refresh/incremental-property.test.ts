import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { forestArbitrary, insertForest } from '../helpers/hierarchy.ts';
import {
  type AppliedBatch,
  applyBatch,
  countChangedRows,
  type ExpectedViews,
  editBatchArbitrary,
  expectedViews,
  readBothViews,
} from '../helpers/hierarchy-edits.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// The incremental strategy (docs/semantics.md, "Strategies"; sql/functions/hierarchy_apply_*.sql)
// against an independent computation in JavaScript (test/helpers/hierarchy.ts): random forests,
// then random batches of every kind of edit, a refresh after each batch. Fixed seed; every
// sequence starts from a TRUNCATE and a new forest, which the refresh must take by method `full`.

/** Seed of both properties: a failure reproduces with the same seed and path. */
const PROPERTY_SEED = 20261202;
/** Sequences of the SQL property (at least 200 in CI). */
const SQL_RUNS = 200;
/** Sequences of the property that alternates the CLI and SQL (a CLI run costs ~2 s of Node start). */
const CLI_RUNS = 8;
/** Sequences of the property with mixed strategies. */
const MIXED_RUNS = 60;

const VIEWS = ['mv_entity_ancestors', 'mv_descendant_counts'] as const;
type ViewName = (typeof VIEWS)[number];

/** Small forests: the oracle is quadratic and every sequence refreshes several times. */
const smallForest = forestArbitrary({
  maxRoots: 3,
  maxDepth: 5,
  maxChildren: 3,
  inactiveRatio: 0.25,
});

interface RefreshRow {
  view: ViewName;
  status: string;
  reason: string | null;
  method: string | null;
  rows: number | null;
  rows_changed: number | null;
}

interface AuditRow {
  view_name: ViewName;
  trigger: string;
  status: string;
  method: string | null;
  rows: number | null;
  rows_changed: number | null;
}

describe('incremental strategy against the oracle', () => {
  let db: TestDatabase;
  let lastAuditId = 0;
  /** Each view's strategy; the last property switches one view back to materialized. */
  const strategies: Record<ViewName, 'incremental' | 'materialized'> = {
    mv_entity_ancestors: 'incremental',
    mv_descendant_counts: 'incremental',
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    // A procedure with transaction control: autocommit, the schema on search_path (public).
    await db.client.query(`CALL hierarchy_set_view_strategy('incremental')`);
    const { rows } = await db.client.query<{ relname: string; relkind: string }>(
      `SELECT relname, relkind FROM pg_class WHERE relname = ANY ($1) ORDER BY relname`,
      [VIEWS],
    );
    expect(rows).toEqual([
      { relname: 'mv_descendant_counts', relkind: 'r' },
      { relname: 'mv_entity_ancestors', relkind: 'r' },
    ]);
    lastAuditId = await maxAuditId();
  });
  afterAll(async () => {
    await db?.drop();
  });

  async function maxAuditId(): Promise<number> {
    const { rows } = await db.client.query<{ id: string | null }>(
      'SELECT max(id) AS id FROM mv_refresh_audit',
    );
    return Number(rows[0]?.id ?? 0);
  }

  async function newAuditRows(): Promise<AuditRow[]> {
    const { rows } = await db.client.query(
      `SELECT id, view_name, trigger, status, method, rows, rows_changed
         FROM mv_refresh_audit WHERE id > $1 ORDER BY id`,
      [lastAuditId],
    );
    if (rows.length > 0) lastAuditId = Number(rows[rows.length - 1].id);
    return rows.map((r) => ({
      view_name: r.view_name,
      trigger: r.trigger,
      status: r.status,
      method: r.method,
      rows: r.rows === null ? null : Number(r.rows),
      rows_changed: r.rows_changed === null ? null : Number(r.rows_changed),
    }));
  }

  type Path = 'sql' | 'sql-transaction' | 'cli';

  async function refresh(path: Path): Promise<RefreshRow[]> {
    if (path === 'cli') {
      const result = await runCli(['--database-url', db.url, 'refresh', '--json']);
      expect(result.code, result.stderr).toBe(0);
      return (JSON.parse(result.stdout) as { results: RefreshRow[] }).results;
    }
    if (path === 'sql-transaction') {
      // A person in psql: an explicit READ COMMITTED transaction around the call.
      await db.client.query('BEGIN ISOLATION LEVEL READ COMMITTED');
    }
    const { rows } = await db.client.query(
      'SELECT view_name, status, reason, method, rows, rows_changed FROM refresh_hierarchy_views()',
    );
    if (path === 'sql-transaction') await db.client.query('COMMIT');
    return rows.map((r) => ({
      view: r.view_name,
      status: r.status,
      reason: r.reason,
      method: r.method,
      rows: r.rows === null ? null : Number(r.rows),
      rows_changed: r.rows_changed === null ? null : Number(r.rows_changed),
    }));
  }

  /**
   * Refreshes through `path` and checks the outcome against the oracle: contents, status, method
   * (`full` after a TRUNCATE, else `incremental`), rows, rows_changed (exactly the rows that
   * differ from the previous contents: no change applied twice or missed), one audit row per view.
   */
  async function refreshAndCheck(
    path: Path,
    applied: AppliedBatch,
    before: ExpectedViews,
  ): Promise<ExpectedViews> {
    const results = await refresh(path);
    const after = await expectedViews(db.client);
    const live = await readBothViews(db.client);
    expect(live.ancestors).toEqual(after.ancestors);
    expect(live.counts).toEqual(after.counts);

    const expectedRows = {
      mv_entity_ancestors: after.ancestors,
      mv_descendant_counts: after.counts,
    };
    const beforeRows = {
      mv_entity_ancestors: before.ancestors,
      mv_descendant_counts: before.counts,
    };
    const methodOf = (view: ViewName) =>
      strategies[view] === 'materialized'
        ? 'concurrent'
        : applied.truncated
          ? 'full'
          : 'incremental';
    const audit = await newAuditRows();
    expect(results.map((r) => r.view)).toEqual([...VIEWS]);
    for (const r of results) {
      const changed = countChangedRows<{ entity_id: number }>(
        beforeRows[r.view],
        expectedRows[r.view],
      );
      if (!applied.committedWrite) {
        expect(r).toMatchObject({ status: 'skipped' });
        expect(r.reason).toBe('no_changes');
        continue;
      }
      expect(r, `${path} ${r.view}`).toMatchObject({
        status: 'refreshed',
        rows: expectedRows[r.view].length,
      });
      const method = methodOf(r.view);
      // A materialized view's REFRESH cannot tell which rows it changed.
      const incremental = strategies[r.view] === 'incremental';
      expect(r.method, `${path} ${r.view}`).toBe(method);
      if (incremental) expect(r.rows_changed, `${path} ${r.view}`).toBe(changed);
      const auditRows = audit
        .filter((a) => a.view_name === r.view)
        .map((a) => (incremental ? a : { ...a, rows_changed: changed }));
      expect(auditRows).toEqual([
        {
          view_name: r.view,
          trigger: path === 'cli' ? 'manual' : 'sql',
          status: 'refreshed',
          method,
          rows: expectedRows[r.view].length,
          rows_changed: changed,
        },
      ]);
    }
    if (!applied.committedWrite) expect(audit).toEqual([]);

    const captured = await db.client.query<{ n: string }>(
      'SELECT count(*) AS n FROM hierarchy_change_rows',
    );
    // Captured rows every incremental view has applied are deleted by the refresh.
    expect(Number(captured.rows[0]?.n)).toBe(0);
    const status = await db.client.query<{ view_name: string; pending_changes: string }>(
      'SELECT view_name, pending_changes FROM hierarchy_view_status()',
    );
    expect(status.rows.map((s) => Number(s.pending_changes))).toEqual([0, 0]);
    return after;
  }

  /** One sequence: a new forest (TRUNCATE + insert, method full), then the batches. */
  async function runSequence(
    forest: Parameters<typeof insertForest>[1],
    batches: Parameters<typeof applyBatch>[1][],
    pathFor: (batchIndex: number) => Path,
  ): Promise<void> {
    const { client } = db;
    const live = await readBothViews(client);
    await client.query('TRUNCATE entities RESTART IDENTITY');
    await insertForest(client, forest);
    let state = await refreshAndCheck(
      pathFor(-1),
      { committedWrite: true, truncated: true },
      { ancestors: live.ancestors, counts: live.counts },
    );
    for (const [i, batch] of batches.entries()) {
      const applied = await applyBatch(client, batch);
      state = await refreshAndCheck(pathFor(i), applied, state);
    }
  }

  it(`stays equal to the definition over ${SQL_RUNS} random sequences refreshed from SQL in READ COMMITTED`, async () => {
    let sequences = 0;
    await fc.assert(
      fc.asyncProperty(
        smallForest,
        fc.array(editBatchArbitrary(), { minLength: 1, maxLength: 3 }),
        async (forest, batches) => {
          sequences++;
          // Alternate the two ways a person calls it: autocommit and an explicit transaction.
          await runSequence(forest, batches, (i) => (i % 2 === 0 ? 'sql' : 'sql-transaction'));
        },
      ),
      { seed: PROPERTY_SEED, numRuns: SQL_RUNS },
    );
    expect(sequences).toBeGreaterThanOrEqual(SQL_RUNS);
  }, 600_000);

  it(`stays equal to the definition over ${CLI_RUNS} sequences refreshed alternately by the CLI and SQL`, async () => {
    await fc.assert(
      fc.asyncProperty(
        smallForest,
        fc.array(editBatchArbitrary(), { minLength: 2, maxLength: 3 }),
        async (forest, batches) => {
          await runSequence(forest, batches, (i) => (i % 2 === 0 ? 'cli' : 'sql'));
        },
      ),
      { seed: PROPERTY_SEED + 1, numRuns: CLI_RUNS },
    );
  }, 600_000);
  // The fallback to a full recompute is for a TRUNCATE in the pending set, not for a pending set
  // with no captured row at all (a write of updated_at only, an UPDATE that matched nothing).
  it('applies a write that changes no view column as an empty incremental change', async () => {
    const { client } = db;
    await client.query('TRUNCATE entities RESTART IDENTITY');
    await client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    await client.query('SELECT * FROM refresh_hierarchy_views()');
    for (const write of [
      `UPDATE entities SET updated_at = now() WHERE path = 'a.b'`,
      `UPDATE entities SET name = 'never' WHERE false`,
    ]) {
      await client.query(write);
      const { rows } = await client.query(
        'SELECT view_name, status, method, rows_changed::int FROM refresh_hierarchy_views()',
      );
      expect(rows, write).toEqual(
        VIEWS.map((view) => ({
          view_name: view,
          status: 'refreshed',
          method: 'incremental',
          rows_changed: 0,
        })),
      );
    }
    lastAuditId = await maxAuditId();
  });
  // Mixed strategies: the change log serves the incremental view alone, the materialized one is
  // refreshed concurrently, and neither loses or keeps a change the other consumed.
  it('stays equal to the definition with one view materialized and the other incremental', async () => {
    await db.client.query(
      `CALL hierarchy_set_view_strategy('materialized', ARRAY['mv_entity_ancestors'])`,
    );
    strategies.mv_entity_ancestors = 'materialized';
    lastAuditId = await maxAuditId();
    try {
      await fc.assert(
        fc.asyncProperty(
          smallForest,
          fc.array(editBatchArbitrary(), { minLength: 1, maxLength: 3 }),
          async (forest, batches) => {
            await runSequence(forest, batches, (i) => (i % 2 === 0 ? 'sql' : 'sql-transaction'));
          },
        ),
        { seed: PROPERTY_SEED + 2, numRuns: MIXED_RUNS },
      );
    } finally {
      strategies.mv_entity_ancestors = 'incremental';
      await db.client.query(`CALL hierarchy_set_view_strategy('incremental')`);
    }
  }, 600_000);
});
