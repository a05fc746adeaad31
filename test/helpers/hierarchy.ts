import fc from 'fast-check';
import type pg from 'pg';

/** A node of a generated forest. */
export interface GeneratedEntity {
  name: string;
  path: string;
  isActive: boolean;
  confidenceScore: number;
}

/** Options for {@link forestArbitrary}. */
export interface ForestOptions {
  maxRoots?: number;
  maxDepth?: number;
  maxChildren?: number;
  inactiveRatio?: number;
}

/**
 * Random forests: several roots, depth up to `maxDepth` (default 8), about `inactiveRatio`
 * (default 15%) inactive. Paths use labels `n<index>` so every prefix is a real parent.
 */
export function forestArbitrary(options: ForestOptions = {}): fc.Arbitrary<GeneratedEntity[]> {
  const maxDepth = options.maxDepth ?? 8;
  const maxChildren = options.maxChildren ?? 4;
  const inactiveRatio = options.inactiveRatio ?? 0.15;
  return fc
    .record({
      roots: fc.integer({ min: 1, max: options.maxRoots ?? 4 }),
      seed: fc.integer({ min: 1, max: 2 ** 30 }),
    })
    .map(({ roots, seed }) => {
      const random = mulberry32(seed);
      const out: GeneratedEntity[] = [];
      const grow = (path: string, depth: number) => {
        out.push({
          name: `e${out.length}`,
          path,
          isActive: random() >= inactiveRatio,
          confidenceScore: Math.round(random() * 1000) / 1000,
        });
        if (depth >= maxDepth) return;
        // Fewer children deeper down keeps trees a few hundred nodes at most.
        const children = Math.floor(random() * (maxChildren + 1) * (1 - depth / (maxDepth + 1)));
        for (let i = 0; i < children; i++) grow(`${path}.c${i}`, depth + 1);
      };
      for (let r = 0; r < roots; r++) grow(`r${r}`, 1);
      return out;
    });
}

/** A small deterministic PRNG (mulberry32), so generated data depends only on the seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Inserts a forest (parents before children) in one statement. */
export async function insertForest(
  client: pg.ClientBase,
  entities: GeneratedEntity[],
): Promise<void> {
  await client.query(
    `INSERT INTO entities (name, path, is_active, confidence_score)
     SELECT * FROM unnest($1::text[], $2::ltree[], $3::boolean[], $4::float8[])`,
    [
      entities.map((e) => e.name),
      entities.map((e) => e.path),
      entities.map((e) => e.isActive),
      entities.map((e) => e.confidenceScore),
    ],
  );
}

/** A row of `entities` as the oracle sees it. */
export interface EntityRow {
  id: number;
  name: string;
  path: string;
  is_active: boolean;
  confidence_score: number;
}

/** Reads the table back (the oracle's only input). */
export async function readEntities(client: pg.ClientBase): Promise<EntityRow[]> {
  const { rows } = await client.query<EntityRow>(
    'SELECT id, name, path::text AS path, is_active, confidence_score FROM entities',
  );
  return rows.map((r) => ({ ...r, id: Number(r.id) }));
}

/** What `mv_entity_ancestors` must hold, computed in JavaScript from the table rows. */
export function expectedAncestors(rows: EntityRow[]) {
  const byPath = new Map(rows.map((r) => [r.path, r]));
  return rows
    .filter((r) => r.is_active)
    .map((r) => {
      const labels = r.path.split('.');
      const ancestors: EntityRow[] = [];
      for (let i = 1; i < labels.length; i++) {
        const ancestor = byPath.get(labels.slice(0, i).join('.'));
        if (ancestor) ancestors.push(ancestor);
      }
      return {
        entity_id: r.id,
        name: r.name,
        path: r.path,
        path_depth: labels.length,
        confidence_score: r.confidence_score,
        ancestor_ids: ancestors.map((a) => a.id),
        ancestors: ancestors.map((a) => a.name),
      };
    })
    .sort((a, b) => a.entity_id - b.entity_id);
}

/** What `mv_descendant_counts` must hold, computed in JavaScript from the table rows. */
export function expectedDescendantCounts(rows: EntityRow[]) {
  const active = rows.filter((r) => r.is_active);
  return active
    .map((r) => ({
      entity_id: r.id,
      name: r.name,
      path: r.path,
      path_depth: r.path.split('.').length,
      confidence_score: r.confidence_score,
      descendant_count: active.filter((d) => d.path.startsWith(`${r.path}.`)).length,
    }))
    .sort((a, b) => a.entity_id - b.entity_id);
}

/** The live contents of both views, in the oracle's shape. */
export async function readViews(client: pg.ClientBase) {
  const ancestors = await client.query(
    `SELECT entity_id, name, path::text AS path, path_depth, confidence_score, ancestor_ids, ancestors
       FROM mv_entity_ancestors ORDER BY entity_id`,
  );
  const counts = await client.query(
    `SELECT entity_id, name, path::text AS path, path_depth, confidence_score, descendant_count
       FROM mv_descendant_counts ORDER BY entity_id`,
  );
  // bigint arrives as a string from pg; the oracle uses numbers.
  return {
    ancestors: ancestors.rows.map((r) => ({
      ...r,
      entity_id: Number(r.entity_id),
      ancestor_ids: r.ancestor_ids.map(Number),
    })),
    counts: counts.rows.map((r) => ({
      ...r,
      entity_id: Number(r.entity_id),
      descendant_count: Number(r.descendant_count),
    })),
  };
}
