import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RefreshResult } from '../refresh/refresh-engine.ts';
import { HIERARCHY_VIEWS, type RefreshStatus, type ViewName } from '../refresh/views.ts';
import type { ViewStatusSample } from './database-monitor.ts';

const STATUSES: readonly RefreshStatus[] = ['refreshed', 'skipped', 'failed', 'cancelled'];
/** `method` label values of the duration histogram: how the view was refreshed, or `none`. */
const METHODS = ['concurrent', 'plain', 'incremental', 'full', 'none'] as const;

/**
 * The Prometheus metrics of docs/semantics.md ("Metrics"), in a registry of their own (nothing
 * else is exported, so the names on `/metrics` are exactly the documented ones, which alert rules
 * and dashboards rely on). The counters and the histogram exist from the first scrape, at zero, so
 * `rate()` and `increase()` work before the first refresh. The gauges read from the database have
 * no sample until their value is known, and lose it while it is not (database down, status
 * unreadable): a 0 would say "fresh" for a replica that cannot tell, and hide a real staleness
 * from `min()` across replicas (deploy/prometheus/hierarchy-db.rules.yml).
 *
 * Staleness, pending changes and the last success come from the database
 * (`hierarchy_view_status()`), not from this process: with several replicas only one refreshes a
 * given tick, and every replica must still report the same, true data age.
 */
export class DaemonMetrics {
  readonly registry = new Registry();
  readonly #duration = new Histogram({
    name: 'hierarchy_refresh_duration_seconds',
    help: 'Duration of refresh attempts that did work (refreshed, failed or cancelled), per view and method (none: failed before a method was chosen).',
    labelNames: ['view', 'method'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });
  readonly #total = new Counter({
    name: 'hierarchy_refresh_total',
    help: 'Refresh attempts made by this daemon, per view and outcome.',
    labelNames: ['view', 'status'] as const,
    registers: [this.registry],
  });
  readonly #staleness = new Gauge({
    name: 'hierarchy_view_staleness_seconds',
    help: 'Data age: now minus the earliest change not yet reflected in the view; 0 when fresh.',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly #pending = new Gauge({
    name: 'hierarchy_view_pending_changes',
    help: 'Committed writing transactions not yet reflected in the view.',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly #lastSuccess = new Gauge({
    name: 'hierarchy_last_refresh_success_timestamp_seconds',
    help: 'Unix time of the last successful refresh of the view, by any replica or caller.',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly #consecutiveFailures = new Gauge({
    name: 'hierarchy_refresh_consecutive_failures',
    help: 'Refresh attempts of the view by this daemon that failed or were cancelled in a row; 0 after a refresh or a clean skip.',
    labelNames: ['view'] as const,
    registers: [this.registry],
  });
  readonly #dbUp = new Gauge({
    name: 'hierarchy_db_up',
    help: '1 when the database answered the last probe, else 0.',
    registers: [this.registry],
  });

  constructor() {
    for (const view of HIERARCHY_VIEWS) {
      for (const method of METHODS) this.#duration.zero({ view, method });
      for (const status of STATUSES) this.#total.inc({ view, status }, 0);
      this.#consecutiveFailures.set({ view }, 0);
    }
    this.#dbUp.set(0);
  }

  /** Content-Type of {@link render}. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Counts the results of one refresh call. */
  recordResults(results: readonly RefreshResult[], now = Date.now()): void {
    for (const result of results) {
      this.#total.inc({ view: result.view, status: result.status });
      if (result.status !== 'skipped') {
        this.#duration.observe(
          { view: result.view, method: result.method ?? 'none' },
          result.duration_ms / 1000,
        );
      }
      if (result.status === 'refreshed') this.#lastSuccess.set({ view: result.view }, now / 1000);
    }
  }

  /** Sets the consecutive-failures gauge of each view. */
  recordFailureCounts(counts: ReadonlyMap<ViewName, number>): void {
    for (const [view, count] of counts) this.#consecutiveFailures.set({ view }, count);
  }

  /** Counts views this daemon skipped without calling the function (tick served elsewhere). */
  recordLocalSkip(views: readonly ViewName[]): void {
    for (const view of views) this.#total.inc({ view, status: 'skipped' });
  }

  /** Sets the gauges from `hierarchy_view_status()`. */
  recordStatus(views: readonly ViewStatusSample[]): void {
    for (const v of views) {
      this.#staleness.set({ view: v.view }, v.staleness_ms / 1000);
      this.#pending.set({ view: v.view }, v.pending_changes);
      if (v.last_refreshed_at) {
        this.#lastSuccess.set({ view: v.view }, v.last_refreshed_at.getTime() / 1000);
      }
    }
  }

  /**
   * The status can no longer be read (database down, `hierarchy_view_status()` failing): drop
   * the staleness and pending-changes samples, which would freeze at their last value. The last
   * success stays: it was true when read, and a replica that lags behind never raises `max()`.
   */
  forgetStatus(): void {
    this.#staleness.reset();
    this.#pending.reset();
  }

  setDatabaseUp(up: boolean): void {
    this.#dbUp.set(up ? 1 : 0);
  }
}
