// The benchmark's result document and its markdown rendering.
import type { LatencySummary } from '../../src/slo/latency.ts';
import type { EditToVisible, RefreshTimings, WriterOverhead } from './measure.ts';
import type {
  EditRefresh,
  OneRowEditRefreshes,
  SubtreeRefreshes,
  WriterCapture,
} from './strategies.ts';

/** The two strategies side by side on the same data (scripts/bench/strategies.ts). */
export interface StrategyResults {
  /** `CALL hierarchy_set_view_strategy('incremental')`: both views rebuilt as tables. */
  switch_to_incremental_ms: number;
  one_row_edit: {
    materialized: OneRowEditRefreshes;
    incremental: OneRowEditRefreshes;
    /** Materialized mean / incremental mean, per kind of edit. */
    ratio_leaf_rename: number;
    ratio_leaf_insert: number;
  };
  /** Incremental only: a materialized refresh after any edit is one full refresh. */
  subtree: SubtreeRefreshes;
  lookups: {
    idle: LatencySummary;
    during_incremental_refresh: LatencySummary & { refresh_runs: number; methods: string[] };
  };
  /** Daemon `--on-change` on incremental views. */
  edit_to_visible: EditToVisible;
  writer_capture: WriterCapture;
  /** Back to materialized before the next size's seed; null after the last size. */
  switch_to_materialized_ms: number | null;
}

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
  strategies: StrategyResults;
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

/** Mean of the client-timed refresh calls. */
export function meanRefreshMs(refreshes: readonly EditRefresh[]): number {
  if (refreshes.length === 0) return Number.NaN;
  return refreshes.reduce((sum, r) => sum + r.ms, 0) / refreshes.length;
}

function maxRefreshMs(refreshes: readonly EditRefresh[]): number {
  return Math.max(...refreshes.map((r) => r.ms));
}

/** The methods the views were refreshed with, e.g. `incremental` or `concurrent`. */
function methods(refreshes: readonly EditRefresh[]): string {
  const all = new Set(refreshes.flatMap((r) => r.views.map((v) => v.method ?? v.status)));
  return [...all].join(', ');
}

/** `mean X / max Y (in the views V; n = N, method M)` of a series of refresh calls. */
function refreshes(series: readonly EditRefresh[]): string {
  const views = series.reduce((sum, r) => sum + r.views_ms, 0) / series.length;
  return `mean ${ms(meanRefreshMs(series))} / max ${ms(maxRefreshMs(series))} (in the views ${ms(views)}; n = ${series.length}, ${methods(series)})`;
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
    ...strategyTargets(largest, at),
  ];
  return checks;
}

