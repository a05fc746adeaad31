import fc from 'fast-check';
import type pg from 'pg';
import {
  type EntityRow,
  expectedAncestors,
  expectedDescendantCounts,
  type GeneratedEntity,
  mulberry32,
  readEntities,
  readViews,
} from './hierarchy.ts';

/**
 * One edit of `entities`, in abstract form: the numbers pick rows of the table as it is when the
 * edit runs (modulo the candidates), so any generated sequence applies to any state.
 */
export type HierarchyEdit =
  | { kind: 'rename'; pick: number }
  | { kind: 'score'; pick: number; score: number }
  | { kind: 'toggle'; pick: number }
  | { kind: 'move'; pick: number; target: number; toRoot: boolean; withInactive: boolean }
  | { kind: 'swap'; pick: number; other: number }
  | { kind: 'deleteLeaf'; pick: number }
  | { kind: 'deleteSubtree'; pick: number }
  | { kind: 'upsert'; pick: number; parent: number }
  | { kind: 'merge'; pick: number; parent: number }
  | { kind: 'replaceLeaf'; pick: number }
  | { kind: 'insert'; parent: number; asRoot: boolean; active: boolean }
  | { kind: 'renumber'; pick: number }
  | { kind: 'noop'; pick: number }
  | { kind: 'truncate'; refill: number }
  | { kind: 'rolledBack'; edit: HierarchyEdit }
  | { kind: 'transaction'; edits: HierarchyEdit[]; savepointRollback: boolean };

const pick = fc.nat({ max: 10_000 });

const singleEdit: fc.Arbitrary<HierarchyEdit> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('rename' as const), pick }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('score' as const),
      pick,
      score: fc.integer({ min: 0, max: 1000 }).map((n) => n / 1000),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('toggle' as const), pick }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('move' as const),
      pick,
      target: pick,
      toRoot: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
      withInactive: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('swap' as const), pick, other: pick }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('deleteLeaf' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('replaceLeaf' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteSubtree' as const), pick }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('upsert' as const), pick, parent: pick }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('merge' as const), pick, parent: pick }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      parent: pick,
      asRoot: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
      active: fc.integer({ min: 0, max: 3 }).map((n) => n !== 0),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('renumber' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('noop' as const), pick }) },
);

/** Options for {@link editBatchArbitrary}. */
export interface EditBatchOptions {
  /** Include a TRUNCATE (alone or followed by a refill in one transaction) now and then. Default true. */
  truncate?: boolean;
  /** Most edits in a batch. Default 4. */
  maxEdits?: number;
}

/**
 * A batch of edits, each committed in its own transaction except `transaction` (several
 * statements, optionally one of them rolled back to a savepoint) and `rolledBack` (rolled back).
 */
export function editBatchArbitrary(options: EditBatchOptions = {}): fc.Arbitrary<HierarchyEdit[]> {
  const truncate: fc.Arbitrary<HierarchyEdit> = fc.record({
    kind: fc.constant('truncate' as const),
    refill: fc.integer({ min: 0, max: 3 }),
  });
  const edit: fc.Arbitrary<HierarchyEdit> = fc.oneof(
    { weight: 14, arbitrary: singleEdit },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('transaction' as const),
        edits: fc.array(singleEdit, { minLength: 2, maxLength: 4 }),
        savepointRollback: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('rolledBack' as const), edit: singleEdit }),
    },
    ...(options.truncate === false ? [] : [{ weight: 1, arbitrary: truncate }]),
  );
  return fc.array(edit, { minLength: 1, maxLength: options.maxEdits ?? 4 });
}

/** What applying a batch did, for the expectations of the refresh that follows. */
export interface AppliedBatch {
  /** Some statement that writes `entities` committed (the tracking sees a change). */
  committedWrite: boolean;
  /** A TRUNCATE committed: an incremental view must fall back to method `full`. */
  truncated: boolean;
}

/** Label counter shared by every edit of a run, so new labels never collide. */
let labelCounter = 0;

function subtreeOf(rows: EntityRow[], root: string): EntityRow[] {
  return rows.filter((r) => r.path === root || r.path.startsWith(`${root}.`));
}

function nth<T>(items: T[], n: number): T | undefined {
  return items.length === 0 ? undefined : items[n % items.length];
}

const MOVE_SQL = `UPDATE entities
    SET path = CASE WHEN path = $1::ltree THEN $2::ltree
                    ELSE $2::ltree || subpath(path, nlevel($1::ltree)) END
  WHERE path <@ $1::ltree`;

/**
 * Applies one edit inside the caller's transaction (or in autocommit). Returns whether it ran a
 * statement that writes `entities` and whether that was a TRUNCATE. Edits whose candidates do
 * not exist in the current state (a leaf delete on an empty table) do nothing.
 */
