import type pg from 'pg';
import { ConfigError } from '../config/config-error.ts';
import type { Logger } from '../logging/logger.ts';
import { RefreshEngine, type RefreshResult } from '../refresh/refresh-engine.ts';
import { drawEntityIds, measureAncestorLookups } from './ancestor-lookup.ts';
import { roundMs, summarizeLatencies } from './latency.ts';

/**
 * Target mean of one ancestor lookup, the service's latency SLO (README, "hierarchy-db slo"):
 * 1.25 ms.
 */
export const DEFAULT_TARGET_MEAN_MS = 1.25;
/** Target p95 of one ancestor lookup, the service's latency SLO: 1.87 ms. */
export const DEFAULT_TARGET_P95_MS = 1.87;
/** A full refresh of the views must take less than this, the service's refresh SLO: 1000 ms. */
export const DEFAULT_REFRESH_THRESHOLD_MS = 1_000;
/** Default measured lookups: 10 000. */
export const DEFAULT_SLO_SAMPLES = 10_000;
/** Default window of audited refreshes the refresh SLO is measured on: 24 hours. */
export const DEFAULT_REFRESH_WINDOW_MS = 24 * 3_600_000;

/** `PASSED` or `FAILED` (upper case: part of the `slo --json` format). */
export type SloStatus = 'PASSED' | 'FAILED';

/**
 * The SLO report, in the shape `slo --json` documents (README, "hierarchy-db slo"): keep it
 * stable.
 */
export interface SloReport {
  entities: number;
  ancestor_resolution: {
    target_mean_ms: number;
    target_p95_ms: number;
    actual_mean_ms: number;
    actual_p95_ms: number;
    actual_p99_ms: number;
    samples: number;
    status: SloStatus;
  };
  refresh: {
    threshold_ms: number;
    /** p95 of the audited refresh durations in the window, or the one forced refresh measured. */
    actual_ms: number;
    status: SloStatus;
    /** `audit`: what production did (per view, status refreshed); `measured`: one forced refresh. */
    source: 'audit' | 'measured';
    /** The audit window, in milliseconds (with `source: audit`). */
    window_ms: number | null;
    /** Audited refreshes the p95 is taken over (with `source: audit`). */
    samples: number | null;
  };
}

/** Options for {@link checkSlo}. */
export interface SloOptions {
  pool: pg.Pool;
  logger: Logger;
  /** `host:port` for connection error messages. */
  target?: string;
  /** Measured lookups. Default {@link DEFAULT_SLO_SAMPLES}. */
  samples?: number;
  /** Default {@link DEFAULT_TARGET_MEAN_MS}. */
  targetMeanMs?: number;
  /** Default {@link DEFAULT_TARGET_P95_MS}. */
  targetP95Ms?: number;
  /** Default {@link DEFAULT_REFRESH_THRESHOLD_MS}. */
  refreshThresholdMs?: number;
  /**
   * Measure the refresh SLO with one forced refresh of both views (audited, trigger manual)
   * instead of the audit. Also used when the window holds no audited refresh. Default false.
   */
  measureRefresh?: boolean;
  /** Window of audited refreshes. Default {@link DEFAULT_REFRESH_WINDOW_MS}. */
  refreshWindowMs?: number;
}

/** The forced refresh the SLO measures did not complete for every view. */
export class SloRefreshError extends Error {
  override readonly name = 'SloRefreshError';
  constructor(readonly results: RefreshResult[]) {
    const bad = results.find((r) => r.status !== 'refreshed');
    super(
      `the refresh to measure did not complete: ${bad?.view} ${bad?.status}` +
        (bad?.error_message ? ` (${bad.error_message})` : '') +
        '; retry when no other refresh is running',
    );
  }
}

/**
 * Validates the service's SLOs on the connected database:
 * 1. refresh, on what production does: the p95 of the audited durations of successful view
 *    refreshes (rebuilds excluded) over the window; with `measureRefresh`, or when the window
 *    holds none, one forced refresh of both views through `refresh_hierarchy_views()` (trigger
 *    `manual`, so it is audited), `actual_ms` being the sum of the views' durations;
 * 2. ancestor resolution: `samples` lookups by random `entity_id` drawn from the view, on one
 *    connection with a prepared statement, after a warm-up.
 * Throws {@link SloRefreshError} when a forced refresh did not run (another one was running).
 */
