import { setTimeout as sleep } from 'node:timers/promises';
import { type DatabaseHandle, openDatabase } from '../db/database.ts';
import type { ConnectionOptions } from '../db/pool.ts';
import { errorFields } from '../logging/error-fields.ts';
import type { Logger } from '../logging/logger.ts';
import { RefreshEngine } from '../refresh/refresh-engine.ts';
import { ChangeDebouncer } from './change-debouncer.ts';
import { ChangePoller } from './change-poller.ts';
import { CronSchedule } from './cron-schedule.ts';
import { DaemonMetrics } from './daemon-metrics.ts';
import type { ResolvedDaemonOptions } from './daemon-options.ts';
import { DatabaseMonitor } from './database-monitor.ts';
import { type HttpServer, type Readiness, startHttpServer } from './http-server.ts';
import { RefreshLoop } from './refresh-loop.ts';

/** `application_name` of the daemon's refresh sessions, as the audit records it. */
export const DAEMON_APPLICATION_NAME = 'hierarchy-db/daemon';

/** A schedule tick's data may be this much older than the tick and still count as its own. */
const MAX_TICK_ALLOWANCE_MS = 5_000;
/** After `--grace`, how long cancelling may take before the daemon closes anyway. */
const CANCEL_BOUND_MS = 10_000;
/** Between `pg_cancel_backend` attempts (a cancel that lands between statements is a no-op). */
const CANCEL_REPEAT_MS = 500;
/** A scrape re-samples `hierarchy_view_status()` when the last sample is older than this... */
const SCRAPE_MAX_AGE_MS = 250;
/** ...and waits at most this long for it before answering with the last values. */
const SCRAPE_SAMPLE_TIMEOUT_MS = 1_000;
/**
 * After this many failed or cancelled refreshes of a view in a row, `/readyz` answers 503: a
 * daemon whose refreshes keep failing must not look healthy (a single failure, retried with
 * backoff, does not count against it).
 */
export const READINESS_MAX_CONSECUTIVE_FAILURES = 3;
/** Bound on closing each pool and the HTTP server during shutdown. */
const CLOSE_BOUND_MS = 3_000;

/** What the daemon needs besides its options. */
export interface DaemonDependencies {
  connection: ConnectionOptions;
  logger: Logger;
}

/**
 * `hierarchy-db daemon` (docs/semantics.md, "The daemon"): refreshes on a cron schedule and/or on change
 * notifications, through `refresh_hierarchy_views()` like every other caller, and serves health,
 * readiness and metrics.
 *
 * Coordination between replicas lives in the database, not here: the function's single-flight
 * advisory lock keeps refreshes from overlapping, and a schedule tick is claimed under that same
 * lock (see `claimTick`), so each due tick refreshes each view once whichever replica wins.
 */
export class Daemon {
  readonly #options: ResolvedDaemonOptions;
  readonly #logger: Logger;
  readonly #connection: ConnectionOptions;
  readonly #metrics = new DaemonMetrics();
  #refreshDb: DatabaseHandle | undefined;
  #monitorDb: DatabaseHandle | undefined;
  #pollDb: DatabaseHandle | undefined;
  #engine: RefreshEngine | undefined;
  #monitor: DatabaseMonitor | undefined;
  #loop: RefreshLoop | undefined;
  #poller: ChangePoller | undefined;
  #debouncer: ChangeDebouncer | undefined;
  #schedule: CronSchedule | undefined;
  #http: HttpServer | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #resolveDone!: () => void;
  /** Resolves once {@link stop} has finished. */
  readonly done = new Promise<void>((resolve) => {
    this.#resolveDone = resolve;
  });

  constructor(options: ResolvedDaemonOptions, dependencies: DaemonDependencies) {
    this.#options = options;
    this.#logger = dependencies.logger;
    this.#connection = { ...dependencies.connection, applicationName: DAEMON_APPLICATION_NAME };
  }

  /** The bound HTTP port (useful with `--http-port 0`). */
  get httpPort(): number | undefined {
    return this.#http?.port;
  }