async function applyOne(
  client: pg.ClientBase,
  edit: HierarchyEdit,
): Promise<{ wrote: boolean; truncated: boolean }> {
  const rows = await readEntities(client);
  const none = { wrote: false, truncated: false };
  const wrote = { wrote: true, truncated: false };
  switch (edit.kind) {
    case 'rename': {
      const row = nth(rows, edit.pick);
      if (!row) return none;
      await client.query('UPDATE entities SET name = $2 WHERE id = $1', [
        row.id,
        `r${++labelCounter}`,
      ]);
      return wrote;
    }
    case 'score': {
      const row = nth(rows, edit.pick);
      if (!row) return none;
      await client.query('UPDATE entities SET confidence_score = $2 WHERE id = $1', [
        row.id,
        edit.score,
      ]);
      return wrote;
    }
    case 'toggle': {
      const row = nth(rows, edit.pick);
      if (!row) return none;
      await client.query('UPDATE entities SET is_active = NOT is_active WHERE id = $1', [row.id]);
      return wrote;
    }
    case 'move': {
      // Prefer subtrees that hold an inactive node when asked: their inactive rows move too.
      const withInactive = rows.filter((r) => subtreeOf(rows, r.path).some((d) => !d.is_active));
      const source = nth(
        edit.withInactive && withInactive.length > 0 ? withInactive : rows,
        edit.pick,
      );
      if (!source) return none;
      const label = `m${++labelCounter}`;
      let dest = label;
      if (!edit.toRoot) {
        const targets = rows.filter(
          (r) => r.path !== source.path && !r.path.startsWith(`${source.path}.`),
        );
        const target = nth(targets, edit.target);
        if (target) dest = `${target.path}.${label}`;
      }
      await client.query(MOVE_SQL, [source.path, dest]);
      return wrote;
    }
    case 'swap': {
      // Two disjoint subtrees trade places through a temporary root, in three statements: a
      // path left by one entity is taken by another.
      const a = nth(rows, edit.pick);
      if (!a) return none;
      const others = rows.filter(
        (r) =>
          r.path !== a.path && !r.path.startsWith(`${a.path}.`) && !a.path.startsWith(`${r.path}.`),
      );
      const b = nth(others, edit.other);
      if (!b) return none;
      const tmp = `t${++labelCounter}`;
      await client.query(MOVE_SQL, [a.path, tmp]);
      await client.query(MOVE_SQL, [b.path, a.path]);
      await client.query(MOVE_SQL, [tmp, b.path]);
      return wrote;
    }
    case 'deleteLeaf': {
      const leaves = rows.filter((r) => !rows.some((d) => d.path.startsWith(`${r.path}.`)));
      const leaf = nth(leaves, edit.pick);
      if (!leaf) return none;
      await client.query('DELETE FROM entities WHERE id = $1', [leaf.id]);
      return wrote;
    }
    case 'deleteSubtree': {
      // One statement: the foreign key is checked at its end, so a whole subtree may go.
      const root = nth(rows, edit.pick);
      if (!root) return none;
      await client.query('DELETE FROM entities WHERE path <@ $1::ltree', [root.path]);
      return wrote;
    }
    case 'upsert':
    case 'merge': {
      // One statement that updates an existing row (name, activity) and inserts a new one: the
      // insert and update triggers of the same statement both capture.
      const row = nth(rows, edit.pick);
      if (!row) return none;
      const parent = nth(rows, edit.parent);
      const label = `u${++labelCounter}`;
      const newPath = parent ? `${parent.path}.${label}` : label;
      if (edit.kind === 'upsert') {
        await client.query(
          `INSERT INTO entities (id, name, path, is_active)
           VALUES ($1, $2, $3::ltree, NOT $4::boolean),
                  ((SELECT max(id) + 100000 FROM entities), $2, $5::ltree, true)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, is_active = EXCLUDED.is_active`,
          [row.id, label, row.path, row.is_active, newPath],
        );
      } else {
        await client.query(
          `MERGE INTO entities e
           USING (VALUES ($1::bigint, $2::text, $3::ltree, NOT $4::boolean),
                         (NULL::bigint, $2::text, $5::ltree, true)) AS s(id, name, path, is_active)
              ON e.id = s.id
            WHEN MATCHED THEN UPDATE SET name = s.name, is_active = s.is_active
            WHEN NOT MATCHED THEN INSERT (name, path, is_active) VALUES (s.name, s.path, s.is_active)`,
          [row.id, label, row.path, row.is_active, newPath],
        );
      }
      return wrote;
    }
    case 'replaceLeaf': {
      // Another entity (a new id) takes the path of a deleted leaf, in one transaction.
      const leaves = rows.filter((r) => !rows.some((d) => d.path.startsWith(`${r.path}.`)));
      const leaf = nth(leaves, edit.pick);
      if (!leaf) return none;
      await client.query('DELETE FROM entities WHERE id = $1', [leaf.id]);
      await client.query(
        'INSERT INTO entities (name, path, is_active, confidence_score) VALUES ($1, $2, $3, 0.5)',
        [`p${++labelCounter}`, leaf.path, !leaf.is_active],
      );
      return wrote;
    }
    case 'insert': {
      const parent = edit.asRoot ? undefined : nth(rows, edit.parent);
      const label = `i${++labelCounter}`;
      await client.query(
        'INSERT INTO entities (name, path, is_active, confidence_score) VALUES ($1, $2, $3, 0.25)',
        [label, parent ? `${parent.path}.${label}` : label, edit.active],
      );
      return wrote;
    }
    case 'renumber': {
      // An update of the primary key: the old id disappears from every breadcrumb below it.
      const row = nth(rows, edit.pick);
      if (!row) return none;
      await client.query(
        'UPDATE entities SET id = (SELECT max(id) + 100000 FROM entities) WHERE id = $1',
        [row.id],
      );
      return wrote;
    }
    case 'noop': {
      // Tracked (a statement wrote the table) but changes no column a view shows.
      const row = nth(rows, edit.pick);
      await client.query('UPDATE entities SET name = name WHERE id = $1', [row?.id ?? -1]);
      return wrote;
    }
    case 'truncate': {
      await client.query('TRUNCATE entities');
      if (edit.refill > 0) {
        const random = mulberry32(edit.refill * 7919 + labelCounter);
        const refill: GeneratedEntity[] = [];
        for (let i = 0; i < edit.refill * 3; i++) {
          const label = `f${++labelCounter}`;
          const parent = refill.length > 0 && random() < 0.7 ? nth(refill, i) : undefined;
          refill.push({
            name: label,
            path: parent ? `${parent.path}.${label}` : label,
            isActive: random() > 0.25,
            confidenceScore: Math.round(random() * 100) / 100,
          });
        }
        for (const e of refill) {
          await client.query(
            'INSERT INTO entities (name, path, is_active, confidence_score) VALUES ($1, $2, $3, $4)',
            [e.name, e.path, e.isActive, e.confidenceScore],
          );
        }
      }
      return { wrote: true, truncated: true };
    }
    case 'rolledBack':
    case 'transaction':
      throw new Error(`${edit.kind} is not a single edit`);
  }
}

