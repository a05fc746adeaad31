import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectedAncestors,
  expectedDescendantCounts,
  forestArbitrary,
  insertForest,
  readEntities,
  readViews,
} from '../helpers/hierarchy.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// View semantics (docs/semantics.md, "Views") against an independent computation in JavaScript, on random
// forests with a fixed seed: several roots, depth up to 8, ~15% inactive, one subtree moved.
describe('materialized views match the oracle', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('on random forests with a moved subtree', async () => {
    await fc.assert(
      fc.asyncProperty(forestArbitrary(), fc.nat(), fc.nat(), async (forest, pick, target) => {
        const { client } = db;
        await client.query('TRUNCATE entities RESTART IDENTITY');
        await insertForest(client, forest);
        // Move a non-root subtree under another node outside it, in one UPDATE.
        const movable = forest.filter((e) => e.path.includes('.'));
        if (movable.length > 0) {
          const source = movable[pick % movable.length]!.path;
          const targets = forest.filter(
            (e) => e.path !== source && !e.path.startsWith(`${source}.`),
          );
          const dest = targets[target % targets.length]!.path;
          const label = `m${pick % 1000}`;
          const exists = await client.query('SELECT 1 FROM entities WHERE path = $1::ltree', [
            `${dest}.${label}`,
          ]);
          if (exists.rowCount === 0) {
            await client.query(
              `UPDATE entities
                  SET path = CASE WHEN path = $1::ltree THEN $2::ltree || $3::ltree
                                  ELSE $2::ltree || $3::ltree || subpath(path, nlevel($1::ltree)) END
                WHERE path <@ $1::ltree`,
              [source, dest, label],
            );
          }
        }
        await client.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors');
        await client.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_descendant_counts');
        const rows = await readEntities(client);
        const views = await readViews(client);
        expect(views.ancestors).toEqual(expectedAncestors(rows));
        expect(views.counts).toEqual(expectedDescendantCounts(rows));
      }),
      { seed: 20261129, numRuns: 40 },
    );
  });

  it('gives roots empty arrays, never NULL or {NULL}', async () => {
    const { client } = db;
    await client.query('TRUNCATE entities RESTART IDENTITY');
    await client.query(`INSERT INTO entities (name, path) VALUES ('root', 'a'), ('leaf', 'a.b')`);
    await client.query('REFRESH MATERIALIZED VIEW mv_entity_ancestors');
    const { rows } = await client.query(
      `SELECT ancestor_ids IS NULL AS ids_null, ancestors IS NULL AS names_null,
              cardinality(ancestor_ids) AS n, ancestors
         FROM mv_entity_ancestors WHERE path = 'a'`,
    );
    expect(rows).toEqual([{ ids_null: false, names_null: false, n: 0, ancestors: [] }]);
  });

  it('keeps inactive ancestors in the breadcrumb but gives them no row', async () => {
    const { client } = db;
    await client.query('TRUNCATE entities RESTART IDENTITY');
    await client.query(
      `INSERT INTO entities (name, path, is_active) VALUES ('a', 'a', true), ('b', 'a.b', false), ('c', 'a.b.c', true)`,
    );
    await client.query('REFRESH MATERIALIZED VIEW mv_entity_ancestors');
    await client.query('REFRESH MATERIALIZED VIEW mv_descendant_counts');
    const anc = await client.query(
      `SELECT path::text, ancestors FROM mv_entity_ancestors ORDER BY path`,
    );
    expect(anc.rows).toEqual([
      { path: 'a', ancestors: [] },
      { path: 'a.b.c', ancestors: ['a', 'b'] },
    ]);
    const counts = await client.query(
      `SELECT path::text, descendant_count::int AS n FROM mv_descendant_counts ORDER BY path`,
    );
    expect(counts.rows).toEqual([
      { path: 'a', n: 1 },
      { path: 'a.b.c', n: 0 },
    ]);
  });
});
