import type pg from 'pg';
import { ConfigError } from '../config/config-error.ts';
import { MAX_DURATION_MS } from '../config/duration.ts';
import { isConnectionFailure, toConnectionError } from '../db/connection-error.ts';
import { SQLSTATE, sqlState } from '../db/sqlstate.ts';
import { refreshErrorFields } from '../logging/error-fields.ts';
import type { Logger } from '../logging/logger.ts';
import type {
  RefreshMethod,
  RefreshReason,
  RefreshStatus,
  RefreshTrigger,
  ViewName,
} from './views.ts';

/** One row of `refresh_hierarchy_views()` (sql/functions/refresh_hierarchy_views.sql). */
export interface RefreshResult {
  view: ViewName;
  status: RefreshStatus;
  /** Why it was skipped, failed or cancelled, as a code; null when refreshed. */
  reason: RefreshReason | null;
  /** How it was refreshed; null when nothing was done. */
  method: RefreshMethod | null;
  duration_ms: number;
  rows: number | null;
  /** Rows inserted, updated or deleted (incremental strategy); null when unknown. */
  rows_changed: number | null;
  /** Staleness the refresh cured; null when the call was interrupted before measuring it. */
  staleness_ms: number | null;
  error_code: string | null;
  error_message: string | null;
}

/** Options of one refresh call. */
export interface RefreshOptions {
  trigger: Exclude<RefreshTrigger, 'sql'>;
  /** Refresh views that have no pending change too. Default false. */
  force?: boolean;
  /** Recompute from the definition whatever the strategy (reconciliation). Default false. */
  full?: boolean;
  /** Only these views. Default: both. */
  views?: readonly ViewName[];
  /** `statement_timeout` of the call; 0 = none. Default {@link DEFAULT_STATEMENT_TIMEOUT_MS}. */
  statementTimeoutMs?: number;
  /** `lock_timeout` of each lock wait; 0 = none. Default {@link DEFAULT_LOCK_TIMEOUT_MS}. */
  lockTimeoutMs?: number;
  /**
   * Runs inside the refresh transaction (timeouts set), just before `refresh_hierarchy_views()`,
   * on the same session: it may take locks that the call then holds too, and narrow the views.
   * Returns the views to refresh (`undefined`: as requested; empty: skip the call and return no
   * results). The daemon claims a schedule tick with it. Default: none.
   */
  beforeCall?: (client: pg.PoolClient) => Promise<readonly ViewName[] | undefined>;
}

/** Default bound of one refresh call: 10 minutes. */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 600_000;
/** Default bound of one lock wait during a refresh: 30 seconds. */
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

/**
 * `client_connection_check_interval` of a refresh transaction: 1 second. A refresh whose client
 * died (a daemon killed with SIGKILL, a lost pod) would otherwise run on, or wait for a lock, for
 * up to the statement timeout, holding the single-flight lock so that every other refresh skips
 * (`lock_busy`); with the check the server ends it within about this long once the connection is
 * closed (PostgreSQL 14+).
 */
export const CLIENT_CONNECTION_CHECK_INTERVAL_MS = 1_000;

/** The refresh function is missing: the schema is not migrated (or was damaged). */
export class RefreshUnavailableError extends Error {
  override readonly name = 'RefreshUnavailableError';
}

/** Options for {@link RefreshEngine}. */
export interface RefreshEngineOptions {
  pool: pg.Pool;
  logger: Logger;
  /** `host:port` for connection error messages. */
  target?: string;
}

/**
 * Calls `refresh_hierarchy_views()` — the one refresh path shared by the CLI, the daemon and
 * psql users — with timeouts, and logs one line per view. The SQL function does the work:
 * single-flight, skip-clean, per-view failure isolation and the audit.
 */
export class RefreshEngine {
  readonly #pool: pg.Pool;
  readonly #logger: Logger;
  readonly #target: string;
  #runningPid: number | undefined;

  constructor(options: RefreshEngineOptions) {
    this.#pool = options.pool;
    this.#logger = options.logger;
    this.#target = options.target ?? 'database';
  }

  /** Backend pid of the refresh in progress, if any (for `pg_cancel_backend`). */
  get runningPid(): number | undefined {
    return this.#runningPid;
  }

