// The benchmark's result document and its markdown rendering.
import type { LatencySummary } from '../../src/slo/latency.ts';
import type { EditToVisible, RefreshTimings, WriterOverhead } from './measure.ts';

/** Everything measured at one size. */
export interface SizeResult {
  entities: number;
  active_entities: number;
  depth: number;
  seed_ms: number;
  refresh: {
    ours: RefreshTimings;
    origin: RefreshTimings;
    /** origin / ours, both views together. */
    ratio_plain: number;
    ratio_concurrently: number;
    /** Both formulations produced exactly the same rows. */
    same_rows: boolean;
  };
  /** One forced refresh_hierarchy_views() call (both views CONCURRENTLY, audited), client-timed. */
  refresh_function_forced_ms: number;
  lookups: {
    idle: LatencySummary;
    during_concurrent_refresh: LatencySummary & { statement_runs: number };
    during_plain_refresh: LatencySummary & { statement_runs: number };
  };
  clean_skip_call: LatencySummary & { statuses: string[] };
  writer: WriterOverhead;
  edit_to_visible: EditToVisible;
  /** Share of time some task waited for a CPU over the last minute (/proc/pressure/cpu), if known. */
  cpu_pressure_some_avg60_pct: { before: number | null; after: number | null };
}

/** One target of the benchmark (docs/benchmark.md), checked at the largest size measured. */
export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean | null;
}

/** The JSON result file. */
export interface BenchReport {
  version: 1;
  command: string;
  started_at: string;
  finished_at: string;
  machine: {
    cpus: number;
    cpu_model: string;
    memory_gb: number;
    node: string;
    platform: string;
  };
  server: {
    kind: 'embedded' | 'external';
    version: string;
    settings: Record<string, string>;
  };
  options: Record<string, unknown>;
  results: SizeResult[];
  targets: TargetCheck[];
}

/** Human size: 10k, 1M, 1.5M, 1234. */
export function formatSize(n: number): string {
  if (n >= 1_000_000 && n % 100_000 === 0) return `${n / 1_000_000}M`;
  if (n >= 1_000 && n % 1_000 === 0) return `${n / 1_000}k`;
  return String(n);
}

/** Parses `10k`, `1M`, `250000`. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text.trim());
  if (!match) throw new Error(`bad size '${text}': expected e.g. 10k, 100k, 1M or 5000`);
  const unit = match[2]?.toLowerCase();
  const factor = unit === 'k' ? 1_000 : unit === 'm' ? 1_000_000 : 1;
  const value = Math.round(Number(match[1]) * factor);
  if (value < 10) throw new Error(`bad size '${text}': at least 10 entities`);
  return value;
}

function ms(value: number): string {
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} s`;
  if (value >= 100) return `${Math.round(value)} ms`;
  if (value >= 1) return `${value.toFixed(1)} ms`;
  return `${value.toFixed(3)} ms`;
}

function latency(s: LatencySummary, fields: (keyof LatencySummary)[]): string {
  return fields.map((f) => `${f.replace('_ms', '')} ${ms(s[f])}`).join(' / ');
}

/**
 * The evaluation of the benchmark's targets (docs/benchmark.md) and of the SLO floors that
 * `hierarchy-db slo` checks, at the largest size.
 */
export function checkTargets(results: SizeResult[]): TargetCheck[] {
  const largest = results[results.length - 1];
  if (!largest) return [];
  const at = `at ${formatSize(largest.entities)}`;
  const idle = largest.lookups.idle;
  const concurrent = largest.lookups.during_concurrent_refresh;
  const p99Ratio = concurrent.p99_ms / idle.p99_ms;
  const seedAt1M = results.find((r) => r.entities >= 1_000_000);
  const checks: TargetCheck[] = [
    {
      target: `both views refreshed >= 3x faster than the origin formulation (CONCURRENTLY, aim 6x) ${at}`,
      measured: `${largest.refresh.ratio_concurrently}x (plain refresh: ${largest.refresh.ratio_plain}x)`,
      met: largest.refresh.ratio_concurrently >= 3,
    },
    {
      target: `ancestor lookup p95 <= 0.5 ms idle ${at}`,
      measured: ms(idle.p95_ms),
      met: idle.p95_ms <= 0.5,
    },
    {
      target: `ancestor lookup p99 during a concurrent refresh <= 3x idle p99 ${at}`,
      measured: `${ms(concurrent.p99_ms)} vs ${ms(idle.p99_ms)} (${p99Ratio.toFixed(1)}x)`,
      met: p99Ratio <= 3,
    },
    {
      target: `clean-skip refresh call <= 5 ms ${at}`,
      measured: `mean ${ms(largest.clean_skip_call.mean_ms)}, p95 ${ms(largest.clean_skip_call.p95_ms)}`,
      met: largest.clean_skip_call.mean_ms <= 5,
    },
    {
      target: `change-tracking writer overhead <= 10% (${largest.writer.clients} clients) ${at}`,
      measured: `${largest.writer.overhead_pct}%`,
      met: largest.writer.overhead_pct <= 10,
    },
    {
      target: 'seed 1M entities <= 60 s',
      measured: seedAt1M ? ms(seedAt1M.seed_ms) : 'not run at 1M',
      met: seedAt1M ? seedAt1M.seed_ms <= 60_000 : null,
    },
    {
      target: `SLO floor: ancestor lookup mean <= 1.25 ms, p95 <= 1.87 ms ${at}`,
      measured: `mean ${ms(idle.mean_ms)}, p95 ${ms(idle.p95_ms)}`,
      met: idle.mean_ms <= 1.25 && idle.p95_ms <= 1.87,
    },
    {
      target: `SLO floor: view refresh < 1000 ms ${at} (forced refresh_hierarchy_views())`,
      measured: ms(largest.refresh_function_forced_ms),
      met: largest.refresh_function_forced_ms < 1000,
    },
  ];
  return checks;
}

