import { ConfigError } from './config-error.ts';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const DURATION_PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/;

/**
 * The largest duration by default: 2^31 - 1 ms (about 24.8 days). It is the maximum of
 * PostgreSQL's `statement_timeout` and `lock_timeout` (an int of milliseconds; a larger value
 * fails every statement that sets it) and of a Node.js timer (a larger delay fires at once).
 */
export const MAX_DURATION_MS = 2_147_483_647;

/** Options of {@link parseDuration}. */
export interface DurationOptions {
  /** Largest accepted value in ms. Default {@link MAX_DURATION_MS}. */
  maxMs?: number;
}

/**
 * Parses a duration such as `500ms`, `30s`, `5m` or `1h` into milliseconds. A bare number is
 * taken as milliseconds. Throws {@link ConfigError} carrying `{ option, value }` for text that is
 * not a duration and for one above `maxMs`.
 */
export function parseDuration(
  value: string | number,
  option = 'duration',
  options: DurationOptions = {},
): number {
  const maxMs = options.maxMs ?? MAX_DURATION_MS;
  const ms = toMilliseconds(value);
  if (ms === undefined) {
    throw new ConfigError(
      `expected a duration such as 500ms, 30s, 5m or 1h, got ${typeof value === 'number' ? value : `'${value}'`}`,
      { option, value },
    );
  }
  if (ms > maxMs) {
    throw new ConfigError(
      `expected at most ${maxMs}ms (${formatDuration(maxMs)}), got '${value}' (${ms}ms)`,
      { option, value },
    );
  }
  return ms;
}

function toMilliseconds(value: string | number): number | undefined {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  }
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const match = DURATION_PATTERN.exec(text);
  if (!match) return undefined;
  return Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]);
}

/** Formats milliseconds for people: `850ms`, `12.3s`, `4m 05s`, `2h 03m`. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)}s`;
  if (ms < 3_600_000) {
    const minutes = Math.floor(ms / 60_000);
    return `${minutes}m ${String(Math.floor((ms % 60_000) / 1_000)).padStart(2, '0')}s`;
  }
  const hours = Math.floor(ms / 3_600_000);
  return `${hours}h ${String(Math.floor((ms % 3_600_000) / 60_000)).padStart(2, '0')}m`;
}
