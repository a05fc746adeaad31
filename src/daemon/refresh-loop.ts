import { ConnectionError } from '../db/connection-error.ts';
import { errorFields, refreshErrorFields } from '../logging/error-fields.ts';
import type { Logger } from '../logging/logger.ts';
import type { RefreshEngine, RefreshResult } from '../refresh/refresh-engine.ts';
import { HIERARCHY_VIEWS, type ViewName } from '../refresh/views.ts';
import { Backoff, RECHECK_BACKOFF, RETRY_BACKOFF } from './backoff.ts';
import { claimTick } from './tick-claim.ts';

/** Why the daemon wants a refresh. */
export type RefreshRequest =
  /** A cron tick; `slot` is the tick's scheduled time, `allowanceMs` see {@link claimTick}. */
  | { trigger: 'schedule'; slot: Date; allowanceMs: number }
  /** Changes were notified (or may have been missed while disconnected). */
  | { trigger: 'change' };

/** Options for {@link RefreshLoop}. */
export interface RefreshLoopOptions {
  engine: RefreshEngine;
  logger: Logger;
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  /** Whether the database answered lately; runs wait while it is down. */
  isDatabaseUp: () => boolean;
  /** Told when a refresh lost its connection, so readiness flips at once. */
  onConnectionLost: (error: unknown) => void;
  /** Told about every outcome (metrics). */
  onResults: (results: RefreshResult[]) => void;
  /** Told about views skipped by this daemon without calling the function (metrics). */
  onLocalSkip: (views: readonly ViewName[]) => void;
  /** Pending changes over both views (undefined when unknown). */
  pendingChanges: () => Promise<number | undefined>;
  /** Told the consecutive failures of each view after every refresh call (metrics). */
  onFailureCounts?: (counts: ReadonlyMap<ViewName, number>) => void;
}

/**
 * Runs refreshes one at a time and coalesces everything that asks for one meanwhile.
 *
 * At most one request waits behind the running refresh: ticks or notifications that arrive while
 * a refresh runs, while the database is down or while a failed refresh waits out its backoff all
 * merge into that one, so a slow refresh, a blocked event loop or an outage never leaves a queue
 * behind (no pile-up, no stampede on reconnect). A change request absorbs a tick (it refreshes
 * every view with pending changes anyway); several ticks keep the latest slot.
 */
export class RefreshLoop {
  readonly #options: RefreshLoopOptions;
  readonly #retryBackoff = new Backoff(RETRY_BACKOFF);
  readonly #recheckBackoff = new Backoff(RECHECK_BACKOFF);
  #recheckTimer: NodeJS.Timeout | undefined;
  #pending: RefreshRequest | undefined;
  #running: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #failures = new Map<ViewName, number>(HIERARCHY_VIEWS.map((view) => [view, 0]));

  constructor(options: RefreshLoopOptions) {
    this.#options = options;
  }

  /** Asks for a refresh; it starts now if nothing runs, else it is merged into the next one. */
  request(request: RefreshRequest): void {
    if (this.#stopped) return;
    this.#pending = merge(this.#pending, request);
    this.#drain();
  }

  /** Starts the waiting request if the database is back (called on reconnect). */
  resume(): void {
    this.#drain();
  }

  /**
   * Per view, how many refresh attempts in a row failed or were cancelled (a call that threw
   * counts for every view): reset by a refresh or a clean skip, unchanged by a skip because
   * another session was refreshing and by a lost connection (readiness says so otherwise).
   */
  get consecutiveFailures(): ReadonlyMap<ViewName, number> {
    return this.#failures;
  }

  /** The refresh in progress, if any. */
  get running(): Promise<void> | undefined {
    return this.#running;
  }

  /** No new refresh starts after this; the running one is left alone (see `Daemon.stop`). */
  stop(): void {
    this.#stopped = true;
    this.#pending = undefined;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#recheckTimer) clearTimeout(this.#recheckTimer);
    this.#recheckTimer = undefined;
  }

  #drain(): void {
    if (this.#running || this.#stopped || this.#retryTimer || !this.#pending) return;
    if (!this.#options.isDatabaseUp()) return; // resume() picks it up on reconnect
    const request = this.#pending;
    this.#pending = undefined;
    this.#running = this.#run(request).finally(() => {
      this.#running = undefined;
      this.#drain();
    });
  }

