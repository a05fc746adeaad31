import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parseDuration } from '../../src/config/duration.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RULES_FILE = 'deploy/prometheus/hierarchy-db.rules.yml';
const RULES_TEST_FILE = 'deploy/prometheus/hierarchy-db.rules.test.yml';
const K8S_DIR = 'deploy/kubernetes';

/** The daemon's metrics (docs/semantics.md, "Metrics"), plus Prometheus' own `up`. */
const DAEMON_METRICS = new Set([
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
/** The daemon's `--grace` default (README, "Configuration"). */
const DEFAULT_GRACE_MS = 30_000;

// Minimal shapes of what the tests read; the YAML is untyped until these assertions pass.
interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    runAsNonRoot?: boolean;
  };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  volumes?: { name: string; emptyDir?: object }[];
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: {
    replicas?: number;
    backoffLimit?: number;
    activeDeadlineSeconds?: number;
    selector?: Record<string, string> | { matchLabels: Record<string, string> };
    ports?: { name?: string; port: number; targetPort?: string | number }[];
    template?: { metadata?: { labels?: Record<string, string> }; spec: PodSpec };
  };
}

function readRepoFile(path: string): string {
  return readFileSync(join(REPO_ROOT, path), 'utf8');
}

function loadRules(): Rule[] {
  const doc = parse(readRepoFile(RULES_FILE)) as { groups: { rules: Rule[] }[] };
  return doc.groups.flatMap((group) => group.rules);
}

function loadManifests(): Manifest[] {
  return ['migrate-job.yaml', 'daemon-deployment.yaml', 'metrics-service.yaml'].flatMap((file) =>
    parseAllDocuments(readRepoFile(`${K8S_DIR}/${file}`)).map((doc) => {
      expect(doc.errors, file).toEqual([]);
      return doc.toJS() as Manifest;
    }),
  );
}

function manifestOfKind(kind: string): Manifest {
  const matches = loadManifests().filter((m) => m.kind === kind);
  expect(matches, kind).toHaveLength(1);
  return matches[0]!;
}

function onlyContainer(manifest: Manifest): Container {
  const containers = manifest.spec.template?.spec.containers ?? [];
  expect(containers).toHaveLength(1);
  return containers[0]!;
}

