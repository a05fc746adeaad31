#!/usr/bin/env node
// Writes deploy/kubernetes/base/prometheus-rule.yaml, the Prometheus Operator's PrometheusRule,
// from deploy/prometheus/hierarchy-db.rules.yml: the rules file stays the one source of the
// alerts (promtool checks and unit-tests it), the PrometheusRule carries its groups, comments
// included. Run it after editing the rules file:
//
//   node deploy/scripts/prometheus-rule.mjs           # rewrite the PrometheusRule
//   node deploy/scripts/prometheus-rule.mjs --check   # exit 1 if it is out of date
//
// test/deploy/manifests.test.ts fails when the two differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Document, isScalar, parseDocument, visit } from 'yaml';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RULES_FILE = 'deploy/prometheus/hierarchy-db.rules.yml';
export const PROMETHEUS_RULE_FILE = 'deploy/kubernetes/base/prometheus-rule.yaml';

const HEADER = [
  ' Generated from deploy/prometheus/hierarchy-db.rules.yml by deploy/scripts/prometheus-rule.mjs;',
  ' edit the rules file and run `node deploy/scripts/prometheus-rule.mjs`, never this file.',
  ' The rules file states their assumptions: the daemons are scraped as job="hierarchy-db", one',
  ' target per pod (service-monitor.yaml does that with the Prometheus Operator).',
].join('\n');

/** The PrometheusRule's text for the rules file's text. */
export function prometheusRuleYaml(rulesText) {
  const rules = parseDocument(rulesText);
  if (rules.errors.length > 0) throw rules.errors[0];
  const groups = rules.get('groups', true);
  if (!groups) throw new Error(`${RULES_FILE} has no groups`);
  const doc = new Document({
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'hierarchy-db',
      labels: {
        'app.kubernetes.io/name': 'hierarchy-db',
        'app.kubernetes.io/component': 'daemon',
      },
    },
    spec: {},
  });
  // A folded scalar (>-) whose text has line breaks (the multi-line exprs) is written as a literal
  // one (|-) with the same value: kustomize's YAML library (go-yaml v3) reads a folded scalar with
  // more-indented lines with one line break too many, so `kubectl kustomize` would not render the
  // rules exactly as written.
  visit(groups, {
    Scalar(_, node) {
      if (isScalar(node) && node.type === 'BLOCK_FOLDED' && String(node.value).includes('\n')) {
        node.type = 'BLOCK_LITERAL';
      }
    },
  });
  doc.setIn(['spec', 'groups'], groups);
  doc.commentBefore = HEADER;
  return doc.toString({ lineWidth: 100 });
}

function main(argv) {
  const expected = prometheusRuleYaml(readFileSync(ROOT + RULES_FILE, 'utf8'));
  if (argv.includes('--check')) {
    let actual = '';
    try {
      actual = readFileSync(ROOT + PROMETHEUS_RULE_FILE, 'utf8');
    } catch {}
    if (actual !== expected) {
      process.stderr.write(
        `${PROMETHEUS_RULE_FILE} is out of date: run node deploy/scripts/prometheus-rule.mjs\n`,
      );
      process.exit(1);
    }
    return;
  }
  writeFileSync(ROOT + PROMETHEUS_RULE_FILE, expected);
  process.stdout.write(`wrote ${PROMETHEUS_RULE_FILE}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main(process.argv.slice(2));
