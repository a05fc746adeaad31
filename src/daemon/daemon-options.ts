import cron from 'node-cron';
import { ConfigError } from '../config/config-error.ts';
import { parseDuration } from '../config/duration.ts';
import {
  DEFAULT_LOCK_TIMEOUT_MS,
  DEFAULT_STATEMENT_TIMEOUT_MS,
} from '../refresh/refresh-engine.ts';
import { DEFAULT_POLL_INTERVAL_MS } from './change-poller.ts';

/** Daemon settings as flags give them (strings; durations such as `500ms`, `30s`, `5m`). */
export interface DaemonOptions {
  /** Cron expression, 5 fields or 6 with seconds first. Default: none. */
  schedule?: string | undefined;
  /** Refresh when the change log shows new writes (polled). Default false. */
  onChange?: boolean | undefined;
  /** Time between probes of the change log with `onChange`. Default `250ms`. */
  pollInterval?: string | undefined;
  /** Quiet period after the last change before a change refresh. Default `1s`. */
  debounce?: string | undefined;
  /** Longest wait after the first unreflected change. Default `10s`. */
  maxWait?: string | undefined;
  /** Default `127.0.0.1`. */
  httpHost?: string | undefined;
  /** 0 picks a free port. Default `9464`. */
  httpPort?: string | number | undefined;
  /** How long a running refresh may finish after SIGTERM before it is cancelled. Default `30s`. */
  grace?: string | undefined;
  /** Default: the refresh engine's (10m). */
  statementTimeout?: string | undefined;
  /** Default: the refresh engine's (30s). */
  lockTimeout?: string | undefined;
}

/** Validated daemon settings, in milliseconds. */
export interface ResolvedDaemonOptions {
  schedule: string | undefined;
  onChange: boolean;
  pollIntervalMs: number;
  debounceMs: number;
  maxWaitMs: number;
  httpHost: string;
  httpPort: number;
  graceMs: number;
  statementTimeoutMs: number;
  lockTimeoutMs: number;
}

/** Default `--debounce`: 1 s. */
export const DEFAULT_DEBOUNCE_MS = 1_000;
/** Default `--max-wait`: 10 s. */
export const DEFAULT_MAX_WAIT_MS = 10_000;
/** Default `--grace`: 30 s. */
export const DEFAULT_GRACE_MS = 30_000;
/** Default `--http-host`: loopback only; set `0.0.0.0` to let Prometheus scrape from outside. */
export const DEFAULT_HTTP_HOST = '127.0.0.1';
/** Default `--http-port`: 9464 (the usual Prometheus exporter port). */
export const DEFAULT_HTTP_PORT = 9464;

/** Validates every daemon flag; throws {@link ConfigError} (exit 2) naming the first bad one. */
export function resolveDaemonOptions(options: DaemonOptions): ResolvedDaemonOptions {
  const schedule =
    options.schedule === undefined || options.schedule.trim() === ''
      ? undefined
      : validateSchedule(options.schedule);
  const onChange = options.onChange ?? false;
  if (schedule === undefined && !onChange) {
    throw new ConfigError(
      `nothing to do: give --schedule CRON, --on-change, or both (e.g. --on-change --schedule '*/5 * * * *')`,
    );
  }
  const debounceMs = duration(options.debounce, 'debounce', DEFAULT_DEBOUNCE_MS);
  const maxWaitMs = duration(options.maxWait, 'max-wait', DEFAULT_MAX_WAIT_MS);
  if (maxWaitMs < debounceMs) {
    throw new ConfigError(
      `--max-wait (${maxWaitMs}ms) must be at least --debounce (${debounceMs}ms)`,
    );
  }
  const httpHost = (options.httpHost ?? DEFAULT_HTTP_HOST).trim();
  if (httpHost === '') throw new ConfigError('--http-host: expected a host name or address');
  return {
    schedule,
    onChange,
    pollIntervalMs: duration(options.pollInterval, 'poll-interval', DEFAULT_POLL_INTERVAL_MS),
    debounceMs,
    maxWaitMs,
    httpHost,
    httpPort: parsePort(options.httpPort ?? DEFAULT_HTTP_PORT),
    graceMs: duration(options.grace, 'grace', DEFAULT_GRACE_MS),
    statementTimeoutMs: duration(
      options.statementTimeout,
      'statement-timeout',
      DEFAULT_STATEMENT_TIMEOUT_MS,
    ),
    lockTimeoutMs: duration(options.lockTimeout, 'lock-timeout', DEFAULT_LOCK_TIMEOUT_MS),
  };
}

/**
 * Checks a cron expression the way node-cron 4 will run it (5 fields, or 6 with seconds first;
 * `@daily`-style nicknames) and returns it trimmed.
 */
export function validateSchedule(expression: string): string {
  const trimmed = expression.trim();
  const result = cron.validateDetailed(trimmed);
  if (!result.valid) {
    const reason = result.errors[0]?.message ?? 'not a cron expression';
    throw new ConfigError(
      `--schedule: invalid cron expression '${expression}': ${reason}; expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, e.g. '*/30 * * * * *'`,
    );
  }
  return trimmed;
}

/** A TCP port, 0 (any free port) to 65535. */
export function parsePort(value: string | number): number {
  const text = String(value).trim();
  const port = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new ConfigError(`--http-port: expected a port number from 0 to 65535, got '${value}'`);
  }
  return port;
}

function duration(value: string | undefined, flag: string, fallback: number): number {
  return value === undefined ? fallback : parseDuration(value, flag);
}
