import { randomInt } from 'node:crypto';
import type pg from 'pg';
import { ConfigError } from '../config/config-error.ts';
import { ENTITY_LIMITS } from '../db/entity-limits.ts';
import { canBulkLoad, type SuspendedObject, suspendSecondaryIndexes } from './bulk-load.ts';

/** Options for {@link seedHierarchy}. */
export interface SeedOptions {
  /** How many entities to create (>= 1). */
  entities: number;
  /** Mean number of children of a non-leaf entity. Default {@link DEFAULT_FANOUT}. */
  fanout?: number;
  /** Number of roots (depth-1 entities). Default {@link DEFAULT_ROOTS}. */
  roots?: number;
  /** Share of entities created inactive, in [0, 1]. Default {@link DEFAULT_INACTIVE_RATIO}. */
  inactiveRatio?: number;
  /** The same seed gives the same rows, on any PostgreSQL version. Default: a random one. */
  randomSeed?: number;
  /** Delete the existing entities first. Default false: refuse when the table is not empty. */
  replace?: boolean;
  /**
   * Drop the secondary indexes and constraints during the load and rebuild them after.
   * Default: when seeding at least {@link BULK_LOAD_MIN_ENTITIES} entities and the session owns
   * `entities` (otherwise rows are inserted with every index and check in place).
   */
  bulkLoad?: boolean;
  /** Rows per INSERT statement (one progress step each). Default {@link DEFAULT_CHUNK_SIZE}. */
  chunkSize?: number;
  /** `lock_timeout` for taking the table lock. Default {@link DEFAULT_SEED_LOCK_TIMEOUT_MS}. */
  lockTimeoutMs?: number;
  /** Called after each step. */
  onProgress?: (progress: SeedProgress) => void;
}

/** Options after defaults. */
export interface ResolvedSeedOptions {
  entities: number;
  fanout: number;
  roots: number;
  inactiveRatio: number;
  randomSeed: number;
  replace: boolean;
  chunkSize: number;
  lockTimeoutMs: number;
}

/** Where a seed run is. */
export interface SeedProgress {
  phase: 'insert' | 'rebuild' | 'analyze';
  /** Entities inserted so far. */
  inserted: number;
  total: number;
  /** Depth being inserted (phase `insert`), or what is being rebuilt (phase `rebuild`). */
  detail: string;
}

/** What a seed run created. */
export interface SeedResult {
  entities: number;
  roots: number;
  /** Depth of the deepest entity. */
  depth: number;
  /** Entities per depth, root level first. */
  levels: number[];
  inactive: number;
  randomSeed: number;
  /** Rows deleted by `replace`. */
  replaced: number;
  bulkLoad: boolean;
  durationMs: number;
}

/** A seed into a non-empty `entities` without `replace`: hierarchies would be mixed. */
export class SeedTargetNotEmptyError extends Error {
  override readonly name = 'SeedTargetNotEmptyError';
  constructor(readonly rows: number) {
    super(
      `entities already holds ${rows} row(s); refusing to mix hierarchies: pass --replace to delete them first`,
    );
  }
}

/** Default mean fanout: 8 children per non-leaf entity. */
export const DEFAULT_FANOUT = 8;
/** Default number of roots: 5. */
export const DEFAULT_ROOTS = 5;
/** Default share of inactive entities: 10%. */
export const DEFAULT_INACTIVE_RATIO = 0.1;
/** Default rows per INSERT: 50 000. */
export const DEFAULT_CHUNK_SIZE = 50_000;
/** Default wait for the table lock: 10 s. */
export const DEFAULT_SEED_LOCK_TIMEOUT_MS = 10_000;
/** Below this size index maintenance is cheaper than rebuilding: 100 000 entities. */
export const BULK_LOAD_MIN_ENTITIES = 100_000;
/** Deepest hierarchy `seed` makes: the database's limit (docs/semantics.md, "Limits"). */
export const MAX_SEED_DEPTH = ENTITY_LIMITS.maxDepth;