  /** Starts HTTP first (a bad address fails fast), then probing, listening and scheduling. */
  start(): Promise<void> {
    this.#starting ??= this.#start().catch(async (error) => {
      await this.#close();
      throw error;
    });
    return this.#starting;
  }

  /**
   * Graceful shutdown: stop scheduling and listening, let a running refresh finish within
   * `--grace`, then cancel it with `pg_cancel_backend` (the function audits it `cancelled` and the
   * transaction-level lock goes with the transaction), close everything. Idempotent.
   */
  stop(signal = 'stop'): Promise<void> {
    this.#stopping ??= this.#shutdown(signal);
    return this.#stopping;
  }

  async #start(): Promise<void> {
    const options = this.#options;
    const logger = this.#logger;
    this.#http = await startHttpServer({
      host: options.httpHost,
      port: options.httpPort,
      logger,
      readiness: () => this.#readiness(),
      metrics: async () => {
        await Promise.race([
          this.#monitor?.refresh(SCRAPE_MAX_AGE_MS),
          sleep(SCRAPE_SAMPLE_TIMEOUT_MS, undefined, { ref: false }),
        ]);
        return { body: await this.#metrics.render(), contentType: this.#metrics.contentType };
      },
    });

    // Refreshes and the monitor get pools of their own, so a long refresh never delays a probe
    // or a cancel, and a probe never waits for a refresh's connection.
    this.#refreshDb = openDatabase({ ...this.#connection, max: 2 });
    this.#monitorDb = openDatabase({
      ...this.#connection,
      applicationName: `${DAEMON_APPLICATION_NAME}-monitor`,
      max: 2,
    });
    const engine = new RefreshEngine({
      pool: this.#refreshDb.pool,
      logger,
      target: this.#connection.target.display,
    });
    this.#engine = engine;
    const monitor = new DatabaseMonitor({
      pool: this.#monitorDb.pool,
      logger,
      onUp: () => {
        this.#metrics.setDatabaseUp(true);
        this.#poller?.probeNow();
        this.#loop?.resume();
      },
      onDown: () => {
        this.#metrics.setDatabaseUp(false);
        this.#metrics.forgetStatus();
      },
      onStatus: (views) => this.#metrics.recordStatus(views),
      onStatusUnavailable: () => this.#metrics.forgetStatus(),
    });
    this.#monitor = monitor;
    this.#loop = new RefreshLoop({
      engine,
      logger,
      statementTimeoutMs: options.statementTimeoutMs,
      lockTimeoutMs: options.lockTimeoutMs,
      isDatabaseUp: () => monitor.up,
      onConnectionLost: (error) => monitor.markDown(error),
      onResults: (results) => this.#metrics.recordResults(results),
      onLocalSkip: (views) => this.#metrics.recordLocalSkip(views),
      pendingChanges: () => monitor.pendingChanges(),
      onFailureCounts: (counts) => this.#metrics.recordFailureCounts(counts),
    });

    await monitor.start();

    if (options.onChange) {
      const loop = this.#loop;
      this.#debouncer = new ChangeDebouncer({
        debounceMs: options.debounceMs,
        maxWaitMs: options.maxWaitMs,
        onFire: (changes, waitedMs) => {
          logger.info(
            { event: 'change.debounced', changes, waited_ms: waitedMs },
            `${changes} change(s) notified; refreshing`,
          );
          loop.request({ trigger: 'change' });
        },
      });
      const debouncer = this.#debouncer;
      // Writers send no NOTIFY (it would serialize their commits): the change log is polled.
      this.#pollDb = openDatabase({
        ...this.#connection,
        applicationName: `${DAEMON_APPLICATION_NAME}-poll`,
        max: 1,
      });
      this.#poller = new ChangePoller({
        pool: this.#pollDb.pool,
        logger,
        intervalMs: options.pollIntervalMs,
        onChange: () => debouncer.notify(),
        onPending: (catchUp) => {
          if (catchUp) {
            // At start or after an outage: these changes may have waited long; refresh now.
            logger.info(
              { event: 'change.catch_up' },
              'catching up on changes no refresh has reflected yet',
            );
            loop.request({ trigger: 'change' });
          } else if (debouncer.idle && !loop.running) {
            // A late commit of an older transaction, or changes a refresh could not take:
            // treat it as a write (debounced), never as a reason to refresh in a tight loop.
            debouncer.notify();
          }
        },
        onFailure: () => monitor.probeSoon(),
      });
      this.#poller.start();
    }

    if (options.schedule !== undefined) {
      const loop = this.#loop;
      this.#schedule = new CronSchedule({
        expression: options.schedule,
        logger,
        onTick: (slot, periodMs) =>
          loop.request({
            trigger: 'schedule',
            slot,
            allowanceMs: Math.min(periodMs / 2, MAX_TICK_ALLOWANCE_MS),
          }),
      });
      this.#schedule.start();
    }

    logger.info(
      {
        event: 'daemon.started',
        database: this.#connection.target.display,
        schedule: options.schedule ?? null,
        on_change: options.onChange,
        debounce_ms: options.debounceMs,
        max_wait_ms: options.maxWaitMs,
        grace_ms: options.graceMs,
        statement_timeout_ms: options.statementTimeoutMs,
        lock_timeout_ms: options.lockTimeoutMs,
        http: `${options.httpHost}:${this.#http.port}`,
      },
      'daemon started',
    );
  }

  #readiness(): Readiness {
    const reasons: string[] = [];
    if (!this.#monitor?.up) reasons.push('database unreachable');
    if (this.#options.onChange && !this.#poller?.healthy) {
      reasons.push('change probe failing');
    }
    for (const [view, count] of this.#loop?.consecutiveFailures ?? []) {
      if (count >= READINESS_MAX_CONSECUTIVE_FAILURES) {
        reasons.push(`${count} refreshes of ${view} failed in a row`);
      }
    }
    if (this.#stopping) reasons.push('shutting down');
    return { ready: reasons.length === 0, reasons };
  }

  async #shutdown(signal: string): Promise<void> {
    this.#logger.info(
      { event: 'daemon.stopping', signal, grace_ms: this.#options.graceMs },
      `${signal}: stopping`,
    );
    await this.#starting?.catch(() => {});
    this.#schedule?.stop();
    this.#debouncer?.stop();
    this.#loop?.stop();
    await this.#poller?.stop();

    const running = this.#loop?.running;
    if (running) await this.#finishOrCancel(running);
    await this.#close();
    this.#logger.info({ event: 'daemon.stopped', signal }, 'daemon stopped');
    this.#resolveDone();
  }

  async #finishOrCancel(running: Promise<void>): Promise<void> {
    let settled = false;
    void running.finally(() => {
      settled = true;
    });
    this.#logger.info(
      { event: 'daemon.draining', grace_ms: this.#options.graceMs },
      'waiting for the running refresh',
    );
    await Promise.race([running, sleep(this.#options.graceMs, undefined, { ref: false })]);
    const deadline = Date.now() + CANCEL_BOUND_MS;
    while (!settled && Date.now() < deadline) {
      const pid = this.#engine?.runningPid;
      if (pid !== undefined) {
        try {
          const signalled = await this.#monitor?.cancelBackend(pid);
          this.#logger.warn(
            { event: 'daemon.cancel', backend_pid: pid, signalled: signalled ?? false },
            `grace period over: cancelling the running refresh (backend pid ${pid})`,
          );
        } catch (error) {
          this.#logger.error(
            { event: 'daemon.cancel_failed', backend_pid: pid, ...errorFields(error) },
            'could not cancel the running refresh',
          );
        }
      }
      await Promise.race([running, sleep(CANCEL_REPEAT_MS, undefined, { ref: false })]);
    }
    if (!settled) {
      this.#logger.error(
        { event: 'daemon.cancel_timeout' },
        'the running refresh did not end after cancelling; closing anyway',
      );
    }
  }

  async #close(): Promise<void> {
    this.#schedule?.stop();
    this.#debouncer?.stop();
    this.#loop?.stop();
    this.#monitor?.stop();
    await this.#poller?.stop();
    await Promise.all(
      [
        this.#http?.close(),
        this.#refreshDb?.close(),
        this.#monitorDb?.close(),
        this.#pollDb?.close(),
      ].map((closing) =>
        Promise.race([closing?.catch(() => {}), sleep(CLOSE_BOUND_MS, undefined, { ref: false })]),
      ),
    );
  }
}
