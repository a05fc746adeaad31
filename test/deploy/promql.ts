import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * The daemon's metrics (src/daemon/daemon-metrics.ts; README.md, "Observability") and the labels
 * each carries, plus Prometheus' own `up`. A histogram is listed as the series it is exposed as.
 * test/deploy/manifests.test.ts checks this table against what DaemonMetrics exports.
 */
export const METRIC_LABELS: Readonly<Record<string, readonly string[]>> = {
  hierarchy_refresh_duration_seconds_bucket: ['view', 'method', 'le'],
  hierarchy_refresh_duration_seconds_sum: ['view', 'method'],
  hierarchy_refresh_duration_seconds_count: ['view', 'method'],
  hierarchy_refresh_total: ['view', 'status'],
  hierarchy_view_staleness_seconds: ['view'],
  hierarchy_view_pending_changes: ['view'],
  hierarchy_last_refresh_success_timestamp_seconds: ['view'],
  hierarchy_db_up: [],
  hierarchy_refresh_consecutive_failures: ['view'],
  up: [],
};

/** The daemon's metric names (a histogram by its base name). */
export const DAEMON_METRICS = new Set([
  'hierarchy_refresh_duration_seconds',
  'hierarchy_refresh_total',
  'hierarchy_view_staleness_seconds',
  'hierarchy_view_pending_changes',
  'hierarchy_last_refresh_success_timestamp_seconds',
  'hierarchy_db_up',
  'hierarchy_refresh_consecutive_failures',
  'up',
]);
/** A histogram is exposed as these series. */
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];
const DAEMON_HISTOGRAMS = ['hierarchy_refresh_duration_seconds'];

/**
 * Labels every scraped series gets from the scrape, not from the daemon: the job and instance,
 * and the namespace and pod that the Prometheus Operator (deploy/kubernetes/base/
 * service-monitor.yaml) or the relabelling of deploy/kubernetes/README.md add.
 */
export const TARGET_LABELS: readonly string[] = ['job', 'instance', 'namespace', 'pod'];

export function isDaemonMetric(name: string): boolean {
  if (DAEMON_METRICS.has(name)) return true;
  return DAEMON_HISTOGRAMS.some((base) =>
    HISTOGRAM_SUFFIXES.some((suffix) => name === base + suffix),
  );
}

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'and',
  'or',
  'unless',
  'offset',
  'inf',
  'nan',
]);

/**
 * Metric names in a PromQL expression: identifiers left once strings, label matchers, range
 * selectors and grouping clauses are removed, minus functions, aggregators and keywords.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\boffset\s+[0-9a-z]+/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const match of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = stripped.slice((match.index ?? 0) + match[0].length);
    if (/^\s*\(/.test(rest)) continue; // a function or aggregation
    if (KEYWORDS.has(match[0].toLowerCase())) continue;
    names.push(match[0]);
  }
  return names;
}

/** Label names a selector `metric{label="..."}` matches on, per metric (undefined: no name). */
export function selectorLabels(expr: string): { metric: string | undefined; label: string }[] {
  const uses: { metric: string | undefined; label: string }[] = [];
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  for (const match of noStrings.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}/g)) {
    for (const matcher of (match[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
      uses.push({ metric: match[1], label: matcher[1]! });
    }
  }
  return uses;
}

/** Label names of the grouping and matching clauses: by, without, on, ignoring, group_*. */
export function clauseLabels(expr: string): { clause: string; labels: string[] }[] {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [
    ...noStrings.matchAll(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g),
  ].map((match) => ({
    clause: match[1]!,
    labels: (match[2] ?? '')
      .split(',')
      .map((label) => label.trim())
      .filter(Boolean),
  }));
}

/**
 * Problems with the labels an expression uses: a selector on a label its metric does not have,
 * or a clause naming a label that none of the expression's metrics (nor the scrape) carries.
 */
export function labelProblems(expr: string): string[] {
  const problems: string[] = [];
  const known = (metric: string) => [...(METRIC_LABELS[metric] ?? []), ...TARGET_LABELS];
  for (const { metric, label } of selectorLabels(expr)) {
    if (label === '__name__') continue;
    const allowed = metric ? known(metric) : TARGET_LABELS;
    if (!allowed.includes(label)) problems.push(`${metric ?? '{}'} has no label ${label}`);
  }
  const inExpr = new Set(metricNames(expr).flatMap(known));
  for (const { clause, labels } of clauseLabels(expr)) {
    for (const label of labels) {
      if (!inExpr.has(label)) problems.push(`${clause} (${label}): no metric here has ${label}`);
    }
  }
  return problems;
}

/** The executable's path if it is on PATH, else undefined. */
export function onPath(command: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}