/** Applies a batch, each edit in its own transaction (see {@link editBatchArbitrary}). */
export async function applyBatch(
  client: pg.ClientBase,
  batch: HierarchyEdit[],
): Promise<AppliedBatch> {
  const applied: AppliedBatch = { committedWrite: false, truncated: false };
  const note = (r: { wrote: boolean; truncated: boolean }) => {
    applied.committedWrite ||= r.wrote;
    applied.truncated ||= r.truncated;
  };
  for (const edit of batch) {
    if (edit.kind === 'rolledBack') {
      await client.query('BEGIN');
      await applyOne(client, edit.edit);
      await client.query('ROLLBACK');
    } else if (edit.kind === 'transaction') {
      await client.query('BEGIN');
      const results: { wrote: boolean; truncated: boolean }[] = [];
      for (const [i, inner] of edit.edits.entries()) {
        const rollBack = edit.savepointRollback && i === 1;
        if (rollBack) await client.query('SAVEPOINT undone');
        const r = await applyOne(client, inner);
        if (rollBack) await client.query('ROLLBACK TO SAVEPOINT undone');
        else results.push(r);
      }
      await client.query('COMMIT');
      for (const r of results) note(r);
    } else {
      note(await applyOne(client, edit));
    }
  }
  return applied;
}

/** Both views as the oracle computes them from the rows of `entities`. */
export interface ExpectedViews {
  ancestors: ReturnType<typeof expectedAncestors>;
  counts: ReturnType<typeof expectedDescendantCounts>;
}

/** The oracle for both views, from the current rows of `entities`. */
export async function expectedViews(client: pg.ClientBase): Promise<ExpectedViews> {
  const rows = await readEntities(client);
  return { ancestors: expectedAncestors(rows), counts: expectedDescendantCounts(rows) };
}

/** The live contents of both views (ordered by entity id, in the oracle's shape). */
export function readBothViews(client: pg.ClientBase) {
  return readViews(client);
}

/**
 * Rows that differ between two contents of a view, keyed by `entity_id`: inserted, deleted, or
 * with any column changed. What an exact apply reports as `rows_changed`.
 */
export function countChangedRows<T extends { entity_id: number }>(before: T[], after: T[]): number {
  const old = new Map(before.map((r) => [r.entity_id, JSON.stringify(r)]));
  let changed = 0;
  for (const r of after) {
    const previous = old.get(r.entity_id);
    if (previous !== JSON.stringify(r)) changed++;
    old.delete(r.entity_id);
  }
  return changed + old.size;
}
