import type pg from 'pg';
import { REFRESH_LOCK_KEY } from '../refresh/refresh-lock.ts';
import type { ViewName } from '../refresh/views.ts';

/** What claiming a schedule tick decided. */
export type TickClaim =
  /** Refresh these views (the function still skips the ones without pending changes). */
  | { kind: 'claimed'; views: ViewName[] }
  /** Another session holds the refresh lock: that refresh serves this tick. */
  | { kind: 'busy' }
  /** Every view's data is already as of this tick: another replica served it. */
  | { kind: 'served' };

/**
 * Claims schedule tick `slot` for this replica, inside the refresh transaction on `client`.
 *
 * The single-flight lock of `refresh_hierarchy_views()` alone keeps refreshes from overlapping,
 * but replicas whose timers fire a few milliseconds apart could still each refresh once per tick
 * (the second one arriving just after the first committed, with a change in between). So the
 * database decides per tick: take the same transaction-level advisory lock first (advisory locks
 * are re-entrant, so the function's own `pg_try_advisory_xact_lock` then succeeds in this session),
 * and under it keep only the views whose data is older than the tick. Check and refresh commit
 * together, so exactly one replica refreshes a view per tick.
 *
 * `allowanceMs` (half the schedule's period, at most 5 s) absorbs clock skew between the replicas'
 * hosts and the database: data taken that little before the tick counts as this tick's.
 */
export async function claimTick(
  client: pg.PoolClient,
  slot: Date,
  allowanceMs: number,
  views: readonly ViewName[],
): Promise<TickClaim> {
  const lock = await client.query<{ locked: boolean }>(
    'SELECT pg_try_advisory_xact_lock($1) AS locked',
    [REFRESH_LOCK_KEY.toString()],
  );
  if (!lock.rows[0]?.locked) return { kind: 'busy' };
  const { rows } = await client.query<{ view_name: ViewName }>(
    `SELECT view_name FROM hierarchy_view_status()
      WHERE view_name = ANY ($1::text[])
        AND (data_as_of IS NULL OR data_as_of < $2::timestamptz - make_interval(secs => $3 / 1000.0))`,
    [views, slot.toISOString(), allowanceMs],
  );
  if (rows.length === 0) return { kind: 'served' };
  return { kind: 'claimed', views: rows.map((r) => r.view_name) };
}