  async #run(request: RefreshRequest): Promise<void> {
    const { engine, logger } = this.#options;
    let claim: Awaited<ReturnType<typeof claimTick>> | undefined;
    const started = Date.now();
    try {
      const results = await engine.refresh({
        trigger: request.trigger,
        statementTimeoutMs: this.#options.statementTimeoutMs,
        lockTimeoutMs: this.#options.lockTimeoutMs,
        ...(request.trigger === 'schedule'
          ? {
              beforeCall: async (client) => {
                claim = await claimTick(client, request.slot, request.allowanceMs, HIERARCHY_VIEWS);
                return claim.kind === 'claimed' ? claim.views : [];
              },
            }
          : {}),
      });
      if (claim && claim.kind !== 'claimed') {
        // Routine with several replicas (they tick at the same instant), so debug: a tick
        // another replica served, or one that found a refresh running (which serves its changes).
        logger.debug(
          {
            event: 'refresh.skipped',
            trigger: request.trigger,
            slot: slotOf(request),
            reason: claim.kind,
          },
          claim.kind === 'busy'
            ? 'tick skipped: another refresh is running; not queued behind it'
            : 'tick skipped: already served by another replica',
        );
        this.#options.onLocalSkip(HIERARCHY_VIEWS);
      } else if (claim?.kind === 'claimed' && claim.views.length < HIERARCHY_VIEWS.length) {
        const claimed: readonly ViewName[] = claim.views;
        this.#options.onLocalSkip(HIERARCHY_VIEWS.filter((v) => !claimed.includes(v)));
      }
      this.#options.onResults(results);
      this.#countFailures(results);
      if (request.trigger === 'change') {
        if (results.some((r) => r.reason === 'lock_busy')) {
          this.#recheckLater();
        } else {
          this.#recheckBackoff.reset();
        }
      }
      const failed = results.filter((r) => r.status === 'failed' || r.status === 'cancelled');
      if (failed.length === 0) {
        this.#retryBackoff.reset();
        return;
      }
      // A view stopped by a statement timeout or a cancel by someone else: try again later.
      this.#retry(request, {
        views: failed.map((r) => r.view),
        ...refreshErrorFields(failed[0]!),
      });
    } catch (error) {
      if (error instanceof ConnectionError) {
        // Not a refresh failure: wait for the database (reconnect backoff), then run once.
        logger.warn(
          { event: 'refresh.interrupted', trigger: request.trigger, ...errorFields(error) },
          'refresh lost its connection; it runs again once the database is back',
        );
        this.#pending = merge(this.#pending, request);
        this.#options.onConnectionLost(error);
        return;
      }
      logger.error(
        {
          event: 'refresh.error',
          trigger: request.trigger,
          duration_ms: Date.now() - started,
          ...errorFields(error),
        },
        `refresh failed: ${error instanceof Error ? error.message : String(error)}`,
      );
      this.#countFailures(
        HIERARCHY_VIEWS.map((view) => ({ view, status: 'failed', reason: 'error' }) as const),
      );
      this.#retry(request, {});
    }
  }

  #countFailures(results: readonly Pick<RefreshResult, 'view' | 'status' | 'reason'>[]): void {
    if (results.length === 0) return;
    for (const r of results) {
      if (r.status === 'failed' || r.status === 'cancelled') {
        this.#failures.set(r.view, (this.#failures.get(r.view) ?? 0) + 1);
      } else if (r.status === 'refreshed' || r.reason === 'no_changes') {
        this.#failures.set(r.view, 0);
      }
    }
    this.#options.onFailureCounts?.(this.#failures);
  }

  /**
   * A change refresh found another session refreshing (a replica, `hierarchy-db refresh`, psql).
   * That refresh's snapshot may predate the changes notified to us, and no further notification
   * will come for them: look again once it is likely done, and refresh if changes still wait.
   */
  #recheckLater(): void {
    if (this.#stopped || this.#recheckTimer) return;
    const delayMs = this.#recheckBackoff.next();
    this.#options.logger.debug(
      { event: 'refresh.recheck', delay_ms: delayMs },
      `another refresh was running; checking for pending changes in ${delayMs}ms`,
    );
    this.#recheckTimer = setTimeout(async () => {
      const pending = await this.#options.pendingChanges();
      this.#recheckTimer = undefined;
      if (pending === 0) {
        this.#recheckBackoff.reset();
        return;
      }
      this.request({ trigger: 'change' });
    }, delayMs);
  }

  #retry(request: RefreshRequest, fields: Record<string, unknown>): void {
    if (this.#stopped) return;
    const delayMs = this.#retryBackoff.next();
    this.#options.logger.warn(
      {
        event: 'refresh.retry',
        trigger: request.trigger,
        attempt: this.#retryBackoff.attempt,
        delay_ms: delayMs,
        ...fields,
      },
      `refresh retry ${this.#retryBackoff.attempt} in ${delayMs}ms`,
    );
    this.#pending = merge(this.#pending, request);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#drain();
    }, delayMs);
  }
}

function slotOf(request: RefreshRequest): string | undefined {
  return request.trigger === 'schedule' ? request.slot.toISOString() : undefined;
}

/** Two requests as one: a change absorbs a tick; of two ticks the later slot wins. */
function merge(a: RefreshRequest | undefined, b: RefreshRequest): RefreshRequest {
  if (a === undefined) return b;
  if (a.trigger === 'change') return a;
  if (b.trigger === 'change') return b;
  return a.slot >= b.slot ? a : b;
}
