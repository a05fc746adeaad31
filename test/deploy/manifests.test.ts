import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { parseDuration } from '../../src/config/duration.ts';
import { DaemonMetrics } from '../../src/daemon/daemon-metrics.ts';
import { HIERARCHY_VIEWS } from '../../src/refresh/views.ts';
import { parsePrometheusText } from '../daemon/daemon-process.ts';
import { KNOWN_KINDS, validateObject } from './kubernetes-schema.ts';
import {
  DAEMON_METRICS,
  isDaemonMetric,
  labelProblems,
  METRIC_LABELS,
  metricNames,
  onPath,
  TARGET_LABELS,
} from './promql.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RULES_FILE = 'deploy/prometheus/hierarchy-db.rules.yml';
const RULES_TEST_FILE = 'deploy/prometheus/hierarchy-db.rules.test.yml';
const K8S_DIR = 'deploy/kubernetes';
const BASE_DIR = `${K8S_DIR}/base`;
const OVERLAY_DIR = `${K8S_DIR}/overlays/example`;
const DASHBOARD_FILE = 'deploy/grafana/hierarchy-db.dashboard.json';
/** The daemon's `--grace` default (README, "Configuration"). */
const DEFAULT_GRACE_MS = 30_000;
/** The Secret of the daemon's login role (deploy/sql/daemon-login-role.sql). */
const DAEMON_SECRET = 'hierarchy-db-daemon';

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
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    runAsNonRoot?: boolean;
    capabilities?: { drop?: string[] };
  };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  terminationGracePeriodSeconds?: number;
  automountServiceAccountToken?: boolean;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  volumes?: { name: string; emptyDir?: object }[];
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec: {
    replicas?: number;
    backoffLimit?: number;
    activeDeadlineSeconds?: number;
    minAvailable?: number | string;
    maxUnavailable?: number | string;
    jobLabel?: string;
    namespaceSelector?: object;
    endpoints?: { port?: string; path?: string; interval?: string }[];
    groups?: unknown;
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

/** The files the base's kustomization.yaml lists. */
function baseResources(): string[] {
  const kustomization = parse(readRepoFile(`${BASE_DIR}/kustomization.yaml`)) as {
    resources: string[];
  };
  return kustomization.resources;
}

/** Parses YAML documents (a file's or kubectl's output), failing on any YAML error. */
function parseManifests(text: string, source: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => {
      expect(doc.errors, source).toEqual([]);
      return doc.toJS() as Manifest | null;
    })
    .filter((doc): doc is Manifest => doc !== null);
}

/** Every object of the base, read from its files (no kustomize). */
function loadManifests(): Manifest[] {
  return baseResources().flatMap((file) =>
    parseManifests(readRepoFile(`${BASE_DIR}/${file}`), file),
  );
}

function manifestOfKind(kind: string, manifests = loadManifests()): Manifest {
  const matches = manifests.filter((m) => m.kind === kind);
  expect(matches, kind).toHaveLength(1);
  return matches[0]!;
}

function onlyContainer(manifest: Manifest): Container {
  const containers = manifest.spec.template?.spec.containers ?? [];
  expect(containers).toHaveLength(1);
  return containers[0]!;
}

function matchLabels(manifest: Manifest): Record<string, string> {
  const selector = manifest.spec.selector as { matchLabels?: Record<string, string> } | undefined;
  return selector?.matchLabels ?? {};
}

