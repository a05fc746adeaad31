import type pg from 'pg';
import { isConnectionFailure } from '../db/connection-error.ts';
import { errorFields } from '../logging/error-fields.ts';
import type { Logger } from '../logging/logger.ts';
import type { ViewName } from '../refresh/views.ts';
import { Backoff, RECONNECT_BACKOFF } from './backoff.ts';

/** One view as `hierarchy_view_status()` reports it. */
export interface ViewStatusSample {
  view: ViewName;
  populated: boolean;
  staleness_ms: number;
  pending_changes: number;
  last_refreshed_at: Date | null;
}

/** Options for {@link DatabaseMonitor}. */
export interface DatabaseMonitorOptions {
  pool: pg.Pool;
  logger: Logger;
  /** Between probes while the database answers. Default 2000 ms. */
  intervalMs?: number;
  /** A probe that takes longer counts as "down". Default 3000 ms. */
  timeoutMs?: number;
  /** The database answers (first probe, or again after being down). */
  onUp: () => void;
  /** The database stopped answering (or never did). */
  onDown: () => void;
  onStatus: (views: ViewStatusSample[]) => void;
  /** The database answers but `hierarchy_view_status()` does not (not migrated, no privilege). */
  onStatusUnavailable?: () => void;
}

/** The probe did not answer within its bound (a hung network rather than a refused connection). */
class ProbeTimeoutError extends Error {
  override readonly name = 'ProbeTimeoutError';
}

const STATUS_SQL = `SELECT view_name, populated, staleness_ms, pending_changes, last_refreshed_at
                      FROM hierarchy_view_status()`;

/**
 * Knows whether the database answers (`/readyz`, `hierarchy_db_up`) and samples
 * `hierarchy_view_status()` for the staleness and pending-changes gauges.
 *
 * While up it probes every `intervalMs`; once down it probes with capped exponential backoff and
 * jitter ({@link RECONNECT_BACKOFF}), so a fleet of replicas does not hammer a database that is
 * restarting. Refreshes and the listener report lost connections at once through {@link markDown}
 * and {@link probeSoon}, so readiness does not wait for the next probe.
 */
export class DatabaseMonitor {
  readonly #options: DatabaseMonitorOptions;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #backoff = new Backoff(RECONNECT_BACKOFF);
  #up: boolean | undefined;
  #downSince = 0;
  #timer: NodeJS.Timeout | undefined;
  #probing: Promise<void> | undefined;
  #lastSampleAt = 0;
  #lastStatusWarning: string | undefined;
  #stopped = false;

  constructor(options: DatabaseMonitorOptions) {
    this.#options = options;
    this.#intervalMs = options.intervalMs ?? 2_000;
    this.#timeoutMs = options.timeoutMs ?? 3_000;
  }

  /** True once a probe succeeded and no failure was seen since. */
  get up(): boolean {
    return this.#up === true;
  }

  /** Probes now and then keeps probing. */
  start(): Promise<void> {
    return this.#probe();
  }

  /** Something else lost its connection: report down now and reconnect with backoff. */
  markDown(error: unknown): void {
    if (this.#stopped) return;
    this.#setDown(error);
    this.#schedule(this.#nextReconnectDelay());
  }

  /**
   * Probes as soon as possible (e.g. the change probe failed), unless the database is already
   * known to be down: then the reconnect backoff decides when the next attempt is.
   */
  probeSoon(): void {
    if (this.#stopped || this.#up === false) return;
    void this.#probe();
  }

  /**
   * Samples the status again if the last sample is older than `maxAgeMs` (scrape time). While
   * the database is down (or was never reached) it does nothing: a scrape reports the last known
   * state and never adds a connection attempt to the backoff's.
   */
  async refresh(maxAgeMs: number): Promise<void> {
    if (this.#stopped || this.#up !== true || Date.now() - this.#lastSampleAt <= maxAgeMs) return;
    await this.#probe();
  }

  /** Pending changes over both views, or undefined when they cannot be read. */
  async pendingChanges(): Promise<number | undefined> {
    try {
      const rows = await this.#query<{ pending_changes: number }>(STATUS_SQL);
      return rows.reduce((sum, r) => sum + Number(r.pending_changes), 0);
    } catch {
      return undefined;
    }
  }

  /** Sends `pg_cancel_backend(pid)` from a connection of its own; true when it was signalled. */
  async cancelBackend(pid: number): Promise<boolean> {
    const rows = await this.#query<{ cancelled: boolean }>(
      'SELECT pg_cancel_backend($1) AS cancelled',
      [pid],
    );
    return rows[0]?.cancelled === true;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #probe(): Promise<void> {
    this.#probing ??= this.#runProbe().finally(() => {
      this.#probing = undefined;
    });
    return this.#probing;
  }

