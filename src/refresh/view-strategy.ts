import type pg from 'pg';
import { acquireSchemaLock } from '../migrate/advisory-lock.ts';
import {
  HIERARCHY_VIEWS,
  type RefreshMethod,
  type RefreshStatus,
  type ViewName,
  type ViewStrategy,
} from './views.ts';

/** One view as `hierarchy-db views` lists it. */
export interface ViewInfo {
  view: ViewName;
  strategy: ViewStrategy;
  /** `materialized view`, `table`, or null when the relation is missing. */
  relation_kind: string | null;
  /** Rows after the last refresh (an incremental table keeps the count up to date). */
  rows: number | null;
  populated: boolean;
  staleness_ms: number;
  pending_changes: number;
  /** Refresh checks that found nothing to do (counted, not audited). */
  clean_skips: number;
  last_refresh: {
    status: RefreshStatus;
    method: RefreshMethod | null;
    started_at: string;
    duration_ms: number;
    rows_changed: number | null;
  } | null;
}

/** Lists both views with their strategy, relation kind, rows and last refresh. Read-only. */
export async function listViews(client: pg.ClientBase): Promise<ViewInfo[]> {
  const { rows } = await client.query<{
    view_name: ViewName;
    strategy: ViewStrategy | null;
    relation_kind: string | null;
    row_count: string | null;
    populated: boolean;
    staleness_ms: string;
    pending_changes: string;
    clean_skips: string | null;
    status: RefreshStatus | null;
    method: RefreshMethod | null;
    started_at: Date | null;
    duration_ms: number | null;
    rows_changed: string | null;
  }>(
    `SELECT v.view_name, v.strategy, v.relation_kind, v.row_count, v.populated, v.staleness_ms,
            v.pending_changes, v.clean_skips,
            a.status, a.method, a.started_at, a.duration_ms, a.rows_changed
       FROM hierarchy_view_status() v
       LEFT JOIN LATERAL (
         SELECT status, method, started_at, duration_ms, rows_changed FROM mv_refresh_audit a
          WHERE a.view_name = v.view_name
          ORDER BY a.started_at DESC, a.id DESC LIMIT 1) a ON true`,
  );
  return rows.map((r) => ({
    view: r.view_name,
    strategy: r.strategy ?? 'materialized',
    relation_kind: r.relation_kind,
    rows: r.row_count === null ? null : Number(r.row_count),
    populated: r.populated,
    staleness_ms: Number(r.staleness_ms),
    pending_changes: Number(r.pending_changes),
    clean_skips: Number(r.clean_skips ?? 0),
    last_refresh:
      r.status === null || r.started_at === null
        ? null
        : {
            status: r.status,
            method: r.method,
            started_at: new Date(r.started_at).toISOString(),
            duration_ms: Number(r.duration_ms),
            rows_changed: r.rows_changed === null ? null : Number(r.rows_changed),
          },
  }));
}

/** Options of {@link setViewStrategy}. */
export interface SetViewStrategyOptions {
  strategy: ViewStrategy;
  /** Only these views. Default: both. */
  views?: readonly ViewName[];
  /** How long to wait for the schema lock (another migration or switch). Default 300 000 ms. */
  lockWaitMs?: number;
  /**
   * `lock_timeout` of each lock wait inside the switch: enabling change capture waits for
   * writers in flight, the rebuild waits for a running refresh. Default 30 000 ms.
   */
  lockTimeoutMs?: number;
  /** Told when another migration or switch holds the schema lock. */
  onLockWait?: (holderPid: number | undefined) => void;
}

/**
 * Switches views to a strategy online through `CALL hierarchy_set_view_strategy(...)`
 * (sql/functions/hierarchy_set_view_strategy.sql): each view is built beside the old relation
 * and swapped in, in short transactions of its own, so readers never wait for a build.
 * Takes the schema lock, so it never runs beside a migration or another switch. Idempotent.
 * `client` must be a dedicated connection outside any transaction (the procedure commits).
 * @returns the views afterwards
 */
export async function setViewStrategy(
  client: pg.ClientBase,
  options: SetViewStrategyOptions,
): Promise<ViewInfo[]> {
  const release = await acquireSchemaLock(client, {
    ...(options.lockWaitMs === undefined ? {} : { waitMs: options.lockWaitMs }),
    ...(options.onLockWait ? { onWait: options.onLockWait } : {}),
  });
  try {
    await client.query(`SELECT set_config('lock_timeout', $1, false)`, [
      `${Math.max(0, Math.round(options.lockTimeoutMs ?? 30_000))}ms`,
    ]);
    await client.query(`CALL hierarchy_set_view_strategy($1, $2, 'manual')`, [
      options.strategy,
      options.views && options.views.length > 0 ? [...options.views] : [...HIERARCHY_VIEWS],
    ]);
  } finally {
    await client.query(`SELECT set_config('lock_timeout', DEFAULT, false)`).catch(() => {});
    await release().catch(() => {});
  }
  return listViews(client);
}
