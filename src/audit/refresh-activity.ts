import { type Kysely, sql } from 'kysely';
import type { Database } from '../db/schema.ts';
import { SQLSTATE, sqlState } from '../db/sqlstate.ts';
import { HIERARCHY_VIEWS, type ViewName } from '../refresh/views.ts';

/**
 * The session holding the refresh single-flight lock, as `hierarchy_refresh_activity()`
 * (sql/functions/hierarchy_refresh_activity.sql) reports it: a refresh or a rebuild in progress.
 */
export interface RefreshInProgress {
  /** Backend pid of the refreshing session (for `pg_cancel_backend`). */
  pid: number;
  /** Who refreshes: `hierarchy-db/daemon`, `hierarchy-db/cli`, psql, ...; null if unknown. */
  application_name: string | null;
  /** When its transaction began; null when the views' owner may not see that session. */
  started_at: string | null;
  /** When its current statement began; null when not visible. */
  query_start: string | null;
  /** `active`, `idle in transaction`, ...; null when not visible. */
  state: string | null;
  /** What it waits for (`Lock/relation`, ...), or null when it runs or is not visible. */
  wait_event: string | null;
  /** The views it has reached so far, in refresh order. */
  views: ViewName[];
  /** The last of them: being refreshed (or just finished); null before the first view. */
  view: ViewName | null;
}

/**
 * Reads the refresh in progress, or null when none runs. Also null on a schema that predates
 * `hierarchy_refresh_activity()` (migrate reports that).
 */
export async function readRefreshInProgress(
  db: Kysely<Database>,
): Promise<RefreshInProgress | null> {
  let rows: {
    pid: number;
    application_name: string | null;
    started_at: Date | null;
    query_start: Date | null;
    state: string | null;
    wait_event_type: string | null;
    wait_event: string | null;
    views: string[];
  }[];
  try {
    rows = (
      await sql<(typeof rows)[number]>`SELECT pid, application_name, started_at, query_start, state,
                  wait_event_type, wait_event, views
             FROM hierarchy_refresh_activity()`.execute(db)
    ).rows;
  } catch (error) {
    if (sqlState(error) === SQLSTATE.UNDEFINED_FUNCTION) return null;
    throw error;
  }
  const row = rows[0];
  if (!row) return null;
  const views = row.views.filter((v): v is ViewName => HIERARCHY_VIEWS.includes(v as ViewName));
  return {
    pid: row.pid,
    application_name: row.application_name,
    started_at: row.started_at ? new Date(row.started_at).toISOString() : null,
    query_start: row.query_start ? new Date(row.query_start).toISOString() : null,
    state: row.state,
    wait_event: row.wait_event_type
      ? `${row.wait_event_type}${row.wait_event ? `/${row.wait_event}` : ''}`
      : null,
    views,
    view: views.at(-1) ?? null,
  };
}
