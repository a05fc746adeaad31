import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedHierarchy } from '../../src/seed/seed-hierarchy.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// Online strategy switch (sql/functions/hierarchy_set_view_strategy.sql,
// sql/functions/hierarchy_rebuild_view.sql) at 300k entities, both ways, while readers look rows
// up by entity_id in a loop: the new relation is built beside the old one and swapped in one
// short transaction, so readers see no error and wait at most for the swap; the contents are
// identical before and after; the relation kind follows the strategy.

const ENTITIES = 300_000;
const READERS = 3;
const VIEWS = ['mv_entity_ancestors', 'mv_descendant_counts'] as const;

interface ReaderStats {
  queries: number;
  maxMs: number;
  errors: string[];
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client(url);
  client.on('error', () => {});
  await client.connect();
  return client;
}

describe(`strategy switch at ${ENTITIES / 1000}k entities under readers`, () => {
  let db: TestDatabase;
  let ids: string[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    await seedHierarchy(db.client, { entities: ENTITIES, randomSeed: 300, inactiveRatio: 0.1 });
    const refreshed = await db.client.query(
      'SELECT view_name, status FROM refresh_hierarchy_views()',
    );
    expect(refreshed.rows.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);
    ids = (
      await db.client.query<{ id: string }>(
        'SELECT entity_id AS id FROM mv_entity_ancestors ORDER BY random() LIMIT 2000',
      )
    ).rows.map((r) => r.id);
  }, 600_000);
  afterAll(async () => {
    await db?.drop();
  });

  /** Copies both views' contents aside, to compare with EXCEPT after the switch. */
  async function keepContents(): Promise<void> {
    for (const view of VIEWS) {
      await db.client.query(`DROP TABLE IF EXISTS ${view}_before`);
      await db.client.query(`CREATE TABLE ${view}_before AS SELECT * FROM ${view}`);
    }
  }

  async function differingRows(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const view of VIEWS) {
      const { rows } = await db.client.query<{ n: number }>(
        `SELECT ((SELECT count(*) FROM (SELECT * FROM ${view}_before EXCEPT ALL SELECT * FROM ${view}) a)
               + (SELECT count(*) FROM (SELECT * FROM ${view} EXCEPT ALL SELECT * FROM ${view}_before) b))::int AS n`,
      );
      out[view] = rows[0]!.n;
    }
    return out;
  }

  async function relationKinds(): Promise<Record<string, string>> {
    const { rows } = await db.client.query<{ relname: string; relkind: string }>(
      `SELECT relname, relkind FROM pg_class WHERE oid IN (SELECT to_regclass(v) FROM unnest($1::text[]) v)`,
      [VIEWS],
    );
    return Object.fromEntries(rows.map((r) => [r.relname, r.relkind]));
  }

  /**
   * Runs `action` while READERS clients look up random entities in both views, each query timed.
   * Half the readers use named prepared statements (their cached plans must survive the swap),
   * the others plain queries.
   */
  async function underReaders(action: () => Promise<void>): Promise<ReaderStats> {
    const readers = await Promise.all(Array.from({ length: READERS }, () => connect(db.url)));
    const stats: ReaderStats = { queries: 0, maxMs: 0, errors: [] };
    let running = true;
    let actionStart = 0;
    let actionEnd = 0;
    let queriesDuringAction = 0;
    const loops = readers.map(async (reader, i) => {
      let n = i * 101;
      while (running) {
        for (const view of VIEWS) {
          const id = ids[n++ % ids.length];
          const text = `SELECT * FROM ${view} WHERE entity_id = $1`;
          const t0 = performance.now();
          try {
            const { rows } = await reader.query(
              i % 2 === 0 ? { name: `lookup_${view}`, text, values: [id] } : { text, values: [id] },
            );
            if (rows.length !== 1) stats.errors.push(`${view} ${id}: ${rows.length} rows`);
          } catch (error) {
            stats.errors.push(`${view} ${id}: ${(error as Error).message}`);
          }
          const t1 = performance.now();
          stats.queries++;
          stats.maxMs = Math.max(stats.maxMs, t1 - t0);
          if (actionStart > 0 && t0 < (actionEnd || Infinity) && t1 > actionStart)
            queriesDuringAction++;
        }
      }
    });
    try {
      // Readers are warm before the switch starts.
      while (stats.queries < READERS * 20) await new Promise((r) => setTimeout(r, 10));
      actionStart = performance.now();
      await action();
      actionEnd = performance.now();
    } finally {
      running = false;
      await Promise.all(loops);
      await Promise.all(readers.map((r) => r.end()));
    }
    console.log(
      `[conversion] switch took ${(actionEnd - actionStart).toFixed(0)} ms; ${queriesDuringAction} lookups during it, max ${stats.maxMs.toFixed(1)} ms, ${stats.errors.length} errors`,
    );
    expect(queriesDuringAction).toBeGreaterThan(READERS);
    return stats;
  }

  /** To incremental through the CLI, back through the SQL procedure a DBA would CALL. */
  async function switchTo(strategy: 'incremental' | 'materialized'): Promise<void> {
    if (strategy === 'incremental') {
      const result = await runCli(['--database-url', db.url, 'views', 'set-strategy', strategy], {
        timeoutMs: 600_000,
      });
      expect(result.code, result.stderr).toBe(0);
      return;
    }
    const converter = await connect(db.url);
    try {
      await converter.query('CALL hierarchy_set_view_strategy($1)', [strategy]);
    } finally {
      await converter.end();
    }
  }

  /** Privileges on each view (grantee, privilege), owner's own excluded. */
  async function grants(): Promise<string[]> {
    const { rows } = await db.client.query<{ g: string }>(
      `SELECT c.relname || ' ' || COALESCE(r.rolname, 'PUBLIC') || ' ' || a.privilege_type AS g
         FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
         LEFT JOIN pg_roles r ON r.oid = a.grantee
        WHERE c.oid IN (SELECT to_regclass(v) FROM unnest($1::text[]) v) AND a.grantee <> c.relowner
        ORDER BY 1`,
      [VIEWS],
    );
    return rows.map((r) => r.g);
  }

  it.each([
    ['incremental', 'r'],
    ['materialized', 'm'],
  ] as const)(
    'switches to %s online with identical contents',
    async (strategy, relkind) => {
      await keepContents();
      const grantsBefore = await grants();
      const stats = await underReaders(() => switchTo(strategy));
      expect(stats.errors).toEqual([]);
      expect(stats.maxMs).toBeLessThan(1_000);
      expect(await differingRows()).toEqual({ mv_entity_ancestors: 0, mv_descendant_counts: 0 });
      expect(await relationKinds()).toEqual({
        mv_entity_ancestors: relkind,
        mv_descendant_counts: relkind,
      });

      const status = await db.client.query(
        `SELECT view_name, strategy, relation_kind, populated, pending_changes::int, row_count::int
         FROM hierarchy_view_status()`,
      );
      const count = Number(
        (await db.client.query('SELECT count(*) AS n FROM entities WHERE is_active')).rows[0].n,
      );
      expect(status.rows).toEqual(
        VIEWS.map((view) => ({
          view_name: view,
          strategy,
          relation_kind: strategy === 'incremental' ? 'table' : 'materialized view',
          populated: true,
          pending_changes: 0,
          row_count: count,
        })),
      );
      // Readers keep their privileges (hierarchy_reader, when the migrations could create it).
      expect(await grants()).toEqual(grantsBefore);
      // The new relation reflects everything: nothing to do for the next refresh.
      const next = await db.client.query(
        'SELECT view_name, status, reason FROM refresh_hierarchy_views()',
      );
      expect(next.rows.map((r) => [r.status, r.reason])).toEqual([
        ['skipped', 'no_changes'],
        ['skipped', 'no_changes'],
      ]);
      // The same indexes as before the switch, by name.
      const indexes = await db.client.query(
        `SELECT tablename, indexname FROM pg_indexes WHERE tablename = ANY ($1) ORDER BY 1, 2`,
        [VIEWS],
      );
      expect(indexes.rows.map((r) => r.indexname)).toEqual([
        'mv_descendant_counts_depth_path_idx',
        'mv_descendant_counts_entity_id_key',
        'mv_descendant_counts_path_gist',
        'mv_entity_ancestors_depth_path_idx',
        'mv_entity_ancestors_entity_id_key',
        'mv_entity_ancestors_path_gist',
      ]);
    },
    900_000,
  );
});