function strategyTargets(largest: SizeResult, at: string): TargetCheck[] {
  const s = largest.strategies;
  const edit = s.one_row_edit;
  const oneRow = (kind: 'leaf_rename' | 'leaf_insert', label: string): TargetCheck[] => {
    const incremental = meanRefreshMs(edit.incremental[kind]);
    const materialized = meanRefreshMs(edit.materialized[kind]);
    const ratio = kind === 'leaf_rename' ? edit.ratio_leaf_rename : edit.ratio_leaf_insert;
    return [
      {
        target: `refresh after a ${label}, incremental <= 50 ms ${at} (mean)`,
        measured: `mean ${ms(incremental)}, max ${ms(maxRefreshMs(edit.incremental[kind]))}`,
        met: incremental <= 50,
      },
      {
        target: `refresh after a ${label}, materialized / incremental >= 400x ${at} (expected)`,
        measured: `${ratio}x (${ms(materialized)} vs ${ms(incremental)})`,
        met: ratio >= 400,
      },
    ];
  };
  const move = s.subtree.move;
  const rename = s.subtree.rename;
  const visible = s.edit_to_visible;
  const writer = s.writer_capture;
  const idle = s.lookups.idle;
  const during = s.lookups.during_incremental_refresh;
  return [
    ...oneRow('leaf_rename', 'leaf rename'),
    ...oneRow('leaf_insert', 'leaf insert'),
    {
      target: `refresh after moving a 1,000-node subtree, incremental <= 300 ms ${at} (max of there and back)`,
      measured: `${ms(maxRefreshMs(move.refreshes))} (${move.descendant_count} active descendants, ${move.subtree_rows} rows moved)`,
      met: maxRefreshMs(move.refreshes) <= 300,
    },
    {
      target: `refresh after renaming a node with 10,000 descendants, incremental <= 1.5 s ${at} (max of 2)`,
      measured: `${ms(maxRefreshMs(rename.refreshes))} (${rename.descendant_count} active descendants)`,
      met: maxRefreshMs(rename.refreshes) <= 1500,
    },
    {
      target: `edit-to-visible, daemon --on-change on incremental views, mean <= 300 ms and max <= 1 s ${at}`,
      measured: visible.measured
        ? `mean ${ms(visible.mean_ms)}, max ${ms(visible.max_ms)}`
        : visible.reason,
      met: visible.measured ? visible.mean_ms <= 300 && visible.max_ms <= 1000 : null,
    },
    {
      target: `writer throughput, materialized-only capture / tracking off >= 0.90 (${writer.clients} clients, synchronous_commit on) ${at}`,
      measured: `${writer.ratio_materialized} (${writer.materialized_per_s} vs ${writer.off_per_s}/s)`,
      met: writer.ratio_materialized >= 0.9,
    },
    {
      target: `writer throughput, incremental capture / tracking off >= 0.85 (${writer.clients} clients, synchronous_commit on) ${at}`,
      measured: `${writer.ratio_incremental} (${writer.incremental_per_s} vs ${writer.off_per_s}/s)`,
      met: writer.ratio_incremental >= 0.85,
    },
    {
      target: `lookup p95 <= 0.3 ms on incremental tables, idle ${at}`,
      measured: ms(idle.p95_ms),
      met: idle.p95_ms <= 0.3,
    },
    {
      target: `lookup p95 <= 0.3 ms on incremental tables, during an incremental refresh ${at}`,
      measured: `${ms(during.p95_ms)} (${during.samples} samples over ${during.refresh_runs} refreshes)`,
      met: during.samples > 0 ? during.p95_ms <= 0.3 : null,
    },
    {
      target: `the materialized path keeps its figures ${at} (against the previous run in docs/benchmark.md)`,
      measured: `forced refresh ${ms(largest.refresh_function_forced_ms)}, CONCURRENTLY ratio ${largest.refresh.ratio_concurrently}x, lookup p95 ${ms(largest.lookups.idle.p95_ms)}`,
      met: null,
    },
  ];
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
    row('**strategies side by side** (same data, same run)', () => ''),
    row('switch to incremental (`hierarchy_set_view_strategy`)', (r) =>
      ms(r.strategies.switch_to_incremental_ms),
    ),
    row(
      'refresh after a leaf rename: materialized / incremental (ratio)',
      (r) =>
        `${ms(meanRefreshMs(r.strategies.one_row_edit.materialized.leaf_rename))} / ${ms(meanRefreshMs(r.strategies.one_row_edit.incremental.leaf_rename))} (**${r.strategies.one_row_edit.ratio_leaf_rename}x**)`,
    ),
    row(
      'refresh after a leaf insert: materialized / incremental (ratio)',
      (r) =>
        `${ms(meanRefreshMs(r.strategies.one_row_edit.materialized.leaf_insert))} / ${ms(meanRefreshMs(r.strategies.one_row_edit.incremental.leaf_insert))} (**${r.strategies.one_row_edit.ratio_leaf_insert}x**)`,
    ),
    row('incremental refresh after a leaf rename', (r) =>
      refreshes(r.strategies.one_row_edit.incremental.leaf_rename),
    ),
    row('incremental refresh after a leaf insert', (r) =>
      refreshes(r.strategies.one_row_edit.incremental.leaf_insert),
    ),
    row(
      'incremental refresh after a subtree move, there / back (active descendants, rows moved)',
      (r) =>
        `${r.strategies.subtree.move.refreshes.map((x) => ms(x.ms)).join(' / ')} (${r.strategies.subtree.move.descendant_count}, ${r.strategies.subtree.move.subtree_rows})`,
    ),
    row(
      'incremental refresh after renaming a subtree root, renamed / restored (active descendants)',
      (r) =>
        `${r.strategies.subtree.rename.refreshes.map((x) => ms(x.ms)).join(' / ')} (${r.strategies.subtree.rename.descendant_count})`,
    ),
    row(
      'lookup p95 idle: materialized / incremental',
      (r) => `${ms(r.lookups.idle.p95_ms)} / ${ms(r.strategies.lookups.idle.p95_ms)}`,
    ),
    row(
      'lookup p95 during a refresh: materialized (concurrent) / incremental',
      (r) =>
        `${ms(r.lookups.during_concurrent_refresh.p95_ms)} / ${ms(r.strategies.lookups.during_incremental_refresh.p95_ms)} (${r.strategies.lookups.during_incremental_refresh.samples} samples)`,
    ),
    row('edit-to-visible, daemon `--on-change`: materialized / incremental (mean / max)', (r) => {
      const cell = (v: EditToVisible) =>
        v.measured ? `${ms(v.mean_ms)} / ${ms(v.max_ms)}` : v.reason;
      return `${cell(r.edit_to_visible)} vs ${cell(r.strategies.edit_to_visible)}`;
    }),
    row(
      `writers/s, ${sizes[0]?.strategies.writer_capture.clients ?? 16} clients, synchronous_commit on, fsync ${report.server.settings.fsync ?? '?'}: off / materialized / incremental capture`,
      (r) => {
        const w = r.strategies.writer_capture;
        return `${w.off_per_s} / ${w.materialized_per_s} / ${w.incremental_per_s}`;
      },
    ),
    row('**writer ratio to tracking off: materialized / incremental capture**', (r) => {
      const w = r.strategies.writer_capture;
      return `**${w.ratio_materialized} / ${w.ratio_incremental}**`;
    }),
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