function secretOf(container: Container) {
  return container.env?.find((variable) => variable.name === 'DATABASE_URL')?.valueFrom
    ?.secretKeyRef;
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

  it('selects and groups only on labels the metrics have', () => {
    for (const rule of rules) expect(labelProblems(rule.expr), rule.alert).toEqual([]);
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

describe('Kubernetes base (deploy/kubernetes/base)', () => {
  it('lists every file of the base in kustomization.yaml, and nothing is left outside it', () => {
    const files = readdirSync(join(REPO_ROOT, BASE_DIR)).filter((f) => f !== 'kustomization.yaml');
    expect([...baseResources()].sort()).toEqual(files.sort());
    // The manifests live in the base only: no copy next to it to drift.
    const stray = readdirSync(join(REPO_ROOT, K8S_DIR)).filter((f) => /\.ya?ml$/.test(f));
    expect(stray).toEqual([]);
  });

  it('holds one object per file, each valid against the Kubernetes or Prometheus Operator schema', () => {
    for (const file of baseResources()) {
      const objects = parseManifests(readRepoFile(`${BASE_DIR}/${file}`), file);
      expect(objects, file).toHaveLength(1);
      expect(validateObject(objects[0]), file).toEqual([]);
    }
    expect(
      loadManifests()
        .map((m) => m.kind)
        .sort(),
    ).toEqual([
      'Deployment',
      'Job',
      'PodDisruptionBudget',
      'PrometheusRule',
      'Service',
      'ServiceMonitor',
    ]);
  });

  it('labels every object app.kubernetes.io/name: hierarchy-db and names it hierarchy-db*', () => {
    for (const manifest of loadManifests()) {
      expect(manifest.metadata.name, manifest.kind).toMatch(/^hierarchy-db/);
      expect(manifest.metadata.labels?.['app.kubernetes.io/name'], manifest.kind).toBe(
        'hierarchy-db',
      );
      // Namespaces come from `kubectl -n` or an overlay, never from the base.
      expect(manifest.metadata.namespace, manifest.kind).toBeUndefined();
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

  it('probes /healthz for startup and liveness and /readyz for readiness on the metrics port', () => {
    const container = onlyContainer(manifestOfKind('Deployment'));
    expect(container.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
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
      expect(pod.automountServiceAccountToken, manifest.kind).toBe(false);
      expect(container.securityContext?.readOnlyRootFilesystem, manifest.kind).toBe(true);
      expect(container.securityContext?.allowPrivilegeEscalation, manifest.kind).toBe(false);
      expect(container.securityContext?.capabilities?.drop, manifest.kind).toEqual(['ALL']);
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

  it("migrates in a bounded Job with the owner's Secret, and runs the daemon with its own", () => {
    const job = manifestOfKind('Job');
    const container = onlyContainer(job);
    expect([...(container.command ?? []), ...(container.args ?? [])]).toEqual(['migrate', 'up']);
    expect(job.spec.backoffLimit).toBeGreaterThanOrEqual(0);
    expect(job.spec.activeDeadlineSeconds).toBeGreaterThan(0);
    const owner = secretOf(container);
    const daemon = secretOf(onlyContainer(manifestOfKind('Deployment')));
    expect(owner).toEqual({ name: 'hierarchy-db-owner', key: 'DATABASE_URL' });
    // Least privilege: the daemon's role holds hierarchy_reader and hierarchy_refresher only.
    expect(daemon).toEqual({ name: DAEMON_SECRET, key: 'DATABASE_URL' });
    expect(daemon?.name).not.toBe(owner?.name);
    expect(readRepoFile(`${K8S_DIR}/README.md`)).toContain(
      `kubectl create secret generic ${DAEMON_SECRET}`,
    );
  });

  it('exposes the daemon pods on a metrics Service', () => {
    const service = manifestOfKind('Service');
    const podLabels = manifestOfKind('Deployment').spec.template?.metadata?.labels ?? {};
    expect(service.metadata.name).toBe('hierarchy-db');
    expect(Object.keys(service.spec.selector ?? {}).length).toBeGreaterThan(0);
    expect(podLabels).toMatchObject(service.spec.selector ?? {});
    expect(service.spec.ports).toEqual([
      expect.objectContaining({ name: 'metrics', port: 9464, targetPort: 'metrics' }),
    ]);
  });

  it('keeps one daemon running through voluntary disruptions, and lets the other go', () => {
    const manifests = loadManifests();
    const pdb = manifestOfKind('PodDisruptionBudget', manifests);
    const deployment = manifestOfKind('Deployment', manifests);
    const podLabels = deployment.spec.template?.metadata?.labels ?? {};
    expect(Object.keys(matchLabels(pdb)).length).toBeGreaterThan(0);
    expect(podLabels).toMatchObject(matchLabels(pdb));
    // It must not select the migrate Job's pods.
    const jobLabels = manifestOfKind('Job', manifests).spec.template?.metadata?.labels ?? {};
    expect(jobLabels).not.toMatchObject(matchLabels(pdb));
    const replicas = deployment.spec.replicas!;
    const allowed =
      pdb.spec.minAvailable !== undefined
        ? replicas - Number(pdb.spec.minAvailable)
        : Number(pdb.spec.maxUnavailable);
    expect(allowed).toBe(1);
  });

  it('scrapes the metrics port of the Service as job hierarchy-db with a ServiceMonitor', () => {
    const manifests = loadManifests();
    const monitor = manifestOfKind('ServiceMonitor', manifests);
    const service = manifestOfKind('Service', manifests);
    expect(Object.keys(matchLabels(monitor)).length).toBeGreaterThan(0);
    expect(service.metadata.labels).toMatchObject(matchLabels(monitor));
    // The operator names the job after the Service's jobLabel label, else after the Service.
    const job = monitor.spec.jobLabel
      ? service.metadata.labels?.[monitor.spec.jobLabel]
      : service.metadata.name;
    expect(job).toBe('hierarchy-db');
    for (const rule of loadRules()) {
      for (const [, ruleJob] of rule.expr.matchAll(/\bjob\s*=~?\s*"([^"]*)"/g)) {
        expect(ruleJob, rule.alert).toBe(job);
      }
    }
    const servicePorts = (service.spec.ports ?? []).map((port) => port.name);
    expect(monitor.spec.endpoints).toEqual([
      expect.objectContaining({ port: 'metrics', path: '/metrics' }),
    ]);
    expect(servicePorts).toContain(monitor.spec.endpoints?.[0]?.port);
    // Same namespace as the Service (no namespaceSelector).
    expect(monitor.spec.namespaceSelector).toBeUndefined();
  });

  it('carries exactly the groups of the rules file in the PrometheusRule', () => {
    const rule = manifestOfKind('PrometheusRule');
    const rulesFile = parse(readRepoFile(RULES_FILE)) as { groups: unknown };
    expect(rule.spec.groups).toEqual(rulesFile.groups);
  });

  it('has a PrometheusRule file that deploy/scripts/prometheus-rule.mjs would write unchanged', () => {
    // Comments and layout too: the file is generated, never edited by hand.
    execFileSync(process.execPath, ['deploy/scripts/prometheus-rule.mjs', '--check'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  });
});

describe('Kubernetes schema validation (test/deploy/kubernetes-schema.ts)', () => {
  const deployment = () =>
    structuredClone(manifestOfKind('Deployment')) as unknown as {
      spec: { template: { spec: { containers: Record<string, unknown>[] } } };
    };

  it('knows every kind of the base', () => {
    for (const manifest of loadManifests()) {
      expect(KNOWN_KINDS).toContain(`${manifest.apiVersion}/${manifest.kind}`);
    }
    expect(validateObject({ apiVersion: 'v1', kind: 'Pod' })).toEqual([
      'no schema for apiVersion v1 kind Pod',
    ]);
  });

  it('reports a wrong type, a missing required field and a misspelt field', () => {
    const wrongType = deployment();
    wrongType.spec.template.spec.containers[0]!['ports'] = [{ containerPort: '9464' }];
    expect(validateObject(wrongType).join('\n')).toMatch(/containerPort must be integer/);
    const missing = deployment();
    delete missing.spec.template.spec.containers[0]!['name'];
    expect(validateObject(missing).join('\n')).toMatch(/must have required property name/);
    const misspelt = deployment();
    const container = misspelt.spec.template.spec.containers[0]!;
    container['readinesProbe'] = container['readinessProbe'];
    delete container['readinessProbe'];
    expect(validateObject(misspelt)).toEqual([
      'unknown field /spec/template/spec/containers/0/readinesProbe',
    ]);
  });

  it('checks the Prometheus Operator kinds too', () => {
    const monitor = structuredClone(manifestOfKind('ServiceMonitor')) as unknown as {
      spec: { endpoints: Record<string, unknown>[] };
    };
    monitor.spec.endpoints[0]!['interval'] = 'thirty seconds';
    monitor.spec.endpoints[0]!['prot'] = 'metrics';
    const problems = validateObject(monitor).join('\n');
    expect(problems).toMatch(/interval must match pattern/);
    expect(problems).toMatch(/unknown field \/spec\/endpoints\/0\/prot/);
  });
});

const kubectl = onPath('kubectl');
const requireKubectl = process.env['HIERARCHY_DB_REQUIRE_KUBECTL'] === '1';
const kubectlReason = kubectl
  ? ''
  : requireKubectl
    ? ' (kubectl is not on PATH, and HIERARCHY_DB_REQUIRE_KUBECTL=1 requires it)'
    : ' (skipped: kubectl is not on PATH; set HIERARCHY_DB_REQUIRE_KUBECTL=1 to fail instead)';

/** `kubectl kustomize DIR`, parsed. */
function kustomize(dir: string): Manifest[] {
  if (!kubectl) throw new Error(`kubectl is not on PATH${kubectlReason}`);
  const text = execFileSync(kubectl, ['kustomize', dir], { cwd: REPO_ROOT, encoding: 'utf8' });
  return parseManifests(text, `kubectl kustomize ${dir}`);
}

describe('kustomize render (kubectl kustomize)', () => {
  const run = kubectl || requireKubectl ? it : it.skip;

  run(`renders the base to the objects of its files, each valid${kubectlReason}`, () => {
    const rendered = kustomize(BASE_DIR);
    const byKey = (m: Manifest) => `${m.kind}/${m.metadata.name}`;
    const sorted = (list: Manifest[]) => [...list].sort((a, b) => byKey(a).localeCompare(byKey(b)));
    expect(sorted(rendered)).toEqual(sorted(loadManifests()));
    for (const manifest of rendered) expect(validateObject(manifest), byKey(manifest)).toEqual([]);
  });

  run(`renders the example overlay with its namespace, image and labels${kubectlReason}`, () => {
    const overlay = parse(readRepoFile(`${OVERLAY_DIR}/kustomization.yaml`)) as {
      namespace: string;
      images: { name: string; newName: string; newTag: string }[];
    };
    const rendered = kustomize(OVERLAY_DIR);
    expect(rendered.map((m) => m.kind).sort()).toEqual(
      loadManifests()
        .map((m) => m.kind)
        .sort(),
    );
    const image = `${overlay.images[0]!.newName}:${overlay.images[0]!.newTag}`;
    for (const manifest of rendered) {
      expect(validateObject(manifest), manifest.kind).toEqual([]);
      expect(manifest.metadata.namespace, manifest.kind).toBe(overlay.namespace);
      if (manifest.spec.template) expect(onlyContainer(manifest).image).toBe(image);
      if (manifest.apiVersion.startsWith('monitoring.coreos.com/')) {
        expect(manifest.metadata.labels?.['release'], manifest.kind).toBeTruthy();
      }
    }
  });
});

interface DashboardTarget {
  refId?: string;
  expr?: string;
  legendFormat?: string;
  datasource?: { type?: string; uid?: string };
}
interface DashboardPanel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { h: number; w: number; x: number; y: number };
  targets?: DashboardTarget[];
  panels?: DashboardPanel[];
}
interface Dashboard {
  schemaVersion?: number;
  uid?: string;
  title?: string;
  templating?: {
    list: {
      name: string;
      type: string;
      query?: string | { query?: string };
      definition?: string;
    }[];
  };
  panels?: DashboardPanel[];
}

/** Grafana's interval macros, replaced by a duration so that promtool can parse the exprs. */
function withoutGrafanaMacros(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$\{__rate_interval\}/g, '5m')
    .replace(/\$__interval|\$\{__interval\}/g, '1m')
    .replace(/\$__range|\$\{__range\}/g, '1h');
}

describe('Grafana dashboard (deploy/grafana/hierarchy-db.dashboard.json)', () => {
  const text = readRepoFile(DASHBOARD_FILE);
  const dashboard = () => JSON.parse(text) as Dashboard;
  const panels = () =>
    (dashboard().panels ?? []).flatMap((panel) => [panel, ...(panel.panels ?? [])]);
  /** Every query of the dashboard: the panels' targets and the template variables'. */
  const queries = () => {
    const fromPanels = panels().flatMap((panel) =>
      (panel.targets ?? []).map((target) => ({
        where: `panel ${panel.id} (${panel.title}) ${target.refId}`,
        expr: target.expr ?? '',
        legend: target.legendFormat,
      })),
    );
    const fromVariables = (dashboard().templating?.list ?? [])
      .filter((variable) => variable.type === 'query')
      .map((variable) => {
        const query =
          typeof variable.query === 'string' ? variable.query : (variable.query?.query ?? '');
        // label_values(SELECTOR, label): the selector is PromQL.
        const match = /^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)$/.exec(query);
        expect(match, `variable ${variable.name}: ${query}`).not.toBeNull();
        return { where: `variable ${variable.name}`, expr: match![1]!, legend: `{{${match![2]}}}` };
      });
    return [...fromPanels, ...fromVariables];
  };

  it('is a dashboard JSON of schema version 39 or so, with unique panel ids and a layout', () => {
    const doc = dashboard();
    expect(doc.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(doc.schemaVersion).toBeLessThanOrEqual(41);
    expect(doc.uid).toBe('hierarchy-db');
    const ids = panels().map((panel) => panel.id);
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels()) {
      expect(panel.gridPos, `panel ${panel.id}`).toBeDefined();
      expect(panel.title, `panel ${panel.id}`).toBeTruthy();
      expect(panel.gridPos!.x + panel.gridPos!.w, `panel ${panel.id}`).toBeLessThanOrEqual(24);
    }
  });

  it('queries the data source chosen in its prometheus `datasource` variable', () => {
    const variables = dashboard().templating?.list ?? [];
    expect(variables).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
    );
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax
    const chosen = { type: 'prometheus', uid: '${datasource}' };
    for (const panel of panels()) {
      if (panel.type === 'row') continue;
      expect(panel.datasource, `panel ${panel.id}`).toEqual(chosen);
      expect(panel.targets?.length, `panel ${panel.id}`).toBeGreaterThan(0);
      const refIds = panel.targets!.map((target) => target.refId);
      expect(new Set(refIds).size, `panel ${panel.id} refIds`).toBe(refIds.length);
      for (const target of panel.targets!) {
        expect(target.datasource, `panel ${panel.id} ${target.refId}`).toEqual(chosen);
      }
    }
  });

  it("uses only the daemon's metrics, with labels they have", () => {
    const all = queries();
    expect(all.length).toBeGreaterThan(0);
    for (const query of all) {
      const names = metricNames(query.expr);
      expect(names.length, query.where).toBeGreaterThan(0);
      expect(
        names.filter((name) => !isDaemonMetric(name)),
        query.where,
      ).toEqual([]);
      expect(labelProblems(query.expr), query.where).toEqual([]);
      // Legends name labels the result keeps: those of a `by` clause when there is one.
      const grouping = [...query.expr.matchAll(/\bby\s*\(([^)]*)\)/g)].flatMap((m) =>
        m[1]!.split(',').map((label) => label.trim()),
      );
      const kept =
        grouping.length > 0
          ? grouping
          : [...names.flatMap((name) => METRIC_LABELS[name] ?? []), ...TARGET_LABELS];
      for (const [, label] of (query.legend ?? '').matchAll(/\{\{\s*([A-Za-z_]\w*)\s*\}\}/g)) {
        expect(kept, `${query.where} legend {{${label}}}`).toContain(label);
      }
      // The same job as the alert rules and the ServiceMonitor.
      for (const [, job] of query.expr.matchAll(/\bjob\s*=~?\s*"([^"]*)"/g)) {
        expect(job, query.where).toBe('hierarchy-db');
      }
    }
  });

  it('has the panels an operator needs: every daemon metric is shown', () => {
    const used = new Set(
      queries().flatMap((query) =>
        metricNames(query.expr).map((name) => name.replace(/_(?:bucket|sum|count)$/, '')),
      ),
    );
    for (const metric of DAEMON_METRICS) expect(used, metric).toContain(metric);
    const exprs = queries().map((query) => query.expr);
    expect(exprs.some((expr) => /histogram_quantile\(0\.9\d*,/.test(expr))).toBe(true);
    expect(exprs.some((expr) => /by \(view, status\)/.test(expr))).toBe(true);
    expect(exprs.some((expr) => /by \(view, method\)/.test(expr))).toBe(true);
  });

  const promtool = onPath('promtool');
  const promtoolReason = promtool
    ? ''
    : ' (skipped: promtool is not on PATH; `.ci/run` installs Debian package prometheus)';

  it.skipIf(!promtool)(`has exprs that promtool parses as PromQL${promtoolReason}`, () => {
    // Each expr as a recording rule: `promtool check rules` parses every one of them.
    const rules = queries().map((query, index) => ({
      record: `hierarchy_dashboard:query_${index}`,
      expr: withoutGrafanaMacros(query.expr),
    }));
    const dir = mkdtempSync(join(tmpdir(), 'hierarchy-db-dashboard-'));
    try {
      const file = join(dir, 'dashboard.rules.yml');
      writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }));
      const output = execFileSync(promtool!, ['check', 'rules', file], { encoding: 'utf8' });
      expect(output).toContain(`SUCCESS: ${rules.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('metric and label tables (test/deploy/promql.ts)', () => {
  it("match what the daemon's registry exports", async () => {
    const metrics = new DaemonMetrics();
    // The gauges read from the database have samples once a status was read.
    metrics.recordStatus(
      HIERARCHY_VIEWS.map((view) => ({
        view,
        populated: true,
        staleness_ms: 0,
        pending_changes: 0,
        last_refreshed_at: new Date(),
      })),
    );
    const { samples } = parsePrometheusText(await metrics.render());
    const exported = new Map<string, Set<string>>();
    for (const sample of samples) {
      const labels = exported.get(sample.name) ?? new Set<string>();
      for (const label of Object.keys(sample.labels)) labels.add(label);
      exported.set(sample.name, labels);
    }
    const expected = Object.fromEntries(
      Object.entries(METRIC_LABELS)
        .filter(([name]) => name !== 'up')
        .map(([name, labels]) => [name, [...labels].sort()]),
    );
    expect(
      Object.fromEntries([...exported].map(([name, labels]) => [name, [...labels].sort()])),
    ).toEqual(expected);
  });

  it('finds the labels of selectors and clauses', () => {
    expect(labelProblems('sum by (view, status) (rate(hierarchy_refresh_total[5m]))')).toEqual([]);
    expect(labelProblems('hierarchy_db_up{view="x"}')).toEqual([
      'hierarchy_db_up has no label view',
    ]);
    expect(labelProblems('max by (method) (hierarchy_view_staleness_seconds)')).toEqual([
      'by (method): no metric here has method',
    ]);
    expect(labelProblems('up{job="hierarchy-db", namespace=~"$namespace"}')).toEqual([]);
  });
});

describe('Dockerfile (deploy/Dockerfile, checked statically: there is no Docker engine here)', () => {
  const dockerfile = readRepoFile('deploy/Dockerfile');
  /** Instructions, continuation lines joined, comments dropped. */
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [, keyword, rest] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
      return { keyword: (keyword ?? line).toUpperCase(), args: rest ?? '' };
    });
  const stages = instructions.reduce<{ from: string; body: typeof instructions }[]>(
    (list, instruction) => {
      if (instruction.keyword === 'FROM') list.push({ from: instruction.args, body: [] });
      else list.at(-1)?.body.push(instruction);
      return list;
    },
    [],
  );
  const finalStage = stages.at(-1)!;
  const pkg = JSON.parse(readRepoFile('package.json')) as { bin: Record<string, string> };
  /** End of security support of each Node.js LTS line (the Node.js release schedule). */
  const NODE_LTS_END: Record<number, string> = {
    20: '2026-04-30',
    22: '2027-04-30',
    24: '2028-04-30',
  };

  it('builds every stage on one supported Node.js LTS slim image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const images = stages.map((stage) => stage.from.split(/\s+/)[0]!);
    expect(new Set(images).size, images.join(', ')).toBe(1);
    const match = /^node:(\d+)(?:\.\d+){0,2}-([a-z]+)-slim(?:@sha256:[a-f0-9]{64})?$/.exec(
      images[0]!,
    );
    expect(match, images[0]).not.toBeNull();
    const major = Number(match![1]);
    expect(major % 2, `node ${major} is not an LTS line`).toBe(0);
    const end = NODE_LTS_END[major];
    expect(end, `node ${major}: add its end of life to NODE_LTS_END`).toBeDefined();
    expect(
      Date.now() < Date.parse(`${end}T23:59:59Z`),
      `node ${major} reached its end of life on ${end}: move the image to a supported LTS line`,
    ).toBe(true);
    expect(['bookworm', 'trixie']).toContain(match![2]);
  });

  it('starts the bin that package.json declares in exec form, as a non-root user, exposing 9464', () => {
    const entrypoints = finalStage.body.filter((i) => i.keyword === 'ENTRYPOINT');
    expect(entrypoints).toHaveLength(1);
    // Exec form: a JSON array, so no shell stands between the runtime's signals and the CLI.
    const entrypoint = JSON.parse(entrypoints[0]!.args) as string[];
    expect(Array.isArray(entrypoint)).toBe(true);
    const cli = ['node', pkg.bin['hierarchy-db']];
    expect([cli, ['/usr/bin/tini', '--', ...cli]]).toContainEqual(entrypoint);
    if (entrypoint[0] === '/usr/bin/tini') {
      expect(finalStage.body.some((i) => i.keyword === 'RUN' && /\btini\b/.test(i.args))).toBe(
        true,
      );
    }
    const users = finalStage.body.filter((i) => i.keyword === 'USER').map((i) => i.args);
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!.split(':')[0]!;
    expect(['root', '0']).not.toContain(user);
    // The manifests' runAsUser is the node image's `node` user.
    expect(user).toBe('node');
    expect(finalStage.body).toContainEqual({ keyword: 'EXPOSE', args: '9464' });
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev\b/m);
    expect(finalStage.body.some((i) => i.keyword === 'RUN' && /\bnpm\b/.test(i.args))).toBe(false);
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

  it('has a .dockerignore that keeps node_modules, dist, .git and tests out of the context, and nothing the build copies', () => {
    const patterns = readRepoFile('.dockerignore')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
    expect(
      patterns.some((p) => p.startsWith('!')),
      'no exceptions',
    ).toBe(false);
    // A pattern as Docker reads it: relative to the context root, * within a segment, ** across.
    const toRegExp = (pattern: string) => {
      const body = pattern
        .replace(/^\/+|\/+$/g, '')
        .split('**/')
        .map((part) =>
          part
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '[^/]*')
            .replace(/\?/g, '[^/]'),
        )
        .join('(?:.*/)?');
      return new RegExp(`^${body}(?:/.*)?$`);
    };
    const ignored = (path: string) => patterns.some((p) => toRegExp(p).test(path));
    for (const path of ['node_modules', 'node_modules/pg/package.json', 'dist', '.git', 'test']) {
      expect(ignored(path), path).toBe(true);
    }
    expect(ignored('src/node_modules/x'), 'nested node_modules').toBe(true);
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((match) =>
      match[1]!.trim().split(/\s+/),
    );
    for (const source of copied) {
      expect(ignored(source.replace(/\/$/, '')), source).toBe(false);
    }
    expect(ignored('src/cli/main.ts')).toBe(false);
  });
});
