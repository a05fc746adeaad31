import { type Kysely, sql } from 'kysely';
import type { Database } from '../db/schema.ts';
import type {
  RefreshMethod,
  RefreshReason,
  RefreshStatus,
  RefreshTrigger,
  ViewName,
  ViewStrategy,
} from '../refresh/views.ts';

/** The last non-skipped refresh attempt of a view. */
export interface LastRefresh {
  status: RefreshStatus;
  trigger: RefreshTrigger;
  /** Why it failed or was cancelled, or why the relation was rebuilt; null when refreshed. */
  reason: RefreshReason | null;
  method: RefreshMethod | null;
  rows_changed: number | null;
  started_at: string;
  finished_at: string;
  duration_ms: number;
}

/** One view in `status` (`status --json` prints these fields; README, "hierarchy-db status"). */
export interface ViewStatus {
  view: ViewName;
  /** How the view is maintained, as recorded in the database. */
  strategy: ViewStrategy;
  /**
   * `materialized view` or `table`; null when the relation does not exist (dropped): then only
   * `hierarchy-db repair` recreates it, a refresh cannot.
   */
  relation_kind: string | null;
  populated: boolean;
  /** Data age: now minus the earliest change not reflected in the view; 0 when fresh. */
  staleness_ms: number;
  pending_changes: number;
  /** The latest attempt that did something (refreshed, failed or cancelled); skips are ignored. */
  last_refresh: LastRefresh | null;
}

/** Reads staleness and pending changes from `hierarchy_view_status()` and the latest audit row. */
export async function readViewStatus(db: Kysely<Database>): Promise<ViewStatus[]> {
  const status = await sql<{
    view_name: ViewName;
    strategy: ViewStrategy | null;
    relation_kind: string | null;
    populated: boolean;
    staleness_ms: number;
    pending_changes: number;
  }>`SELECT view_name, strategy, relation_kind, populated, staleness_ms, pending_changes FROM hierarchy_view_status()`.execute(
    db,
  );

  const latest = await db
    .selectFrom('mv_refresh_audit')
    .select([
      'view_name',
      'status',
      'trigger',
      'reason',
      'method',
      'rows_changed',
      'started_at',
      'finished_at',
      'duration_ms',
    ])
    .distinctOn('view_name')
    .where('status', '<>', 'skipped')
    .orderBy('view_name')
    .orderBy('started_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
  const byView = new Map(latest.map((row) => [row.view_name, row]));

  return status.rows.map((row) => {
    const last = byView.get(row.view_name);
    return {
      view: row.view_name,
      strategy: row.strategy ?? 'materialized',
      relation_kind: row.relation_kind,
      populated: row.populated,
      staleness_ms: Number(row.staleness_ms),
      pending_changes: Number(row.pending_changes),
      last_refresh: last
        ? {
            status: last.status,
            trigger: last.trigger,
            reason: last.reason as RefreshReason | null,
            method: last.method as RefreshMethod | null,
            rows_changed: last.rows_changed === null ? null : Number(last.rows_changed),
            started_at: new Date(last.started_at).toISOString(),
            finished_at: new Date(last.finished_at).toISOString(),
            duration_ms: Number(last.duration_ms),
          }
        : null,
    };
  });
}