  async #runProbe(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      const rows = await this.#query<{
        view_name: ViewName;
        populated: boolean;
        staleness_ms: number;
        pending_changes: number;
        last_refreshed_at: Date | null;
      }>(STATUS_SQL);
      this.#lastSampleAt = Date.now();
      this.#setUp();
      this.#options.onStatus(
        rows.map((r) => ({
          view: r.view_name,
          populated: r.populated,
          staleness_ms: Number(r.staleness_ms),
          pending_changes: Number(r.pending_changes),
          last_refreshed_at: r.last_refreshed_at,
        })),
      );
    } catch (error) {
      if (error instanceof ProbeTimeoutError || isConnectionFailure(error)) {
        this.#setDown(error);
      } else {
        // The server answers but the status does not (schema not migrated, no privilege):
        // reachable, so ready; say what is wrong once rather than every probe.
        await this.#pingAfterStatusError(error);
      }
    }
    if (!this.#stopped) {
      this.#schedule(this.#up ? this.#intervalMs : this.#nextReconnectDelay());
    }
  }

  async #pingAfterStatusError(statusError: unknown): Promise<void> {
    try {
      await this.#query('SELECT 1');
    } catch (error) {
      this.#setDown(error);
      return;
    }
    this.#setUp();
    this.#options.onStatusUnavailable?.();
    const fields = errorFields(statusError);
    if (fields.err.message !== this.#lastStatusWarning) {
      this.#lastStatusWarning = fields.err.message;
      this.#options.logger.warn(
        { event: 'status.unavailable', ...fields },
        'hierarchy_view_status() failed: run `hierarchy-db migrate up` (and grant hierarchy_reader)',
      );
    }
  }

  #nextReconnectDelay(): number {
    const delayMs = this.#backoff.next();
    this.#options.logger.info(
      { event: 'db.reconnect', attempt: this.#backoff.attempt, delay_ms: delayMs },
      `database unreachable; next attempt in ${delayMs}ms`,
    );
    return delayMs;
  }

  #schedule(delayMs: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#probe();
    }, delayMs);
  }

  #setUp(): void {
    if (this.#up === true) return;
    const wasDown = this.#up === false;
    this.#up = true;
    this.#backoff.reset();
    if (wasDown) {
      this.#options.logger.info(
        { event: 'db.up', down_ms: Date.now() - this.#downSince },
        'database reachable again',
      );
    } else {
      this.#options.logger.info({ event: 'db.connected' }, 'database reachable');
    }
    this.#options.onUp();
  }

  #setDown(error: unknown): void {
    if (this.#up === false) return;
    this.#up = false;
    this.#downSince = Date.now();
    this.#options.logger.warn(
      { event: 'db.down', ...errorFields(error) },
      'database unreachable; not ready',
    );
    this.#options.onDown();
  }

  /** One query on a pooled connection, abandoned (and the connection destroyed) after the bound. */
  async #query<T extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<T[]> {
    const client = await this.#options.pool.connect();
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          reject(new ProbeTimeoutError(`no answer within ${this.#timeoutMs}ms`));
        }, this.#timeoutMs);
      });
      const query = client.query<T>(text, values);
      query.catch(() => {}); // abandoned on timeout: its late rejection is expected
      const result = await Promise.race([query, timeout]);
      return result.rows;
    } catch (error) {
      timedOut ||= isConnectionFailure(error);
      throw error;
    } finally {
      clearTimeout(timer);
      // A connection that timed out or broke is destroyed, never handed out again.
      client.release(timedOut);
    }
  }
}