/** Validates options and fills in defaults. Throws {@link ConfigError} naming the flag. */
export function resolveSeedOptions(options: SeedOptions): ResolvedSeedOptions {
  const entities = wholeNumber(options.entities, 'entities', 1);
  const fanout = wholeNumber(options.fanout ?? DEFAULT_FANOUT, 'fanout', 1);
  const roots = wholeNumber(options.roots ?? DEFAULT_ROOTS, 'roots', 1);
  if (roots > entities) {
    throw new ConfigError(`--roots: ${roots} roots do not fit in ${entities} entities`);
  }
  const inactiveRatio = options.inactiveRatio ?? DEFAULT_INACTIVE_RATIO;
  if (!(inactiveRatio >= 0 && inactiveRatio <= 1)) {
    throw new ConfigError(`--inactive-ratio: expected a number in [0, 1], got ${inactiveRatio}`);
  }
  const randomSeed = wholeNumber(options.randomSeed ?? randomInt(2 ** 31), 'random-seed', 0);
  const levels = planLevels(entities, roots, fanout);
  if (levels.length > MAX_SEED_DEPTH) {
    throw new ConfigError(
      `--fanout ${fanout} with --roots ${roots} makes ${entities} entities ${levels.length} levels deep; ` +
        `the limit is ${MAX_SEED_DEPTH}: raise --fanout or --roots`,
    );
  }
  const pathBytes = longestPathBytes(levels);
  if (pathBytes > ENTITY_LIMITS.maxPathBytes) {
    throw new ConfigError(
      `--fanout ${fanout} with --roots ${roots} makes paths of up to ${pathBytes} bytes for ${entities} entities; ` +
        `the limit is ${ENTITY_LIMITS.maxPathBytes}: raise --fanout or --roots`,
    );
  }
  return {
    entities,
    fanout,
    roots,
    inactiveRatio,
    randomSeed,
    replace: options.replace ?? false,
    chunkSize: wholeNumber(options.chunkSize ?? DEFAULT_CHUNK_SIZE, 'chunk-size', 1),
    lockTimeoutMs: wholeNumber(
      options.lockTimeoutMs ?? DEFAULT_SEED_LOCK_TIMEOUT_MS,
      'lock-timeout',
      0,
    ),
  };
}

/**
 * Entities per depth: `roots` at depth 1, then `fanout` times the level above until `entities`
 * are placed (the last level takes the remainder).
 */
export function planLevels(entities: number, roots: number, fanout: number): number[] {
  const levels: number[] = [];
  let placed = 0;
  let size = roots;
  while (placed < entities) {
    const level = Math.min(size, entities - placed);
    levels.push(level);
    placed += level;
    size = level * fanout;
    // fanout 1 with one root would loop for a long time before failing the depth check.
    if (levels.length > MAX_SEED_DEPTH) break;
  }
  return levels;
}

/**
 * Bytes of the longest path the seed makes for `levels`: entity `i` (0-based, root level first)
 * gets the label `n<i>`, so the deepest path has, per level, the longest label of that level.
 */
export function longestPathBytes(levels: readonly number[]): number {
  let start = 0;
  let bytes = -1; // no dot before the first label
  for (const size of levels) {
    bytes += 1 + 1 + String(start + size - 1).length; // '.', 'n', the digits
    start += size;
  }
  return Math.max(bytes, 0);
}

// Every random choice is a pure function of (seed, entity index): hashint8extended() is the
// hash behind hash partitioning, which must not change across versions (pg_upgrade keeps hash
// partitions), so PostgreSQL 15 and 18 produce the same rows. random() would depend on the plan
// and on how many rows each statement drew. The low 53 bits give a uniform double in [0, 1).
const UNIT = (stream: number) =>
  `((hashint8extended(g.i, hashint8extended($1::bigint, ${stream})) & 9007199254740991)::float8 / 9007199254740992)`;

/** Columns shared by both statements; `g.i` is the 0-based entity index, id = index + 1. */
const ROW_COLUMNS = `
  g.i + 1,
  'entity ' || (g.i + 1),
  floor(${UNIT(1)} * 1001) / 1000,
  ${UNIT(2)} >= $4::float8`;

/** Roots: indexes $2..$3. Label `n<index>` is unique, so every path is too. */
const INSERT_ROOTS_SQL = `
  INSERT INTO entities (id, name, confidence_score, is_active, path)
  SELECT ${ROW_COLUMNS}, text2ltree('n' || g.i)
    FROM generate_series($2::bigint, $3::bigint) AS g(i)`;

/**
 * Children: indexes $2..$3, each under a parent drawn uniformly from the level above
 * (indexes $5 .. $5 + $6 - 1), which is complete: parents always exist before their children.
 */
const INSERT_CHILDREN_SQL = `
  INSERT INTO entities (id, name, confidence_score, is_active, path)
  SELECT ${ROW_COLUMNS}, p.path || text2ltree('n' || g.i)
    FROM generate_series($2::bigint, $3::bigint) AS g(i)
    JOIN entities p
      ON p.id = $5::bigint + (hashint8extended(g.i, hashint8extended($1::bigint, 3)) & 9007199254740991) % $6::bigint + 1`;

/**
 * Fills `entities` with a synthetic forest, set-based on the server: one `INSERT ... SELECT`
 * over `generate_series` per chunk of a level, parents' level before children's. Deterministic
 * for a given `randomSeed`: ids, names, paths, scores and flags are functions of the seed and
 * the entity's index (timestamps are the load time).
 *
 * Runs in one transaction holding an ACCESS EXCLUSIVE lock on `entities`: a failure or an
 * interrupt leaves the table as it was. The caller passes a connected client, not in a
 * transaction. Throws {@link SeedTargetNotEmptyError} when the table has rows and `replace` is
 * off, {@link ConfigError} for bad options.
 */
