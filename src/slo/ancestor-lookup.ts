import type pg from 'pg';

/**
 * The lookup the SLO is about: one `mv_entity_ancestors` row by `entity_id`, every column a
 * caller building a breadcrumb needs. Sent as a named statement, so it is parsed and planned
 * once per connection, as an application's prepared statement would be.
 */
export const ANCESTOR_LOOKUP_STATEMENT = {
  name: 'hierarchy_db_ancestor_lookup',
  text: `SELECT entity_id, name, path::text AS path, path_depth, confidence_score, ancestor_ids, ancestors
           FROM mv_entity_ancestors WHERE entity_id = $1`,
} as const;

/** Default warm-up lookups before measuring: 1000. */
export const DEFAULT_WARMUP_LOOKUPS = 1_000;

/** The view has no row to look up: nothing to measure. */
export class NoEntitiesError extends Error {
  override readonly name = 'NoEntitiesError';
  constructor() {
    super(
      'mv_entity_ancestors has no rows to look up: seed a hierarchy (`hierarchy-db seed --entities N`) and refresh (`hierarchy-db refresh`)',
    );
  }
}

/**
 * Draws up to `count` distinct entity ids at random from `mv_entity_ancestors` (a top-N sort
 * over the view: one pass, bounded memory). Throws {@link NoEntitiesError} when it is empty.
 */
export async function drawEntityIds(client: pg.ClientBase, count: number): Promise<number[]> {
  const { rows } = await client.query<{ id: string | number }>(
    'SELECT entity_id AS id FROM mv_entity_ancestors ORDER BY random() LIMIT $1',
    [Math.max(1, Math.min(count, 100_000))],
  );
  if (rows.length === 0) throw new NoEntitiesError();
  return rows.map((r) => Number(r.id));
}

/** Options for {@link measureAncestorLookups}. */
export interface AncestorLookupOptions {
  /** Measured lookups; with `signal`, the most to take. Default: until `signal` aborts. */
  samples?: number;
  /** Unmeasured lookups first (connection, plan cache, buffers). Default {@link DEFAULT_WARMUP_LOOKUPS}. */
  warmup?: number;
  /** Stops measuring when aborted (e.g. when a concurrent refresh ends). */
  signal?: AbortSignal;
}

/**
 * Looks up random ids from `ids` one at a time on `client` and returns each round trip's
 * latency in milliseconds, as the application sees it (network, execution, row parsing).
 */
export async function measureAncestorLookups(
  client: pg.ClientBase,
  ids: readonly number[],
  options: AncestorLookupOptions = {},
): Promise<number[]> {
  if (ids.length === 0) throw new NoEntitiesError();
  if (options.samples === undefined && options.signal === undefined) {
    throw new RangeError('measureAncestorLookups needs samples, a signal, or both');
  }
  const pick = () => ids[Math.floor(Math.random() * ids.length)];
  const lookup = (id: number | undefined) =>
    client.query({ ...ANCESTOR_LOOKUP_STATEMENT, values: [id] });

  for (let i = 0; i < (options.warmup ?? DEFAULT_WARMUP_LOOKUPS); i++) await lookup(pick());

  const limit = options.samples ?? Number.POSITIVE_INFINITY;
  const latencies: number[] = [];
  while (latencies.length < limit && !options.signal?.aborted) {
    const id = pick();
    const started = process.hrtime.bigint();
    await lookup(id);
    latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return latencies;
}