/** The markdown tables: one column per size, then the targets. */
export function renderMarkdown(report: BenchReport): string {
  const sizes = report.results;
  const header = `| measure | ${sizes.map((r) => formatSize(r.entities)).join(' | ')} |`;
  const rule = `|---|${sizes.map(() => '---:').join('|')}|`;
  const row = (label: string, cell: (r: SizeResult) => string) =>
    `| ${label} | ${sizes.map(cell).join(' | ')} |`;
  const refresh = (r: RefreshTimings, kind: 'plain_ms' | 'concurrently_ms') =>
    `${ms(r[kind].total)} (${ms(r[kind].mv_entity_ancestors)} + ${ms(r[kind].mv_descendant_counts)})`;
  const lines = [
    header,
    rule,
    row('active entities / depth', (r) => `${r.active_entities} / ${r.depth}`),
    row('`seed`', (r) => ms(r.seed_ms)),
    row('full refresh CONCURRENTLY, ours (ancestors + counts)', (r) =>
      refresh(r.refresh.ours, 'concurrently_ms'),
    ),
    row('full refresh CONCURRENTLY, origin formulation', (r) =>
      refresh(r.refresh.origin, 'concurrently_ms'),
    ),
    row('**ratio origin / ours, CONCURRENTLY**', (r) => `**${r.refresh.ratio_concurrently}x**`),
    row('full refresh plain, ours', (r) => refresh(r.refresh.ours, 'plain_ms')),
    row('full refresh plain, origin formulation', (r) => refresh(r.refresh.origin, 'plain_ms')),
    row('ratio origin / ours, plain', (r) => `${r.refresh.ratio_plain}x`),
    row('same rows in both formulations', (r) => (r.refresh.same_rows ? 'yes' : '**NO**')),
    row('forced `refresh_hierarchy_views()` call', (r) => ms(r.refresh_function_forced_ms)),
    row('ancestor lookup, idle (mean / p50 / p95 / p99)', (r) =>
      latency(r.lookups.idle, ['mean_ms', 'p50_ms', 'p95_ms', 'p99_ms']),
    ),
    row(
      'ancestor lookup during a concurrent refresh (p50 / p95 / p99)',
      (r) =>
        `${latency(r.lookups.during_concurrent_refresh, ['p50_ms', 'p95_ms', 'p99_ms'])} (${r.lookups.during_concurrent_refresh.samples} samples)`,
    ),
    row(
      'ancestor lookup during a plain refresh (p50 / p99 / max)',
      (r) =>
        `${latency(r.lookups.during_plain_refresh, ['p50_ms', 'p99_ms', 'max_ms'])} (${r.lookups.during_plain_refresh.samples} samples)`,
    ),
    row('clean-skip `refresh_hierarchy_views()` call (mean / p95)', (r) =>
      latency(r.clean_skip_call, ['mean_ms', 'p95_ms']),
    ),
    row(
      'single-row updates/s, tracking on / off',
      (r) => `${r.writer.with_tracking_per_s} / ${r.writer.without_tracking_per_s}`,
    ),
    row('change-tracking writer overhead', (r) => `${r.writer.overhead_pct}%`),
    row('edit-to-visible, daemon `--on-change` (mean / max)', (r) =>
      r.edit_to_visible.measured
        ? `${latency(r.edit_to_visible, ['mean_ms', 'max_ms'])} (debounce ${r.edit_to_visible.debounce})`
        : r.edit_to_visible.reason,
    ),
    row(
      'CPU pressure avg60 before / after',
      (r) =>
        `${r.cpu_pressure_some_avg60_pct.before ?? '-'}% / ${r.cpu_pressure_some_avg60_pct.after ?? '-'}%`,
    ),
  ];
  const targets = [
    '| target | measured | met |',
    '|---|---|---|',
    ...report.targets.map(
      (t) => `| ${t.target} | ${t.measured} | ${t.met === null ? '-' : t.met ? 'yes' : '**no**'} |`,
    ),
  ];
  return [...lines, '', ...targets].join('\n');
}
