import { REFRESH_LOCK_KEY } from '../refresh/refresh-lock.ts';
import type { CanonicalObjects } from './canonical-objects.ts';
import type { CheckResult, Repair } from './repairs.ts';
import type { SchemaFacts } from './schema-inspector.ts';
import {
  concurrentIndexSql,
  plainIndexSql,
  quoteIdent,
  quoteLiteral,
  retargetFunction,
} from './sql-text.ts';

/** One step of a repair, as it runs and as `--dry-run` prints it. */
export interface RepairAction {
  /** What it does, e.g. `rebuild materialized view mv_descendant_counts`. */
  description: string;
  /** The failed checks it answers. */
  reasons: string[];
  /** All statements in one transaction; otherwise each on its own (CONCURRENTLY builds). */
  transactional: boolean;
  statements: string[];
  /** Statements to run instead when PostgreSQL says the first way is not supported here. */
  fallback?: string[];
  /** A failed CONCURRENTLY build leaves an invalid index behind: drop it if it is invalid. */
  cleanupInvalidIndex?: string;
}

/** What `repair` will do, and the failures it must leave to someone else. */
export interface RepairPlan {
  actions: RepairAction[];
  /** Failed checks no repair answers (tables, extensions, constraints, migrations). */
  unrepairable: CheckResult[];
}

/** Options for {@link planRepairs}. */
export interface RepairPlanOptions {
  /** `lock_timeout` of each step; 0 = wait indefinitely. */
  lockTimeoutMs: number;
  /** The role `repair` runs as: objects it creates are given back to the owner of entities. */
  currentUser: string;
}

const ORDER: Repair['kind'][] = [
  'replace-function',
  'revoke-public',
  'set-owner',
  'recreate-trigger',
  'enable-trigger',
  'rebuild-view',
  'populate-view',
  'recreate-index',
  'create-index',
  'reindex',
  'grants',
];

/**
 * Turns failed checks into repair steps, in dependency order: functions (the trigger and the
 * views' refresh need them), triggers, views (rebuilt with their indexes), remaining indexes,
 * then grants.
 */
export function planRepairs(
  checks: CheckResult[],
  facts: SchemaFacts,
  canonical: CanonicalObjects,
  options: RepairPlanOptions,
): RepairPlan {
  const failed = checks.filter((c) => !c.ok);
  const byKey = new Map<string, { repair: Repair; reasons: string[] }>();
  for (const check of failed) {
    for (const repair of check.repairs) {
      const key = JSON.stringify(repair);
      const entry = byKey.get(key) ?? { repair, reasons: [] };
      entry.reasons.push(`${check.name}: ${check.detail}`);
      byKey.set(key, entry);
    }
  }
  const rebuilt = new Set(
    [...byKey.values()].flatMap((e) => (e.repair.kind === 'rebuild-view' ? [e.repair.view] : [])),
  );
  const viewOfIndex = new Map(
    canonical.views.flatMap((v) => v.indexes.map((i) => [i.name, v.name] as const)),
  );
  // Recreated objects start without grants; and ALTER ... OWNER folds a role's privileges into
  // the owner's when that role was the owner, so giving an object back loses them too.
  const needGrants =
    facts.roles.length > 0 &&
    (rebuilt.size > 0 ||
      [...byKey.values()].some(
        (e) =>
          e.repair.kind === 'set-owner' ||
          (e.repair.kind === 'replace-function' &&
            (e.repair.missing || e.repair.dropFirst !== null)),
      ));
  if (needGrants && ![...byKey.values()].some((e) => e.repair.kind === 'grants')) {
    byKey.set('grants', {
      repair: { kind: 'grants' },
      reasons: ['privileges of recreated objects'],
    });
  }
  const planner = new Planner(facts, canonical, options);
  const entries = [...byKey.values()]
    // Rebuilding a view recreates its indexes, data and owner.
    .filter(({ repair }) => {
      if (repair.kind === 'populate-view') return !rebuilt.has(repair.view);
      if (repair.kind === 'set-owner' && repair.objectType === 'MATERIALIZED VIEW') {
        return !rebuilt.has(repair.object);
      }
      if (
        repair.kind === 'create-index' ||
        repair.kind === 'recreate-index' ||
        repair.kind === 'reindex'
      ) {
        const view = viewOfIndex.get(repair.index);
        return view === undefined || !rebuilt.has(view);
      }
      return true;
    })
    .sort((a, b) => ORDER.indexOf(a.repair.kind) - ORDER.indexOf(b.repair.kind));
  return {
    actions: entries.map(({ repair, reasons }) => ({ ...planner.action(repair), reasons })),
    unrepairable: failed.filter((c) => c.repairs.length === 0),
  };
}

class Planner {
  readonly #facts: SchemaFacts;
  readonly #canonical: CanonicalObjects;
  readonly #options: RepairPlanOptions;
  readonly #schema: string;
  readonly #owner: string | null;

  constructor(facts: SchemaFacts, canonical: CanonicalObjects, options: RepairPlanOptions) {
    this.#facts = facts;
    this.#canonical = canonical;
    this.#options = options;
    this.#schema = facts.quotedSchema;
    this.#owner = facts.relations.entities?.owner ?? null;
  }