export async function checkSlo(options: SloOptions): Promise<SloReport> {
  const samples = options.samples ?? DEFAULT_SLO_SAMPLES;
  const targetMeanMs = options.targetMeanMs ?? DEFAULT_TARGET_MEAN_MS;
  const targetP95Ms = options.targetP95Ms ?? DEFAULT_TARGET_P95_MS;
  const thresholdMs = options.refreshThresholdMs ?? DEFAULT_REFRESH_THRESHOLD_MS;
  if (!Number.isSafeInteger(samples) || samples < 1) {
    throw new ConfigError(`--samples: expected a whole number >= 1, got ${samples}`);
  }
  for (const [flag, value] of [
    ['target-mean-ms', targetMeanMs],
    ['target-p95-ms', targetP95Ms],
    ['refresh-threshold-ms', thresholdMs],
  ] as const) {
    if (!(Number.isFinite(value) && value > 0)) {
      throw new ConfigError(`--${flag}: expected a number of milliseconds > 0, got ${value}`);
    }
  }

  const windowMs = options.refreshWindowMs ?? DEFAULT_REFRESH_WINDOW_MS;
  if (!(Number.isFinite(windowMs) && windowMs > 0)) {
    throw new ConfigError(`--refresh-window: expected a duration > 0, got ${windowMs}ms`);
  }
  const audited = options.measureRefresh
    ? undefined
    : await auditedRefreshP95(options.pool, windowMs);
  const engine = new RefreshEngine({
    pool: options.pool,
    logger: options.logger,
    ...(options.target ? { target: options.target } : {}),
  });
  let refresh: Omit<SloReport['refresh'], 'status' | 'threshold_ms'>;
  if (audited) {
    refresh = {
      actual_ms: audited.p95_ms,
      source: 'audit',
      window_ms: windowMs,
      samples: audited.samples,
    };
    // The lookups must read current data: refresh what is pending (an ordinary, audited refresh,
    // after the p95 was taken, so it does not count in it).
    await engine.refresh({ trigger: 'manual' });
  } else {
    const results = await engine.refresh({ trigger: 'manual', force: true });
    if (results.some((r) => r.status !== 'refreshed')) throw new SloRefreshError(results);
    const measuredMs = roundMs(results.reduce((sum, r) => sum + r.duration_ms, 0));
    refresh = { actual_ms: measuredMs, source: 'measured', window_ms: null, samples: null };
  }

  const client = await options.pool.connect();
  let latencies: number[];
  let entities: number;
  try {
    entities = Number(
      (await client.query<{ n: string }>('SELECT count(*) AS n FROM entities')).rows[0]?.n ?? 0,
    );
    const ids = await drawEntityIds(client, samples);
    latencies = await measureAncestorLookups(client, ids, { samples });
  } finally {
    client.release();
  }
  const summary = summarizeLatencies(latencies);

  return {
    entities,
    ancestor_resolution: {
      target_mean_ms: targetMeanMs,
      target_p95_ms: targetP95Ms,
      actual_mean_ms: summary.mean_ms,
      actual_p95_ms: summary.p95_ms,
      actual_p99_ms: summary.p99_ms,
      samples: summary.samples,
      status:
        summary.mean_ms <= targetMeanMs && summary.p95_ms <= targetP95Ms ? 'PASSED' : 'FAILED',
    },
    refresh: {
      threshold_ms: thresholdMs,
      ...refresh,
      status: refresh.actual_ms < thresholdMs ? 'PASSED' : 'FAILED',
    },
  };
}

/** p95 of audited successful view refreshes in the window; undefined when there is none. */
async function auditedRefreshP95(
  pool: pg.Pool,
  windowMs: number,
): Promise<{ p95_ms: number; samples: number } | undefined> {
  const { rows } = await pool.query<{ p95: number | null; n: string }>(
    `SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95, count(*) AS n
       FROM mv_refresh_audit
      WHERE status = 'refreshed' AND method IS DISTINCT FROM 'rebuild'
        AND started_at >= now() - make_interval(secs => $1::double precision / 1000)`,
    [windowMs],
  );
  const row = rows[0];
  if (!row || row.p95 === null || Number(row.n) === 0) return undefined;
  return { p95_ms: roundMs(Number(row.p95)), samples: Number(row.n) };
}
