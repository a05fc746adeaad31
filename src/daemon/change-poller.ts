import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { errorFields } from '../logging/error-fields.ts';
import type { Logger } from '../logging/logger.ts';
import { Backoff, RECONNECT_BACKOFF } from './backoff.ts';

/** Default `--poll-interval`: 250 ms. */
export const DEFAULT_POLL_INTERVAL_MS = 250;

/** What one probe of the change log saw. */
export interface ChangeProbe {
  /** The newest logged writing transaction (an xid), or null when the log is empty. */
  lastChange: string | null;
  /** Some view has a change it does not reflect yet. */
  pending: boolean;
}

/** Options for {@link ChangePoller}. */
export interface ChangePollerOptions {
  pool: pg.Pool;
  logger: Logger;
  /** Time between probes. Default {@link DEFAULT_POLL_INTERVAL_MS}. */
  intervalMs?: number;
  /** A transaction that wrote `entities` committed since the previous probe. */
  onChange: () => void;
  /**
   * Changes are pending although no new write was seen: `catchUp` is true on the first probe
   * after start or after failed probes (changes may have waited for a while), false otherwise
   * (a transaction with an older xid committed late, or a refresh did not reflect everything).
   */
  onPending: (catchUp: boolean) => void;
  /** The probe failed (the database is probably down); it is retried with backoff. */
  onFailure?: (error: unknown) => void;
}

/**
 * Notices writes by polling `hierarchy_changes_probe()` (sql/functions/hierarchy_changes_probe.sql),
 * which costs well under a millisecond at any log size. Writers send no NOTIFY: PostgreSQL
 * commits every notifying transaction one at a time on a database-wide lock, which would
 * serialize all writers. A failing probe backs off (capped, with jitter) instead of hammering a
 * database that is down.
 */
export class ChangePoller {
  readonly #options: ChangePollerOptions;
  readonly #intervalMs: number;
  readonly #backoff = new Backoff(RECONNECT_BACKOFF);
  #lastChange: string | null | undefined;
  #healthy = false;
  #stopped = true;
  #wake: AbortController | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: ChangePollerOptions) {
    this.#options = options;
    this.#intervalMs = options.intervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  }

  /** True while the latest probe succeeded. */
  get healthy(): boolean {
    return this.#healthy;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#loop = this.#run();
  }

  /** Probes now instead of waiting out the interval or the backoff (the database is back). */
  probeNow(): void {
    this.#wake?.abort();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      let delayMs = this.#intervalMs;
      try {
        const probe = await this.#probe();
        this.#see(probe, !this.#healthy);
        this.#healthy = true;
        this.#backoff.reset();
      } catch (error) {
        if (this.#stopped) break;
        delayMs = this.#backoff.next();
        if (this.#healthy || this.#backoff.attempt === 1) {
          this.#options.logger.warn(
            { event: 'change.probe_failed', delay_ms: delayMs, ...errorFields(error) },
            `change probe failed; retrying in ${delayMs}ms`,
          );
        }
        this.#healthy = false;
        this.#options.onFailure?.(error);
      }
      this.#wake = new AbortController();
      await sleep(delayMs, undefined, { signal: this.#wake.signal, ref: false }).catch(() => {});
    }
  }

  async #probe(): Promise<ChangeProbe> {
    const { rows } = await this.#options.pool.query<{
      last_change: string | null;
      pending: boolean;
    }>('SELECT last_change, pending FROM hierarchy_changes_probe()');
    return { lastChange: rows[0]?.last_change ?? null, pending: rows[0]?.pending ?? false };
  }

  #see(probe: ChangeProbe, catchUp: boolean): void {
    const changed = !catchUp && probe.lastChange !== this.#lastChange;
    this.#lastChange = probe.lastChange;
    if (changed && probe.pending) this.#options.onChange();
    else if (probe.pending) this.#options.onPending(catchUp);
  }
}
