import {
  PrometheusRule,
  ServiceMonitor,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';

/**
 * Schema checks of Kubernetes objects without an API server: the OpenAPI schemas of Kubernetes
 * (kubernetes-models) and of the Prometheus Operator's CRDs (@kubernetes-models/prometheus-operator),
 * compiled to JSON Schema validators. Those schemas accept unknown fields (Kubernetes' own
 * schemas do not forbid them, the API server drops or rejects them), so a misspelt
 * `readinesProbe` would pass; {@link validateObject} also reports every field that the validator
 * never looked up, as `kubectl apply --validate=strict` or kubeconform -strict would.
 */

/** A model class: its prototype's validate() runs the schema's validator on `this`. */
interface ModelClass {
  apiVersion: string;
  kind: string;
  prototype: { validate(): void };
}

/** The kinds the deploy kit may contain. Anything else is reported as unknown. */
const MODELS: ModelClass[] = [
  Deployment,
  Job,
  Service,
  ConfigMap,
  Secret,
  PodDisruptionBudget,
  ServiceMonitor,
  PrometheusRule,
];

/** `apiVersion/kind` of every kind {@link validateObject} knows. */
export const KNOWN_KINDS = MODELS.map((model) => `${model.apiVersion}/${model.kind}`);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * Wraps `value` so that every property the validator reads is recorded under its JSON pointer.
 * The compiled validators read each property their schema declares (`data.spec`, present or not)
 * and enumerate the keys of maps (labels, resources.limits); a key of an object that was never
 * read is one the schema does not know.
 */
function tracked(value: Json, pointer: string, reads: Map<string, Set<string>>): Json {
  if (value === null || typeof value !== 'object') return value;
  const cache = new Map<string, Json>();
  const record = (key: string) => {
    const keys = reads.get(pointer) ?? new Set<string>();
    reads.set(pointer, keys);
    keys.add(key);
  };
  return new Proxy(value as object, {
    get(target, key, receiver) {
      const child = Reflect.get(target, key, receiver) as Json;
      if (typeof key !== 'string') return child;
      if (Array.isArray(target)) {
        if (!/^\d+$/.test(key)) return child; // length, methods
      } else {
        record(key);
      }
      if (child === null || typeof child !== 'object') return child;
      if (!cache.has(key)) cache.set(key, tracked(child, `${pointer}/${key}`, reads));
      return cache.get(key) as Json;
    },
    ownKeys(target) {
      // Enumerating an object's keys (a map's additionalProperties) reads all of them.
      if (!Array.isArray(target)) {
        for (const key of Reflect.ownKeys(target)) if (typeof key === 'string') record(key);
      }
      return Reflect.ownKeys(target);
    },
  }) as Json;
}

/** Keys of `value`'s objects that the validator never read, as JSON pointers. */
function unreadFields(value: Json, pointer: string, reads: Map<string, Set<string>>): string[] {
  if (value === null || typeof value !== 'object') return [];
  if (Array.isArray(value)) {
    return value.flatMap((item, index) => unreadFields(item, `${pointer}/${index}`, reads));
  }
  const read = reads.get(pointer);
  // Not looked into at all: a free-form field (x-kubernetes-preserve-unknown-fields, or a schema
  // of any type); its contents are not the schema's business.
  if (!read) return [];
  return Object.entries(value).flatMap(([key, child]) =>
    read.has(key) ? unreadFields(child, `${pointer}/${key}`, reads) : [`${pointer}/${key}`],
  );
}

/**
 * Validates one Kubernetes object against the schema of its apiVersion and kind. Returns the
 * problems, one line each (empty when valid): schema errors, unknown fields, an unknown kind.
 */
export function validateObject(object: unknown): string[] {
  const { apiVersion, kind } = (object ?? {}) as { apiVersion?: unknown; kind?: unknown };
  const model = MODELS.find((m) => m.apiVersion === apiVersion && m.kind === kind);
  if (!model) {
    return [`no schema for apiVersion ${String(apiVersion)} kind ${String(kind)}`];
  }
  const reads = new Map<string, Set<string>>();
  const problems: string[] = [];
  try {
    // validate() reads `this`: hand it the tracked object instead of a model's copy.
    model.prototype.validate.call(tracked(object as Json, '', reads));
  } catch (error) {
    problems.push((error as Error).message);
  }
  for (const field of unreadFields(object as Json, '', reads)) {
    problems.push(`unknown field ${field}`);
  }
  return problems;
}