export async function seedHierarchy(
  client: pg.ClientBase,
  options: SeedOptions,
): Promise<SeedResult> {
  const resolved = resolveSeedOptions(options);
  const started = performance.now();
  const levels = planLevels(resolved.entities, resolved.roots, resolved.fanout);
  const report = options.onProgress ?? (() => {});
  let bulkLoad = false;
  let replaced = 0;

  await client.query('BEGIN');
  try {
    await client.query(`SELECT set_config('lock_timeout', $1, true)`, [
      `${resolved.lockTimeoutMs}ms`,
    ]);
    // Incremental views: capture one marker instead of every row; the next refresh recomputes
    // them from their definitions (sql/functions/hierarchy_capture_rows.sql).
    await client.query(`SELECT set_config('hierarchy_db.bulk_load', 'on', true)`);
    // Taken up front: the emptiness check must hold until commit, and a bulk load's
    // ALTER TABLE would need this lock anyway (no upgrade, no deadlock with another seed).
    await client.query('LOCK TABLE entities IN ACCESS EXCLUSIVE MODE');
    await client.query(`SELECT set_config('lock_timeout', '0', true)`);
    const existing = Number(
      (await client.query<{ n: string }>('SELECT count(*) AS n FROM entities')).rows[0]?.n ?? 0,
    );
    if (existing > 0) {
      if (!resolved.replace) throw new SeedTargetNotEmptyError(existing);
      await client.query('TRUNCATE entities RESTART IDENTITY');
      replaced = existing;
    }

    bulkLoad =
      options.bulkLoad ??
      (resolved.entities >= BULK_LOAD_MIN_ENTITIES && (await canBulkLoad(client)));
    let suspended: SuspendedObject[] = [];
    if (bulkLoad) {
      // Index builds and the foreign key validation sort the whole table: give them memory
      // (never less than the server already allows).
      await client.query(
        `SELECT set_config(name, setting, true)
           FROM (VALUES ('maintenance_work_mem', '256MB'), ('work_mem', '64MB')) AS s(name, setting)
          WHERE pg_size_bytes(current_setting(name)) < pg_size_bytes(setting)`,
      );
      suspended = await suspendSecondaryIndexes(client);
    }

    let inserted = 0;
    let levelStart = 0;
    let parentStart = 0;
    for (const [depthIndex, levelSize] of levels.entries()) {
      const detail = `depth ${depthIndex + 1} of ${levels.length}`;
      for (let from = levelStart; from < levelStart + levelSize; from += resolved.chunkSize) {
        const to = Math.min(from + resolved.chunkSize, levelStart + levelSize) - 1;
        const common = [resolved.randomSeed, from, to, resolved.inactiveRatio];
        if (depthIndex === 0) {
          await client.query(INSERT_ROOTS_SQL, common);
        } else {
          const parentSize = levels[depthIndex - 1] ?? 0;
          await client.query(INSERT_CHILDREN_SQL, [...common, parentStart, parentSize]);
        }
        inserted += to - from + 1;
        report({ phase: 'insert', inserted, total: resolved.entities, detail });
      }
      parentStart = levelStart;
      levelStart += levelSize;
    }

    for (const object of suspended) {
      report({
        phase: 'rebuild',
        inserted,
        total: resolved.entities,
        detail: `${object.kind} ${object.name}`,
      });
      await client.query(object.createSql);
    }
    // Explicit ids leave the identity sequence behind; the next insert must not collide.
    await client.query(`SELECT setval(pg_get_serial_sequence('entities', 'id'), $1::bigint)`, [
      resolved.entities,
    ]);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }

  // Fresh statistics: the next refresh plans against a table that grew from nothing.
  report({
    phase: 'analyze',
    inserted: resolved.entities,
    total: resolved.entities,
    detail: 'analyze',
  });
  await client.query('ANALYZE entities');
  const inactive = Number(
    (
      await client.query<{ n: string }>(
        'SELECT count(*) FILTER (WHERE NOT is_active) AS n FROM entities',
      )
    ).rows[0]?.n ?? 0,
  );
  return {
    entities: resolved.entities,
    roots: resolved.roots,
    depth: levels.length,
    levels,
    inactive,
    randomSeed: resolved.randomSeed,
    replaced,
    bulkLoad,
    durationMs: performance.now() - started,
  };
}

function wholeNumber(value: number, flag: string, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(`--${flag}: expected a whole number >= ${min}, got ${value}`);
  }
  return value;
}
