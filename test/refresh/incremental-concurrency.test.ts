import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forestArbitrary, insertForest, readEntities } from '../helpers/hierarchy.ts';
import {
  applyBatch,
  countChangedRows,
  editBatchArbitrary,
  expectedViews,
  readBothViews,
} from '../helpers/hierarchy-edits.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// Exactly-once application under concurrency (sql/functions/refresh_hierarchy_views.sql,
// sql/functions/hierarchy_apply_*.sql): the changes a refresh applies are those visible in its
// snapshot and not in the previous one; a transaction that commits after the snapshot stays
// pending for the next refresh.

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs`. */
async function waitFor(
  what: string,
  condition: () => Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client(url);
  client.on('error', () => {});
  await client.connect();
  return client;
}

async function pendingChanges(client: pg.Client): Promise<Record<string, number>> {
  const { rows } = await client.query<{ view_name: string; pending_changes: string }>(
    'SELECT view_name, pending_changes FROM hierarchy_view_status()',
  );
  return Object.fromEntries(rows.map((r) => [r.view_name, Number(r.pending_changes)]));
}

describe('incremental refresh with concurrent writers', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    const [forest] = fc.sample(forestArbitrary({ maxRoots: 4, maxDepth: 6, maxChildren: 4 }), {
      seed: 5,
      numRuns: 1,
    });
    await insertForest(db.client, forest ?? []);
    await db.client.query(`CALL hierarchy_set_view_strategy('incremental')`);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('converges to the definition after writers committed during refreshes', async () => {
    const WRITERS = 4;
    const EDITS_PER_WRITER = 100;
    const writers = await Promise.all(Array.from({ length: WRITERS }, () => connect(db.url)));
    const refresher = await connect(db.url);
    try {
      for (const w of writers) {
        // A writer that deadlocks or loses a race (another moved its target) rolls back and
        // carries on; lock_timeout keeps a lost wakeup from hanging the test.
        await w.query(`SET lock_timeout = '5s'`);
      }
      let writing = true;
      const commitTimes: number[] = [];
      let failedEdits = 0;
      const writing$ = Promise.all(
        writers.map(async (w, i) => {
          const batches = fc.sample(editBatchArbitrary({ truncate: false, maxEdits: 1 }), {
            seed: 100 + i,
            numRuns: EDITS_PER_WRITER,
          });
          for (const batch of batches) {
            try {
              const applied = await applyBatch(w, batch);
              if (applied.committedWrite) commitTimes.push(performance.now());
            } catch {
              failedEdits++;
              await w.query('ROLLBACK').catch(() => {});
            }
          }
        }),
      ).finally(() => {
        writing = false;
      });

      const refreshes: { start: number; end: number; rows: Record<string, unknown>[] }[] = [];
      let checkedMidway = 0;
      while (writing) {
        const start = performance.now();
        // Every other refresh runs in REPEATABLE READ: its applies read the transaction's
        // snapshot, so the tables must then equal the definition over the entities that same
        // snapshot sees, while writers keep committing.
        const repeatable = refreshes.length % 2 === 1;
        if (repeatable) await refresher.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        const { rows } = await refresher.query(
          'SELECT view_name, status, reason, method, rows_changed, error_message FROM refresh_hierarchy_views()',
        );
        if (repeatable) {
          const expected = await expectedViews(refresher);
          const live = await readBothViews(refresher);
          await refresher.query('COMMIT');
          expect(live.ancestors).toEqual(expected.ancestors);
          expect(live.counts).toEqual(expected.counts);
          checkedMidway++;
        }
        refreshes.push({ start, end: performance.now(), rows });
      }
      await writing$;
      expect(checkedMidway).toBeGreaterThan(0);

      const during = commitTimes.filter((t) =>
        refreshes.some((r) => r.start < t && t < r.end),
      ).length;
      const statuses = refreshes.flatMap((r) => r.rows.map((v) => v.status));
      console.log(
        `[incremental-concurrency] ${commitTimes.length} committed edits (${during} while a refresh ran), ${failedEdits} rolled back, ${refreshes.length} refreshes`,
      );
      expect(commitTimes.length).toBeGreaterThan(WRITERS * EDITS_PER_WRITER * 0.5);
      expect(during).toBeGreaterThan(0);
      expect(refreshes.length).toBeGreaterThan(1);
      // No refresh failed, and the incremental path did the work.
      expect(refreshes.flatMap((r) => r.rows.filter((v) => v.status === 'failed'))).toEqual([]);
      expect(new Set(statuses)).toEqual(new Set(['refreshed', 'skipped']));
      expect(
        refreshes.flatMap((r) => r.rows).filter((v) => v.method === 'incremental').length,
      ).toBeGreaterThan(0);

      const last = await refresher.query(
        'SELECT view_name, status, method FROM refresh_hierarchy_views()',
      );
      for (const row of last.rows) {
        expect(['refreshed', 'skipped']).toContain(row.status);
        if (row.status === 'refreshed') expect(row.method).toBe('incremental');
      }
      const expected = await expectedViews(refresher);
      const live = await readBothViews(refresher);
      expect(live.ancestors).toEqual(expected.ancestors);
      expect(live.counts).toEqual(expected.counts);
      expect(await pendingChanges(refresher)).toEqual({
        mv_entity_ancestors: 0,
        mv_descendant_counts: 0,
      });
      // No TRUNCATE and small pending sets: every refresh that did work applied the changes
      // incrementally (a fallback to full would also hide an incremental bug from this test).
      expect(
        refreshes
          .flatMap((r) => r.rows)
          .filter((v) => v.status === 'refreshed' && v.method !== 'incremental'),
      ).toEqual([]);
    } finally {
      await Promise.all([...writers, refresher].map((c) => c.end()));
    }
  }, 300_000);

  // The refresh's snapshot is taken, then it is held (it waits for a row lock of the ancestors
  // table, taken by another session) while a subtree move commits: the move is pending after
  // that refresh and applied, once, by the next.
  it.each([
    ['READ COMMITTED', 'READ COMMITTED'],
    ['REPEATABLE READ', 'REPEATABLE READ'],
  ])(
    'keeps a move that commits after the snapshot pending (refresh in %s)',
    async (_, isolation) => {
      const { client } = db;
      await client.query('TRUNCATE entities RESTART IDENTITY');
      await client.query(
        `INSERT INTO entities (name, path, is_active) VALUES
         ('a', 'a', true), ('b', 'b', true), ('t', 'b.t', true), ('l', 'a.l', true),
         ('s', 'a.s', true), ('x', 'a.s.x', false), ('y', 'a.s.y', true), ('z', 'a.s.y.z', true)`,
      );
      await client.query('SELECT * FROM refresh_hierarchy_views()');
      const initial = await expectedViews(client);
      expect(await readBothViews(client)).toEqual(initial);
      const auditFrom = Number(
        (await client.query('SELECT COALESCE(max(id), 0) AS id FROM mv_refresh_audit')).rows[0].id,
      );

      const blocker = await connect(db.url);
      const mover = await connect(db.url);
      const refresher = await connect(db.url);
      try {
        // Committed before the refresh: a leaf rename.
        await client.query(`UPDATE entities SET name = 'l2' WHERE path = 'a.l'`);
        const renamed = await expectedViews(client);
        const leafId = renamed.ancestors.find((r) => r.path === 'a.l')!.entity_id;

        // Holds the row the refresh will update for that rename.
        await blocker.query('BEGIN');
        await blocker.query('SELECT 1 FROM mv_entity_ancestors WHERE entity_id = $1 FOR UPDATE', [
          leafId,
        ]);
        // Moves a subtree holding an inactive node, uncommitted.
        await mover.query('BEGIN');
        await mover.query(
          `UPDATE entities SET path = 'b.t' || subpath(path, 1) WHERE path <@ 'a.s'`,
        );

        const refresherPid = (await refresher.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
        const blockerPid = (await blocker.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
        await refresher.query(`BEGIN ISOLATION LEVEL ${isolation}`);
        const first$ = refresher.query(
          'SELECT view_name, status, method, rows_changed FROM refresh_hierarchy_views()',
        );
        // The refresh has its snapshot and waits for the blocker's row lock.
        await waitFor('the refresh to wait for the row lock', async () => {
          const { rows } = await client.query(
            'SELECT $1::int = ANY (pg_blocking_pids($2::int)) AS blocked',
            [blockerPid, refresherPid],
          );
          return rows[0].blocked === true;
        });
        await mover.query('COMMIT');
        await blocker.query('ROLLBACK');
        const first = (await first$).rows;
        await refresher.query('COMMIT');
        const moved = await expectedViews(client);

        // Ancestors: its apply ran in the snapshot from before the move.
        expect(await readBothViews(client).then((v) => v.ancestors)).toEqual(renamed.ancestors);
        const pendingAfterFirst = await pendingChanges(client);
        expect(pendingAfterFirst.mv_entity_ancestors).toBeGreaterThan(0);
        // Counts: in READ COMMITTED its apply is a later statement, which sees the move; in
        // REPEATABLE READ it shares the snapshot from before the move.
        const countsSawMove = isolation === 'READ COMMITTED';
        expect(await readBothViews(client).then((v) => v.counts)).toEqual(
          countsSawMove ? moved.counts : renamed.counts,
        );
        expect((pendingAfterFirst.mv_descendant_counts ?? 0) > 0).toBe(!countsSawMove);
        expect(first).toEqual([
          {
            view_name: 'mv_entity_ancestors',
            status: 'refreshed',
            method: 'incremental',
            rows_changed: '1',
          },
          {
            view_name: 'mv_descendant_counts',
            status: 'refreshed',
            method: 'incremental',
            rows_changed: String(
              countChangedRows(initial.counts, countsSawMove ? moved.counts : renamed.counts),
            ),
          },
        ]);

        // The next refresh applies the move, once.
        const second = (
          await refresher.query(
            'SELECT view_name, status, reason, method, rows_changed FROM refresh_hierarchy_views()',
          )
        ).rows;
        const movedRows = countChangedRows(renamed.ancestors, moved.ancestors);
        expect(movedRows).toBe(3); // a.s, a.s.y, a.s.y.z; the inactive a.s.x has no row
        expect(second).toEqual([
          {
            view_name: 'mv_entity_ancestors',
            status: 'refreshed',
            reason: null,
            method: 'incremental',
            rows_changed: String(movedRows),
          },
          countsSawMove
            ? {
                view_name: 'mv_descendant_counts',
                status: 'skipped',
                reason: 'no_changes',
                method: null,
                rows_changed: null,
              }
            : {
                view_name: 'mv_descendant_counts',
                status: 'refreshed',
                reason: null,
                method: 'incremental',
                rows_changed: String(countChangedRows(renamed.counts, moved.counts)),
              },
        ]);
        expect(await readBothViews(client)).toEqual(moved);
        expect(moved).toEqual(
          await expectedViews(client).then(async (v) => {
            expect((await readEntities(client)).length).toBe(8);
            return v;
          }),
        );
        expect(await pendingChanges(client)).toEqual({
          mv_entity_ancestors: 0,
          mv_descendant_counts: 0,
        });

        // The audit: the rename once, then the move once; each refresh saw one pending transaction.
        const audit = await client.query(
          `SELECT view_name, method, rows_changed::int, pending_changes::int
           FROM mv_refresh_audit WHERE id > $1 AND view_name = 'mv_entity_ancestors' ORDER BY id`,
          [auditFrom],
        );
        expect(audit.rows).toEqual([
          {
            view_name: 'mv_entity_ancestors',
            method: 'incremental',
            rows_changed: 1,
            pending_changes: 1,
          },
          {
            view_name: 'mv_entity_ancestors',
            method: 'incremental',
            rows_changed: movedRows,
            pending_changes: 1,
          },
        ]);
      } finally {
        await Promise.all([blocker, mover, refresher].map((c) => c.end()));
      }
    },
  );
  // A strategy switch builds the new relation from one snapshot and swaps it in later; writes
  // that commit in between (here while the swap waits for a reader's lock) are pending after the
  // switch and applied by the next refresh, in either direction.
  it.each([
    ['incremental', 'materialized', 'incremental'],
    ['materialized', 'incremental', 'concurrent'],
  ] as const)(
    'keeps writes committed during a switch to %s pending for the next refresh',
    async (strategy, from, method) => {
      const { client } = db;
      await client.query('CALL hierarchy_set_view_strategy($1)', [from]);
      await client.query('SELECT * FROM refresh_hierarchy_views()');
      const reader = await connect(db.url);
      const converter = await connect(db.url);
      const writer = await connect(db.url);
      try {
        const before = await expectedViews(client);
        await reader.query('BEGIN');
        await reader.query('SELECT 1 FROM mv_entity_ancestors LIMIT 1');
        const readerPid = (await reader.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
        const converterPid = (await converter.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
        const switching = converter.query('CALL hierarchy_set_view_strategy($1)', [strategy]);
        // The ancestors relation is built; its swap waits for the reader.
        await waitFor('the swap to wait for the reader', async () => {
          const { rows } = await client.query(
            'SELECT $1::int = ANY (pg_blocking_pids($2::int)) AS blocked',
            [readerPid, converterPid],
          );
          return rows[0].blocked === true;
        });
        const batches = fc.sample(editBatchArbitrary({ truncate: false }), {
          seed: 77,
          numRuns: 3,
        });
        let wrote = false;
        for (const batch of batches)
          wrote = (await applyBatch(writer, batch)).committedWrite || wrote;
        await writer.query(
          `UPDATE entities SET name = name || 'w' WHERE id = (SELECT min(id) FROM entities)`,
        );
        await reader.query('COMMIT');
        await switching;
        const after = await expectedViews(client);
        expect(countChangedRows(before.ancestors, after.ancestors)).toBeGreaterThan(0);

        const kinds = await client.query(
          `SELECT relkind FROM pg_class WHERE oid = ANY (ARRAY[to_regclass('mv_entity_ancestors'), to_regclass('mv_descendant_counts')])`,
        );
        expect(kinds.rows.map((r) => r.relkind)).toEqual(
          strategy === 'incremental' ? ['r', 'r'] : ['m', 'm'],
        );
        // The ancestors relation holds the contents of its build snapshot, from before the writes;
        // the counts relation was built after them.
        const live = await readBothViews(client);
        expect(live.ancestors).toEqual(before.ancestors);
        expect(live.counts).toEqual(after.counts);
        const pending = await pendingChanges(client);
        expect(pending.mv_entity_ancestors).toBeGreaterThan(0);
        expect(pending.mv_descendant_counts).toBe(0);

        const refreshed = await client.query(
          'SELECT view_name, status, method FROM refresh_hierarchy_views()',
        );
        expect(refreshed.rows).toEqual([
          { view_name: 'mv_entity_ancestors', status: 'refreshed', method },
          {
            view_name: 'mv_descendant_counts',
            status: 'skipped',
            method: null,
          },
        ]);
        expect(await readBothViews(client)).toEqual(after);
        expect(await pendingChanges(client)).toEqual({
          mv_entity_ancestors: 0,
          mv_descendant_counts: 0,
        });
      } finally {
        await Promise.all([reader, converter, writer].map((c) => c.end()));
      }
    },
    120_000,
  );
  // The counts apply fixes its batch in a first statement and applies it in a later one; in READ
  // COMMITTED a transaction may commit in between. Here the later statement waits for a lock on
  // the counts table while a transaction moves a subtree (Z) away from a path and moves an entity
  // of the batch (X, renamed before the refresh) into it. Whatever the apply makes of it, the
  // next refresh must leave both tables equal to the definition.
  it('stays exact when a move commits between the counts apply’s batch and its apply (READ COMMITTED)', async () => {
    const { client } = db;
    await client.query(`CALL hierarchy_set_view_strategy('incremental')`);
    await client.query('TRUNCATE entities RESTART IDENTITY');
    await client.query(
      `INSERT INTO entities (name, path) VALUES
         ('a', 'a'), ('x', 'a.x'), ('b', 'b'), ('z', 'b.z'), ('zc', 'b.z.c'), ('c', 'c')`,
    );
    await client.query('SELECT * FROM refresh_hierarchy_views()');
    expect(await readBothViews(client)).toEqual(await expectedViews(client));

    const blocker = await connect(db.url);
    const mover = await connect(db.url);
    const refresher = await connect(db.url);
    try {
      await client.query(`UPDATE entities SET name = 'x2' WHERE path = 'a.x'`);
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE mv_descendant_counts IN SHARE MODE');
      await mover.query('BEGIN');
      await mover.query(`UPDATE entities SET path = 'c' || subpath(path, 1) WHERE path <@ 'b.z'`);
      await mover.query(`UPDATE entities SET path = 'b.z' WHERE path = 'a.x'`);

      const refresherPid = (await refresher.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const blockerPid = (await blocker.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const first$ = refresher.query(
        'SELECT view_name, status, method FROM refresh_hierarchy_views()',
      );
      await waitFor('the counts apply to wait for the table lock', async () => {
        const { rows } = await client.query(
          'SELECT $1::int = ANY (pg_blocking_pids($2::int)) AS blocked',
          [blockerPid, refresherPid],
        );
        return rows[0].blocked === true;
      });
      await mover.query('COMMIT');
      await blocker.query('ROLLBACK');
      const first = (await first$).rows;
      expect(first.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);

      const second = await refresher.query(
        'SELECT view_name, status, method FROM refresh_hierarchy_views()',
      );
      expect(second.rows.map((r) => r.status)).not.toContain('failed');
      const live = await readBothViews(client);
      const expected = await expectedViews(client);
      expect(live.ancestors).toEqual(expected.ancestors);
      expect(live.counts).toEqual(expected.counts);
      expect(await pendingChanges(client)).toEqual({
        mv_entity_ancestors: 0,
        mv_descendant_counts: 0,
      });
    } finally {
      await Promise.all([blocker, mover, refresher].map((c) => c.end()));
    }
  });
});
