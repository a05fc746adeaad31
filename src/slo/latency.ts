/** Summary statistics of a set of latency samples, in milliseconds. */
export interface LatencySummary {
  samples: number;
  mean_ms: number;
  p50_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
}

/**
 * Mean and nearest-rank percentiles (the smallest sample with at least p% of samples at or
 * below it), rounded to microseconds. Throws on an empty set: a summary of nothing would read as
 * a perfect result.
 */
export function summarizeLatencies(latenciesMs: readonly number[]): LatencySummary {
  if (latenciesMs.length === 0) throw new RangeError('no latency samples to summarize');
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
  const mean = sorted.reduce((sum, value) => sum + value, 0) / sorted.length;
  return {
    samples: sorted.length,
    mean_ms: roundMs(mean),
    p50_ms: roundMs(rank(50)),
    p95_ms: roundMs(rank(95)),
    p99_ms: roundMs(rank(99)),
    max_ms: roundMs(sorted[sorted.length - 1] ?? 0),
  };
}

/** Rounds milliseconds to three decimals (microseconds). */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
