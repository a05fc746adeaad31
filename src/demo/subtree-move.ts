import { type Kysely, sql } from 'kysely';
import type pg from 'pg';
import type { Database } from '../db/schema.ts';

/** One entity as the demo names it. */
export interface EntityRef {
  id: number;
  name: string;
  path: string;
}

/** A subtree move: `node` and everything below it go under `newParent`. */
export interface SubtreeMove {
  node: EntityRef;
  /** The node's parent before the move. */
  oldParent: EntityRef;
  newParent: EntityRef;
  /** Active entities strictly below `node` (from `mv_descendant_counts`). */
  descendants: number;
}

/** What {@link moveSubtree} did. */
export interface SubtreeMoveResult {
  /** Rows the UPDATE changed: the node and all its descendants, active or not. */
  rows: number;
  /** The node's path after the move. */
  newPath: string;
  durationMs: number;
  /** The statement, with its parameters inlined, for people to read. */
  statement: string;
}

/** The hierarchy has no node to move (too shallow, or a single root). */
export class NoSubtreeToMoveError extends Error {
  override readonly name = 'NoSubtreeToMoveError';
}

/** Default bound of the move's lock waits: 5 seconds. */
export const MOVE_LOCK_TIMEOUT_MS = 5_000;

/**
 * Picks a subtree to move, deterministically from the (fresh) views: the node halfway down the
 * hierarchy with the most active descendants (ties: lowest id), and as its new parent the
 * lowest-id active entity at the same depth under another root, so the move crosses roots and
 * takes the node one level deeper.
 */
export async function pickSubtreeMove(db: Kysely<Database>): Promise<SubtreeMove> {
  const { rows } = await sql<{
    node_id: number;
    node_name: string;
    node_path: string;
    descendants: number;
    old_parent_id: number;
    old_parent_name: string;
    old_parent_path: string;
    new_parent_id: number;
    new_parent_name: string;
    new_parent_path: string;
  }>`
    WITH depth AS (
      SELECT greatest(1, max(path_depth) / 2) AS d FROM mv_descendant_counts
    ), node AS (
      SELECT c.entity_id, c.name, c.path, c.descendant_count
        FROM mv_descendant_counts c, depth
       WHERE c.path_depth = depth.d AND c.path_depth > 1
       ORDER BY c.descendant_count DESC, c.entity_id
       LIMIT 1
    )
    SELECT node.entity_id AS node_id, node.name AS node_name, node.path::text AS node_path,
           node.descendant_count AS descendants,
           op.id AS old_parent_id, op.name AS old_parent_name, op.path::text AS old_parent_path,
           np.entity_id AS new_parent_id, np.name AS new_parent_name, np.path::text AS new_parent_path
      FROM node
      JOIN entities op ON op.path = subpath(node.path, 0, nlevel(node.path) - 1)
      CROSS JOIN LATERAL (
        SELECT c.entity_id, c.name, c.path
          FROM mv_descendant_counts c
         WHERE c.path_depth = nlevel(node.path)
           AND NOT c.path <@ subpath(node.path, 0, 1)
         ORDER BY c.entity_id
         LIMIT 1
      ) np`.execute(db);
  const row = rows[0];
  if (!row) {
    throw new NoSubtreeToMoveError(
      'no subtree to move: the hierarchy needs at least two roots and two levels',
    );
  }
  return {
    node: { id: Number(row.node_id), name: row.node_name, path: row.node_path },
    oldParent: {
      id: Number(row.old_parent_id),
      name: row.old_parent_name,
      path: row.old_parent_path,
    },
    newParent: {
      id: Number(row.new_parent_id),
      name: row.new_parent_name,
      path: row.new_parent_path,
    },
    descendants: Number(row.descendants),
  };
}

/**
 * Moves the subtree in one UPDATE of every path below the node: the foreign key on
 * `parent_path` is checked at the end of the statement, so parents and children move together.
 */
export async function moveSubtree(
  pool: pg.Pool,
  move: Pick<SubtreeMove, 'node' | 'newParent'>,
): Promise<SubtreeMoveResult> {
  const client = await pool.connect();
  // A connection lost between statements is reported by the next query, not as a crash.
  const ignore = () => {};
  client.on('error', ignore);
  try {
    await client.query('BEGIN');
    await client.query(`SELECT set_config('lock_timeout', $1, true)`, [
      `${MOVE_LOCK_TIMEOUT_MS}ms`,
    ]);
    const started = performance.now();
    // subpath(path, nlevel(old) - 1) keeps the node's own label and everything below it.
    const result = await client.query<{ path: string }>(
      `UPDATE entities
          SET path = $1::ltree || subpath(path, nlevel($2::ltree) - 1), updated_at = now()
        WHERE path <@ $2::ltree
       RETURNING CASE WHEN id = $3 THEN path::text END AS path`,
      [move.newParent.path, move.node.path, move.node.id],
    );
    await client.query('COMMIT');
    const durationMs = performance.now() - started;
    const newPath = result.rows.find((r) => r.path !== null)?.path;
    if (newPath === undefined) throw new Error(`entity ${move.node.id} was not moved`);
    return {
      rows: result.rowCount ?? result.rows.length,
      newPath,
      durationMs,
      statement:
        `UPDATE entities SET path = '${move.newParent.path}' || subpath(path, ` +
        `nlevel('${move.node.path}') - 1) WHERE path <@ '${move.node.path}'`,
    };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.off('error', ignore);
    client.release();
  }
}

/** An entity's breadcrumb as `mv_entity_ancestors` has it (possibly stale). */
export interface Breadcrumb {
  entityId: number;
  /** Ancestor names, root first, then the entity's own name. */
  names: string[];
  path: string;
}

/** Reads the breadcrumb of one entity from `mv_entity_ancestors`: one lookup by `entity_id`. */
export async function readBreadcrumb(
  db: Kysely<Database>,
  entityId: number,
): Promise<Breadcrumb | undefined> {
  const row = await db
    .selectFrom('mv_entity_ancestors')
    .select(['entity_id', 'name', sql<string>`path::text`.as('path'), 'ancestors'])
    .where('entity_id', '=', entityId)
    .executeTakeFirst();
  if (!row) return undefined;
  return { entityId, names: [...row.ancestors, row.name], path: row.path };
}

/** Reads `descendant_count` of some entities from `mv_descendant_counts`, by id. */
export async function readDescendantCounts(
  db: Kysely<Database>,
  entityIds: readonly number[],
): Promise<Map<number, number>> {
  if (entityIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('mv_descendant_counts')
    .select(['entity_id', 'descendant_count'])
    .where('entity_id', 'in', [...entityIds])
    .execute();
  return new Map(rows.map((r) => [Number(r.entity_id), Number(r.descendant_count)]));
}
