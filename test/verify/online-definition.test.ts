import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, SQL_DIR } from '../../src/package-paths.ts';
import { seedHierarchy } from '../../src/seed/seed-hierarchy.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// A migration that changes a view's definition the documented way (sql/README.md): CREATE OR
// REPLACE VIEW of the definition view, then hierarchy_rebuild_view (build beside, swap names in
// one short transaction). Applied at 200k entities while readers query the view: no reader
// error, and no reader waits for the rebuild.

const ENTITIES = 200_000;
const READERS = 4;

let db: TestDatabase;
let dir: string;
beforeAll(async () => {
  db = await createTestDatabase();
  await seedHierarchy(db.client, { entities: ENTITIES, randomSeed: 42 });
  await db.client.query('SELECT * FROM refresh_hierarchy_views(true)');
  dir = await mkdtemp(join(tmpdir(), 'hdb-online-migrations-'));
  await cp(MIGRATIONS_DIR, dir, { recursive: true });
  // The same rows, another formulation: only the rendering of the definition changes.
  const definition = (
    await readFile(join(SQL_DIR, 'views/hierarchy_descendant_counts_definition.sql'), 'utf8')
  ).replace('ORDER BY e.id;', 'ORDER BY e.id, e.path;');
  await writeFile(
    join(dir, '0099_descendant_counts_order.sql'),
    `-- Up Migration
SELECT set_config('search_path', format('%I, pg_temp', current_schema()), true);
${definition}
SELECT * FROM hierarchy_rebuild_view('mv_descendant_counts', NULL, 'definition_changed');

-- Down Migration
SELECT 1;
`,
  );
}, 300_000);
afterAll(async () => {
  await db?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Reader {
  latenciesMs: number[];
  errors: string[];
  relations: Set<number>;
}

/** Looks up random entities in mv_descendant_counts until `stop()` says so. */
async function read(ids: number[], stop: () => boolean): Promise<Reader> {
  const client = new pg.Client(db.url);
  await client.connect();
  const reader: Reader = { latenciesMs: [], errors: [], relations: new Set() };
  try {
    while (!stop()) {
      const id = ids[Math.floor(Math.random() * ids.length)]!;
      const started = performance.now();
      try {
        const { rows } = await client.query<{ relation: number }>(
          'SELECT tableoid::int AS relation, descendant_count FROM mv_descendant_counts WHERE entity_id = $1',
          [id],
        );
        reader.latenciesMs.push(performance.now() - started);
        if (rows[0]) reader.relations.add(rows[0].relation);
        else reader.errors.push(`entity ${id} not found`);
      } catch (error) {
        reader.errors.push((error as Error).message);
      }
    }
  } finally {
    await client.end();
  }
  return reader;
}

describe('a migration that changes a view definition', () => {
  it(`rebuilds the view online at ${ENTITIES / 1000}k entities: readers see no error and wait < 1 s`, async () => {
    const { rows: before } = await db.client.query<{ oid: number; active: string }>(
      `SELECT 'mv_descendant_counts'::regclass::oid::int AS oid,
              (SELECT count(*) FROM entities WHERE is_active)::text AS active`,
    );
    const { rows: idRows } = await db.client.query<{ id: number }>(
      'SELECT id::int FROM entities WHERE is_active ORDER BY random() LIMIT 1000',
    );
    const ids = idRows.map((r) => r.id);
    let done = false;
    const readers = Array.from({ length: READERS }, () => read(ids, () => done));
    // Readers are running before the migration starts.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const migrated = await runCli(
      ['migrate', 'up', '--migrations-dir', dir, '--database-url', db.url],
      {
        timeoutMs: 240_000,
      },
    );
    // And still after it ends, on the new relation.
    await new Promise((resolve) => setTimeout(resolve, 300));
    done = true;
    const results = await Promise.all(readers);
    expect(migrated.code, migrated.stderr).toBe(0);

    const errors = results.flatMap((r) => r.errors);
    const latencies = results.flatMap((r) => r.latenciesMs);
    expect(errors).toEqual([]);
    expect(latencies.length).toBeGreaterThan(100);
    const maxWaitMs = latencies.reduce((max, ms) => Math.max(max, ms), 0);
    expect(maxWaitMs, `max reader wait ${maxWaitMs.toFixed(1)} ms`).toBeLessThan(1000);

    // A rebuild, not a refresh: a new relation, swapped in while the readers ran.
    const { rows: after } = await db.client.query<{
      oid: number;
      rows: string;
      definition: string;
    }>(
      `SELECT 'mv_descendant_counts'::regclass::oid::int AS oid, (SELECT count(*) FROM mv_descendant_counts)::text AS rows,
              pg_get_viewdef('hierarchy_descendant_counts_definition'::regclass) AS definition`,
    );
    expect(after[0]!.oid).not.toBe(before[0]!.oid);
    expect(after[0]!.definition).toMatch(/ORDER BY e\.id, e\.path/);
    expect(after[0]!.rows).toBe(before[0]!.active);
    const seen = new Set(results.flatMap((r) => [...r.relations]));
    expect(seen).toEqual(new Set([before[0]!.oid, after[0]!.oid]));
    const { rows: differing } = await db.client.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM ((SELECT * FROM hierarchy_descendant_counts_definition EXCEPT ALL SELECT * FROM mv_descendant_counts)
          UNION ALL (SELECT * FROM mv_descendant_counts EXCEPT ALL SELECT * FROM hierarchy_descendant_counts_definition)) d`,
    );
    expect(differing[0]!.n).toBe('0');
    const { rows: audit } = await db.client.query(
      `SELECT status, reason, method FROM mv_refresh_audit WHERE view_name = 'mv_descendant_counts' ORDER BY id DESC LIMIT 1`,
    );
    expect(audit).toEqual([
      { status: 'refreshed', reason: 'definition_changed', method: 'rebuild' },
    ]);
  }, 300_000);
});