  /** Runs one refresh call; resolves with one result per view. */
  async refresh(options: RefreshOptions): Promise<RefreshResult[]> {
    const statementTimeoutMs = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
    const lockTimeoutMs = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    // PostgreSQL refuses larger values in set_config(): the call would fail before the function.
    for (const [option, ms] of [
      ['statement-timeout', statementTimeoutMs],
      ['lock-timeout', lockTimeoutMs],
    ] as const) {
      if (!(ms <= MAX_DURATION_MS)) {
        throw new ConfigError(`expected at most ${MAX_DURATION_MS}ms, got ${ms}ms`, {
          option,
          value: ms,
        });
      }
    }
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      if (isConnectionFailure(error)) throw toConnectionError(error, this.#target);
      throw error;
    }
    let broken = false;
    try {
      const pid = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      this.#runningPid = pid.rows[0]?.pid;
      // Compile the plpgsql function in this session first (an empty view list is a no-op), so
      // even a tiny statement_timeout is spent inside the function, where it is caught and audited.
      await client.query(`SELECT * FROM refresh_hierarchy_views(false, '{}', $1)`, [
        options.trigger,
      ]);
      await client.query('BEGIN');
      // SET LOCAL: the settings end with this transaction and never leak into the pool.
      await client.query(
        `SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true),
                set_config('client_connection_check_interval', $3, true)`,
        [
          `${Math.max(0, Math.round(statementTimeoutMs))}ms`,
          `${Math.max(0, Math.round(lockTimeoutMs))}ms`,
          `${CLIENT_CONNECTION_CHECK_INTERVAL_MS}ms`,
        ],
      );
      const views = options.beforeCall ? await options.beforeCall(client) : undefined;
      if (views !== undefined && views.length === 0) {
        await client.query('COMMIT');
        return [];
      }
      const { rows } = await client.query<Omit<RefreshResult, 'view'> & { view_name: ViewName }>(
        'SELECT * FROM refresh_hierarchy_views($1, $2, $3, $4)',
        [
          options.force ?? false,
          views ?? options.views ?? null,
          options.trigger,
          options.full ?? false,
        ],
      );
      await client.query('COMMIT');
      const results = rows.map((r) => ({
        view: r.view_name,
        status: r.status,
        reason: r.reason,
        method: r.method,
        duration_ms: Number(r.duration_ms),
        rows: r.rows === null ? null : Number(r.rows),
        rows_changed: r.rows_changed === null ? null : Number(r.rows_changed),
        staleness_ms: r.staleness_ms === null ? null : Number(r.staleness_ms),
        error_code: r.error_code,
        error_message: r.error_message,
      }));
      for (const result of results) this.#log(options.trigger, result);
      return results;
    } catch (error) {
      broken = isConnectionFailure(error);
      if (!broken) await client.query('ROLLBACK').catch(() => {});
      if (broken) throw toConnectionError(error, this.#target);
      if (sqlState(error) === SQLSTATE.UNDEFINED_FUNCTION) {
        throw new RefreshUnavailableError(
          'refresh_hierarchy_views() is missing: run `hierarchy-db migrate up` (or `hierarchy-db repair`)',
          { cause: error },
        );
      }
      throw error;
    } finally {
      this.#runningPid = undefined;
      client.release(broken);
    }
  }

  #log(trigger: string, result: RefreshResult): void {
    // The result's error goes in `err`, the shape of every error in the logs.
    const { error_code: _code, error_message: _message, ...rest } = result;
    const fields = { event: 'refresh.result', trigger, ...rest };
    if (result.status === 'failed')
      this.#logger.error(
        { ...fields, ...refreshErrorFields(result) },
        `refresh of ${result.view} failed: ${result.error_message}`,
      );
    else if (result.status === 'cancelled')
      this.#logger.warn(
        { ...fields, ...refreshErrorFields(result) },
        `refresh of ${result.view} cancelled`,
      );
    // Nothing to do is the common case of every schedule tick: at info it would bury the rest.
    else if (result.status === 'skipped' && result.reason === 'no_changes')
      this.#logger.debug(fields, `${result.view} skipped: no changes`);
    else this.#logger.info(fields, `${result.view} ${result.status}`);
  }
}
