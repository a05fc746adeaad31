import { ConfigError } from './config-error.ts';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const DURATION_PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/;

/**
 * Parses a duration such as `500ms`, `30s`, `5m` or `1h` into milliseconds.
 * A bare number is taken as milliseconds. Throws {@link ConfigError} naming the flag otherwise.
 */
export function parseDuration(value: string | number, flag = 'duration'): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) return Math.round(value);
    throw new ConfigError(
      `--${flag}: expected a duration such as 500ms, 30s, 5m or 1h, got ${value}`,
    );
  }
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const match = DURATION_PATTERN.exec(text);
  if (!match) {
    throw new ConfigError(
      `--${flag}: expected a duration such as 500ms, 30s, 5m or 1h, got '${value}'`,
    );
  }
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