/**
 * Metric names in a PromQL expression: identifiers left once strings, label matchers, range
 * selectors and grouping clauses are removed, minus functions, aggregators and keywords.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\boffset\s+[0-9a-z]+/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const keywords = new Set([
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
  const names: string[] = [];
  for (const match of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = stripped.slice((match.index ?? 0) + match[0].length);
    if (/^\s*\(/.test(rest)) continue; // a function or aggregation
    if (keywords.has(match[0].toLowerCase())) continue;
    names.push(match[0]);
  }
  return names;
}

function isDaemonMetric(name: string): boolean {
  if (DAEMON_METRICS.has(name)) return true;
  return DAEMON_HISTOGRAMS.some((base) =>
    HISTOGRAM_SUFFIXES.some((suffix) => name === base + suffix),
  );
}

/** The executable's path if it is on PATH, else undefined. */
function onPath(command: string): string | undefined {
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

describe('metricNames', () => {
  it('finds metric names and nothing else', () => {
    expect(
      metricNames(
        'sum without (instance, pod) (increase(hierarchy_refresh_total{status="failed",x="a{b}"}[15m])) > 0',
      ),
    ).toEqual(['hierarchy_refresh_total']);
    expect(metricNames('absent(up{job="hierarchy-db"} == 1)')).toEqual(['up']);
    expect(
      metricNames(
        'histogram_quantile(0.95, sum by (le) (rate(hierarchy_refresh_duration_seconds_bucket[5m]))) > on() group_left foo_bar',
      ),
    ).toEqual(['hierarchy_refresh_duration_seconds_bucket', 'foo_bar']);
  });
});

describe('Prometheus alert rules', () => {
  const rules = loadRules();
  const alerts = rules.filter((rule) => rule.alert !== undefined);

  it('has the alerts the operators rely on', () => {
    expect(alerts.map((rule) => rule.alert)).toEqual(
      expect.arrayContaining([
        'HierarchyViewStale',
        'HierarchyRefreshFailing',
        'HierarchyChangeBacklog',
        'HierarchyRefreshKeepsFailing',
        'HierarchyDatabaseUnreachable',
        'HierarchyDaemonNotReady',
        'HierarchyDaemonDown',
        'HierarchyDaemonAbsent',
      ]),
    );
  });

  it("uses only the daemon's metric names", () => {
    const used = rules.flatMap((rule) => metricNames(rule.expr));
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((name) => !isDaemonMetric(name))).toEqual([]);
  });

  it('names the daemon job hierarchy-db wherever it selects on a job', () => {
    for (const rule of rules) {
      for (const [, job] of rule.expr.matchAll(/\bjob\s*=~?\s*"([^"]*)"/g)) {
        expect(job, rule.alert).toBe('hierarchy-db');
      }
    }
  });

  it('alerts on staleness over a 300 s budget held for 5 minutes', () => {
    const stale = alerts.find((rule) => rule.alert === 'HierarchyViewStale')!;
    expect(stale.expr).toContain('hierarchy_view_staleness_seconds');
    expect(stale.expr).toMatch(/>\s*300\b/);
    expect(stale.for).toBe('5m');
    expect(stale.annotations?.['description']).toContain('budget of 300 s');
  });

  it('gives every alert a severity, a summary, a description and a CLI runbook', () => {
    for (const rule of alerts) {
      expect(['critical', 'warning', 'info'], rule.alert).toContain(rule.labels?.['severity']);
      expect(rule.annotations?.['summary'], rule.alert).toBeTruthy();
      expect(rule.annotations?.['description'], rule.alert).toBeTruthy();
      expect(rule.annotations?.['runbook'], rule.alert).toMatch(/`hierarchy-db [a-z]/);
    }
    const runbooks = alerts.map((rule) => rule.annotations?.['runbook'] ?? '').join('\n');
    expect(runbooks).toContain('`hierarchy-db status`');
    expect(runbooks).toMatch(/`hierarchy-db history --view [^`]+`/);
    expect(runbooks).toContain('`hierarchy-db refresh --force`');
  });

  it("has a promtool unit test for every alert, fed only with the daemon's metrics", () => {
    const unitTests = parse(readRepoFile(RULES_TEST_FILE)) as {
      rule_files: string[];
      tests: {
        input_series: { series: string }[];
        alert_rule_test: { alertname: string; exp_alerts: unknown[] }[];
      }[];
    };
    expect(unitTests.rule_files).toEqual(['hierarchy-db.rules.yml']);
    const cases = unitTests.tests.flatMap((test) => test.alert_rule_test);
    for (const rule of alerts) {
      const own = cases.filter((c) => c.alertname === rule.alert);
      // Each alert is shown both firing and quiet.
      expect(
        own.some((c) => c.exp_alerts.length > 0),
        `${rule.alert} fires in a test`,
      ).toBe(true);
      expect(
        own.some((c) => c.exp_alerts.length === 0),
        `${rule.alert} stays quiet in a test`,
      ).toBe(true);
    }
    const series = unitTests.tests.flatMap((test) =>
      test.input_series.map((input) => input.series.replace(/\{.*$/, '')),
    );
    expect(series.filter((name) => !isDaemonMetric(name))).toEqual([]);
  });

  const promtool = onPath('promtool');
  const promtoolReason = promtool
    ? ''
    : ' (skipped: promtool is not on PATH; `.ci/run` installs Debian package prometheus)';

  it.skipIf(!promtool)(`promtool check rules accepts the rules${promtoolReason}`, () => {
    const output = execFileSync(promtool!, ['check', 'rules', RULES_FILE], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
  });

  it.skipIf(!promtool)(`promtool test rules passes${promtoolReason}`, () => {
    const output = execFileSync(promtool!, ['test', 'rules', RULES_TEST_FILE], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(output).toContain('SUCCESS');
  });
});

describe('Kubernetes manifests', () => {
  it('parse as Kubernetes objects', () => {
    const manifests = loadManifests();
    expect(manifests.map((m) => m.kind).sort()).toEqual(['Deployment', 'Job', 'Service']);
    for (const manifest of manifests) {
      expect(manifest.apiVersion, manifest.kind).toMatch(/^(?:v1|apps\/v1|batch\/v1)$/);
      expect(manifest.metadata.name, manifest.kind).toMatch(/^hierarchy-db/);
    }
  });

  it('runs the daemon as 2 replicas with the documented command', () => {
    const deployment = manifestOfKind('Deployment');
    expect(deployment.spec.replicas).toBe(2);
    const container = onlyContainer(deployment);
    const args = [...(container.command ?? []), ...(container.args ?? [])];
    expect(args).toEqual([
      'daemon',
      '--schedule',
      '*/30 * * * * *',
      '--on-change',
      '--http-host',
      '0.0.0.0',
    ]);
    expect(container.ports).toEqual([
      expect.objectContaining({ name: 'metrics', containerPort: 9464 }),
    ]);
  });

  it('probes /healthz for liveness and /readyz for readiness on the metrics port', () => {
    const container = onlyContainer(manifestOfKind('Deployment'));
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
  });

  it('waits longer than --grace before killing a stopping daemon', () => {
    const deployment = manifestOfKind('Deployment');
    const args = onlyContainer(deployment).args ?? [];
    const graceAt = args.indexOf('--grace');
    const graceMs = graceAt >= 0 ? parseDuration(args[graceAt + 1]!, 'grace') : DEFAULT_GRACE_MS;
    const terminationGraceSeconds = deployment.spec.template?.spec.terminationGracePeriodSeconds;
    expect(terminationGraceSeconds).toBeGreaterThan(30);
    expect(terminationGraceSeconds! * 1000).toBeGreaterThan(graceMs);
  });

  it('runs both workloads non-root on a read-only root filesystem with resources set', () => {
    for (const manifest of [manifestOfKind('Deployment'), manifestOfKind('Job')]) {
      const pod = manifest.spec.template!.spec;
      const container = onlyContainer(manifest);
      expect(pod.securityContext?.runAsNonRoot, manifest.kind).toBe(true);
      expect(pod.securityContext?.runAsUser, manifest.kind).toBeGreaterThan(0);
      expect(container.securityContext?.readOnlyRootFilesystem, manifest.kind).toBe(true);
      expect(container.securityContext?.allowPrivilegeEscalation, manifest.kind).toBe(false);
      for (const key of ['requests', 'limits'] as const) {
        expect(container.resources?.[key]?.['cpu'], `${manifest.kind} ${key}`).toBeTruthy();
        expect(container.resources?.[key]?.['memory'], `${manifest.kind} ${key}`).toBeTruthy();
      }
      // A writable /tmp for libraries that want one (the CLI itself writes nothing).
      const tmp = container.volumeMounts?.find((mount) => mount.mountPath === '/tmp');
      expect(tmp, manifest.kind).toBeDefined();
      expect(pod.volumes?.find((volume) => volume.name === tmp?.name)?.emptyDir).toBeDefined();
    }
  });

  it('migrates in a bounded Job with DATABASE_URL from the same Secret as the daemon', () => {
    const job = manifestOfKind('Job');
    const container = onlyContainer(job);
    expect([...(container.command ?? []), ...(container.args ?? [])]).toEqual(['migrate', 'up']);
    expect(job.spec.backoffLimit).toBeGreaterThanOrEqual(0);
    expect(job.spec.activeDeadlineSeconds).toBeGreaterThan(0);
    const secretOf = (c: Container) =>
      c.env?.find((variable) => variable.name === 'DATABASE_URL')?.valueFrom?.secretKeyRef;
    expect(secretOf(container)).toBeDefined();
    expect(secretOf(onlyContainer(manifestOfKind('Deployment')))).toEqual(secretOf(container));
  });

  it('exposes the daemon pods on a metrics Service named after the scrape job', () => {
    const service = manifestOfKind('Service');
    const podLabels = manifestOfKind('Deployment').spec.template?.metadata?.labels ?? {};
    expect(service.metadata.name).toBe('hierarchy-db');
    expect(Object.keys(service.spec.selector ?? {}).length).toBeGreaterThan(0);
    expect(podLabels).toMatchObject(service.spec.selector ?? {});
    expect(service.spec.ports).toEqual([
      expect.objectContaining({ name: 'metrics', port: 9464, targetPort: 'metrics' }),
    ]);
  });
});

describe('Dockerfile', () => {
  const dockerfile = readRepoFile('deploy/Dockerfile');

  it('starts the bin that package.json declares, as the node user, exposing 9464', () => {
    const pkg = JSON.parse(readRepoFile('package.json')) as { bin: Record<string, string> };
    expect(dockerfile).toContain(`ENTRYPOINT ["node", "${pkg.bin['hierarchy-db']}"]`);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^EXPOSE 9464$/m);
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev\b/m);
  });

  it('copies only paths that exist in the repository (the build context is its root)', () => {
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((match) =>
      match[1]!.trim().split(/\s+/),
    );
    expect(sources).toEqual(
      expect.arrayContaining([
        'src/',
        'migrations/',
        'sql/',
        'package.json',
        'tsconfig.build.json',
      ]),
    );
    for (const source of sources) {
      expect(existsSync(join(REPO_ROOT, source)), source).toBe(true);
    }
  });
});
