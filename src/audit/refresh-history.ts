import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import type { ViewName } from '../refresh/views.ts';

/** One audit row as `history --json` prints it (timestamps in ISO 8601). */
export interface HistoryRow {
  id: number;
  view: string;
  trigger: string;
  status: string;
  /** A code: why it was skipped, failed or cancelled, or why a relation was rebuilt. */
  reason: string | null;
  /** concurrent | plain | incremental | full | rebuild; null when nothing was done. */
  method: string | null;
  started_at: string;
  finished_at: string;
  duration_ms: number;
  rows: number | null;
  rows_changed: number | null;
  staleness_ms: number | null;
  pending_changes: number | null;
  data_as_of: string | null;
  error_code: string | null;
  error_message: string | null;
  application_name: string | null;
  backend_pid: number | null;
}

/** Options for {@link readHistory}. */
export interface HistoryOptions {
  views?: readonly ViewName[];
  /** Default 20. */
  limit?: number;
}

/** Audit rows, newest first. */
export async function readHistory(
  db: Kysely<Database>,
  options: HistoryOptions = {},
): Promise<HistoryRow[]> {
  let query = db
    .selectFrom('mv_refresh_audit')
    .selectAll()
    .orderBy('started_at', 'desc')
    .orderBy('id', 'desc')
    .limit(options.limit ?? 20);
  if (options.views && options.views.length > 0)
    query = query.where('view_name', 'in', [...options.views]);
  const rows = await query.execute();
  return rows.map((r) => ({
    id: Number(r.id),
    view: r.view_name,
    trigger: r.trigger,
    status: r.status,
    reason: r.reason,
    method: r.method,
    started_at: new Date(r.started_at).toISOString(),
    finished_at: new Date(r.finished_at).toISOString(),
    duration_ms: Number(r.duration_ms),
    rows: r.rows === null ? null : Number(r.rows),
    rows_changed: r.rows_changed === null ? null : Number(r.rows_changed),
    staleness_ms: r.staleness_ms === null ? null : Number(r.staleness_ms),
    pending_changes: r.pending_changes === null ? null : Number(r.pending_changes),
    data_as_of: r.data_as_of ? new Date(r.data_as_of).toISOString() : null,
    error_code: r.error_code,
    error_message: r.error_message,
    application_name: r.application_name,
    backend_pid: r.backend_pid,
  }));
}