  #qualified(name: string): string {
    return `${this.#schema}.${quoteIdent(name)}`;
  }

  #lockTimeout(local: boolean): string {
    return `SET ${local ? 'LOCAL ' : ''}lock_timeout = '${this.#options.lockTimeoutMs}ms'`;
  }

  /** `ALTER ... OWNER TO` the owner of entities, when `repair` runs as someone else. */
  #giveBack(objectType: string, object: string): string[] {
    return this.#owner && this.#owner !== this.#options.currentUser
      ? [`ALTER ${objectType} ${object} OWNER TO ${quoteIdent(this.#owner)}`]
      : [];
  }

  /**
   * Writes made while change tracking was off or wrong were never recorded, so no view knows
   * it misses them. Record one change now, dated when the oldest view's data was read: every
   * unrecorded write happened after that (an earlier one would be in the data), so staleness
   * is over-estimated, never under-estimated, until the next refresh — which the NOTIFY asks
   * the daemon for.
   */
  #markViewsStale(): string[] {
    if (!this.#facts.relations.hierarchy_changes || !this.#facts.relations.hierarchy_view_state) {
      return [];
    }
    return [
      `INSERT INTO ${this.#qualified('hierarchy_changes')} (xid, changed_at)
  SELECT pg_current_xact_id(), COALESCE(min(s.data_as_of), clock_timestamp())
    FROM ${this.#qualified('hierarchy_view_state')} s
  ON CONFLICT (xid) DO NOTHING`,
      `SELECT pg_notify('hierarchy_changed', pg_current_xact_id()::text)`,
    ];
  }

  /**
   * Brackets a (re)build of `view` the way refresh_hierarchy_views() does: the snapshot is
   * recorded before the build, which reads with a snapshot taken at that moment or later, so
   * every change the recorded snapshot saw is in the new data; a change it did not see stays
   * pending. Under the refresh lock, so a concurrent refresh skips instead of racing the build.
   */
  #viewStateAround(view: string, build: string[]): string[] {
    const lock = `SELECT pg_advisory_xact_lock(${REFRESH_LOCK_KEY})`;
    if (!this.#facts.relations.hierarchy_view_state) return [lock, ...build];
    const state = this.#qualified('hierarchy_view_state');
    return [
      lock,
      `INSERT INTO ${state} AS s (view_name, snapshot, data_as_of)
  VALUES (${quoteLiteral(view)}, pg_current_snapshot(), clock_timestamp())
  ON CONFLICT (view_name) DO UPDATE SET snapshot = EXCLUDED.snapshot, data_as_of = EXCLUDED.data_as_of`,
      ...build,
      `UPDATE ${state} SET last_refreshed_at = clock_timestamp() WHERE view_name = ${quoteLiteral(view)}`,
    ];
  }

  #function(name: string) {
    const definition = this.#canonical.functions.find((f) => f.name === name)!;
    const fact = this.#facts.functions.find((f) => f.name === name)!;
    const identity = fact.canonical.ok ? fact.canonical.value.identity : fact.live?.identity;
    return { definition, fact, identity: identity ?? `${name}()` };
  }

  #tracksChanges(functionName: string): boolean {
    return this.#canonical.triggers.some((t) => t.tracksChanges && t.functionName === functionName);
  }

  action(repair: Repair): Omit<RepairAction, 'reasons'> {
    switch (repair.kind) {
      case 'replace-function': {
        const { definition, identity } = this.#function(repair.fn);
        const recreated = repair.missing || repair.dropFirst !== null;
        const sql = retargetFunction(definition.sql.replaceAll('__SCHEMA__', this.#schema), {
          schema: this.#schema,
          orReplace: true,
        });
        return {
          description: `${repair.missing ? 'create' : 'replace'} function ${identity} from ${definition.source}`,
          transactional: true,
          statements: [
            this.#lockTimeout(true),
            ...(repair.dropFirst ? [`DROP FUNCTION ${this.#schema}.${repair.dropFirst}`] : []),
            sql,
            ...(recreated && definition.revokeFromPublic
              ? [`REVOKE ALL ON FUNCTION ${this.#schema}.${identity} FROM PUBLIC`]
              : []),
            ...(recreated ? this.#giveBack('FUNCTION', `${this.#schema}.${identity}`) : []),
            ...(this.#tracksChanges(repair.fn) ? this.#markViewsStale() : []),
          ],
        };
      }
      case 'revoke-public': {
        const { identity } = this.#function(repair.fn);
        return {
          description: `revoke EXECUTE on ${identity} from PUBLIC`,
          transactional: true,
          statements: [
            this.#lockTimeout(true),
            `REVOKE ALL ON FUNCTION ${this.#schema}.${identity} FROM PUBLIC`,
          ],
        };
      }
      case 'set-owner': {
        const object =
          repair.objectType === 'FUNCTION'
            ? `${this.#schema}.${repair.object}`
            : this.#qualified(repair.object);
        return {
          description: `give ${repair.objectType.toLowerCase()} ${repair.object} back to ${this.#owner}`,
          transactional: true,
          statements: [
            this.#lockTimeout(true),
            `ALTER ${repair.objectType} ${object} OWNER TO ${quoteIdent(this.#owner ?? 'CURRENT_USER')}`,
          ],
        };
      }
      case 'enable-trigger': {
        const trigger = this.#canonical.triggers.find((t) => t.name === repair.trigger)!;
        return {
          description: `enable trigger ${repair.trigger} on ${repair.table}`,
          transactional: true,
          statements: [
            this.#lockTimeout(true),
            `ALTER TABLE ${this.#qualified(repair.table)} ENABLE TRIGGER ${quoteIdent(repair.trigger)}`,
            ...(trigger.tracksChanges ? this.#markViewsStale() : []),
          ],
        };
      }
      case 'recreate-trigger': {
        const trigger = this.#canonical.triggers.find((t) => t.name === repair.trigger)!;
        return {
          description: `recreate trigger ${repair.trigger} on ${repair.table} from ${trigger.source}`,
          transactional: true,
          statements: [
            this.#lockTimeout(true),
            `DROP TRIGGER IF EXISTS ${quoteIdent(repair.trigger)} ON ${this.#qualified(repair.table)}`,
            trigger.sql,
            ...(trigger.tracksChanges ? this.#markViewsStale() : []),
          ],
        };
      }
      case 'rebuild-view': {
        const view = this.#canonical.views.find((v) => v.name === repair.view)!;
        const live = this.#facts.views.find((v) => v.name === repair.view)?.live;
        const drop =
          live?.kind === 'm'
            ? [`DROP MATERIALIZED VIEW ${this.#qualified(view.name)}`]
            : live?.kind === 'v'
              ? [`DROP VIEW ${this.#qualified(view.name)}`]
              : [];
        return {
          description: `${live ? 'rebuild' : 'create'} materialized view ${view.name} from ${view.source}, with its indexes`,
          transactional: true,
          statements: [
            this.#lockTimeout(true),
            ...drop,
            ...this.#viewStateAround(view.name, [
              `CREATE MATERIALIZED VIEW ${this.#qualified(view.name)} AS\n${view.query}\nWITH DATA`,
              ...view.indexes.map((i) => plainIndexSql(i.sql)),
            ]),
            ...this.#giveBack('MATERIALIZED VIEW', this.#qualified(view.name)),
          ],
        };
      }
      case 'populate-view':
        return {
          description: `populate materialized view ${repair.view}`,
          transactional: true,
          statements: [
            this.#lockTimeout(true),
            ...this.#viewStateAround(repair.view, [
              `REFRESH MATERIALIZED VIEW ${this.#qualified(repair.view)}`,
            ]),
          ],
        };
      case 'create-index':
      case 'recreate-index': {
        const index = this.#index(repair.index);
        return {
          description: `${repair.kind === 'create-index' ? 'build' : 'rebuild drifted'} index ${index.name} on ${index.table} from ${index.source} (CONCURRENTLY)`,
          transactional: false,
          statements: [
            this.#lockTimeout(false),
            ...(repair.kind === 'recreate-index'
              ? [`DROP INDEX CONCURRENTLY IF EXISTS ${this.#qualified(index.name)}`]
              : []),
            concurrentIndexSql(index.sql),
          ],
          cleanupInvalidIndex: this.#qualified(index.name),
        };
      }
      case 'reindex': {
        const name = this.#qualified(repair.index);
        return {
          description: `rebuild invalid index ${repair.index} (REINDEX CONCURRENTLY)`,
          transactional: false,
          statements: [this.#lockTimeout(false), `REINDEX INDEX CONCURRENTLY ${name}`],
          // E.g. exclusion-constraint indexes cannot be rebuilt concurrently.
          fallback: [`REINDEX INDEX ${name}`],
          cleanupInvalidIndex: this.#qualified(`${repair.index}_ccnew`),
        };
      }
      case 'grants':
        return {
          description: `grant hierarchy_reader and hierarchy_refresher their privileges (${this.#canonical.grantsSource})`,
          transactional: true,
          statements: [this.#lockTimeout(true), this.#canonical.grantsSql],
        };
    }
  }

  #index(name: string) {
    const index =
      this.#canonical.tableIndexes.find((i) => i.name === name) ??
      this.#canonical.views.flatMap((v) => v.indexes).find((i) => i.name === name);
    if (!index) throw new Error(`no canonical definition of index ${name}`);
    return index;
  }
}

/** The plan as SQL a person can read and run (what `repair --dry-run` prints). */
export function formatPlan(plan: RepairPlan): string {
  const lines: string[] = [];
  plan.actions.forEach((action, i) => {
    lines.push(`-- ${i + 1}. ${action.description}`);
    for (const reason of action.reasons) lines.push(`--    because ${reason.replace(/\n/g, ' ')}`);
    if (action.transactional) lines.push('BEGIN;');
    for (const statement of action.statements) lines.push(`${statement};`);
    if (action.transactional) lines.push('COMMIT;');
    lines.push('');
  });
  return lines.join('\n');
}
