import type pg from 'pg';
import { isConnectionFailure, toConnectionError } from '../db/connection-error.ts';
import type { ConnectionOptions } from '../db/pool.ts';
import { sqlState } from '../db/sqlstate.ts';
import type { Logger } from '../logging/logger.ts';
import { acquireSchemaLock } from '../migrate/advisory-lock.ts';
import { type CheckResult, ENTITIES_INDEXES, type Repair } from './checks.ts';
import type { SchemaFacts } from './schema-inspector.ts';
import { inspectAndCheck, openClient, type VerifyReport } from './schema-verifier.ts';
import type { SqlDefinitions } from './sql-definitions.ts';

/** Default `lock_timeout` of each repair step: 30 s. */
export const DEFAULT_REPAIR_LOCK_TIMEOUT_MS = 30_000;

/** Options for {@link repairSchema}. */
export interface RepairOptions {
  connection: ConnectionOptions;
  logger: Logger;
  /** Plan and print; change nothing (and take no lock). Default false. */
  dryRun?: boolean;
  /** How long to wait for the schema lock (a running migrate or repair). Default 300 000 ms. */
  lockWaitMs?: number;
  /** `lock_timeout` of each step; 0 = none. Default {@link DEFAULT_REPAIR_LOCK_TIMEOUT_MS}. */
  lockTimeoutMs?: number;
  /** Directory of migration files for the pending/modified checks. Default: the project's. */
  migrationsDir?: string;
  /** Directory of canonical definitions. Default: the `sql/` shipped with hierarchy-db. */
  sqlDir?: string;
}

/** One step of a repair, as it runs and as `--dry-run` prints it. */
export interface RepairAction {
  /** What it does, e.g. `rebuild mv_descendant_counts online (hierarchy_rebuild_view)`. */
  description: string;
  /** The failed checks it answers. */
  reasons: string[];
  /** All statements in one transaction; otherwise each on its own (CONCURRENTLY builds). */
  transactional: boolean;
  statements: string[];
}

/** How one step went. */
export interface RepairStepResult {
  action: RepairAction;
  ok: boolean;
  durationMs: number;
  error?: string;
}

/** What `repair` did (or, with `dryRun`, would do). */
export interface RepairOutcome {
  dryRun: boolean;
  /** Why nothing was attempted, e.g. a pending migration. */
  refused: string | null;
  /** The checks before the repair. */
  before: VerifyReport;
  actions: RepairAction[];
  /** Failed checks no repair answers (tables, extensions, constraints, migrations). */
  unrepairable: CheckResult[];
  steps: RepairStepResult[];
  /** The checklist after the repair; null for a dry run or a refusal. */
  after: VerifyReport | null;
}

// Dependency order: functions (triggers and views need them), the definition views, triggers,
// the relations (rebuilt online from their definitions), indexes of entities, owners, grants.
const ORDER: Repair['kind'][] = [
  'function',
  'definition',
  'trigger',
  'trigger-state',
  'rebuild',
  'index',
  'owner',
  'grants',
];

/** Turns failed checks into repair steps, in dependency order. */
export function planRepairs(
  checks: CheckResult[],
  facts: SchemaFacts,
  sql: SqlDefinitions,
  lockTimeoutMs: number,
): { actions: RepairAction[]; unrepairable: CheckResult[] } {
  const failed = checks.filter((c) => !c.ok);
  const planned = new Map<string, { repair: Repair; reasons: string[] }>();
  for (const check of failed) {
    for (const repair of check.repairs) {
      const key = JSON.stringify(repair);
      const entry = planned.get(key) ?? { repair, reasons: [] };
      entry.reasons.push(`${check.name}: ${check.detail}`);
      planned.set(key, entry);
    }
  }
  // Recreated objects start without their grants: grants.sql runs after any other step.
  if (planned.size > 0 && !planned.has('{"kind":"grants"}')) {
    planned.set('{"kind":"grants"}', {
      repair: { kind: 'grants' },
      reasons: ['privileges of repaired objects'],
    });
  }
  const steps = new Steps(facts, sql, lockTimeoutMs);
  const actions = [...planned.values()]
    .sort((a, b) => ORDER.indexOf(a.repair.kind) - ORDER.indexOf(b.repair.kind))
    .map(({ repair, reasons }) => ({ ...steps.action(repair), reasons }));
  return { actions, unrepairable: failed.filter((c) => c.repairs.length === 0) };
}

/** Quotes an identifier unless it is a plain lower-case name. */
const ident = (name: string) =>
  /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

class Steps {
  readonly #facts: SchemaFacts;
  readonly #sql: SqlDefinitions;
  readonly #lockTimeoutMs: number;
  readonly #schema: string;
  readonly #owner: string | null;

  constructor(facts: SchemaFacts, sql: SqlDefinitions, lockTimeoutMs: number) {
    this.#facts = facts;
    this.#sql = sql;
    this.#lockTimeoutMs = lockTimeoutMs;
    this.#schema = facts.quotedSchema;
    this.#owner = facts.relations.entities?.owner ?? null;
  }

  /** How every file of sql/ is applied (sql/README.md): the schema first on the search_path. */
  #prelude(): string[] {
    return [
      `SET LOCAL lock_timeout = '${this.#lockTimeoutMs}ms'`,
      `SELECT set_config('search_path', ${literal(`${this.#schema}, pg_temp`)}, true)`,
    ];
  }

  /** `ALTER ... OWNER TO` the owner of entities, when `repair` runs as someone else. */
  #giveBack(type: string, object: string): string[] {
    const owner = this.#owner;
    return owner && owner !== this.#facts.currentUser
      ? [`ALTER ${type} ${object} OWNER TO "${owner.replaceAll('"', '""')}"`]
      : [];
  }

  /**
   * Writes made while a trigger on entities was missing, drifted or disabled may never have been
   * recorded, so no view knows it misses them. Record one change now, dated when the oldest
   * view's data was read: every unrecorded write came later, so staleness is over-estimated,
   * never under-estimated, until the next refresh.
   */
  #markViewsStale(): string {
    return `INSERT INTO ${this.#schema}.hierarchy_changes (xid, changed_at)
  SELECT pg_current_xact_id(), COALESCE(min(s.data_as_of), clock_timestamp()) FROM ${this.#schema}.hierarchy_view_state s
  ON CONFLICT (xid) DO NOTHING`;
  }

  #file(files: { name: string; file: string; sql: string }[], name: string) {
    return files.find((f) => f.name === name)!;
  }

  action(repair: Repair): Omit<RepairAction, 'reasons'> {
    const entities = `${this.#schema}.entities`;
    const tx = (description: string, statements: string[]) => ({
      description,
      transactional: true,
      statements,
    });
    switch (repair.kind) {
      case 'function': {
        const file = this.#file(this.#sql.functions, repair.name);
        const fact = this.#facts.functions.find((f) => f.file.name === repair.name);
        const created = repair.drop !== null || !fact?.live;
        const identity = fact?.canonical.ok ? fact.canonical.value.identity : repair.name;
        return tx(`${created ? 'create' : 'replace'} function ${identity} from ${file.file}`, [
          ...this.#prelude(),
          ...(repair.drop ? [`DROP ROUTINE ${this.#schema}.${repair.drop}`] : []),
          file.sql.trim(),
          ...(created ? this.#giveBack('ROUTINE', `${this.#schema}.${identity}`) : []),
        ]);
      }
      case 'definition': {
        const file = this.#file(this.#sql.views, repair.name);
        return tx(`create or replace view ${repair.name} from ${file.file}`, [
          ...this.#prelude(),
          file.sql.trim(),
        ]);
      }
      case 'trigger': {
        const file = this.#file(this.#sql.triggers, repair.name);
        return tx(
          `recreate trigger ${repair.name} on entities from ${file.file}${repair.enable ? '' : ' (disabled)'}`,
          [
            ...this.#prelude(),
            `DROP TRIGGER IF EXISTS ${ident(repair.name)} ON ${entities}`,
            file.sql.trim(),
            ...(repair.enable
              ? []
              : [`ALTER TABLE ${entities} DISABLE TRIGGER ${ident(repair.name)}`]),
            this.#markViewsStale(),
          ],
        );
      }
      case 'trigger-state':
        return tx(`${repair.enable ? 'enable' : 'disable'} trigger ${repair.name} on entities`, [
          ...this.#prelude(),
          `ALTER TABLE ${entities} ${repair.enable ? 'ENABLE' : 'DISABLE'} TRIGGER ${ident(repair.name)}`,
          ...(repair.enable ? [this.#markViewsStale()] : []),
        ]);
      case 'rebuild': {
        const view = this.#facts.views.find((v) => v.name === repair.view)!;
        const type = view.strategy === 'incremental' ? 'TABLE' : 'MATERIALIZED VIEW';
        // Online: built beside the old relation, then swapped in one short transaction.
        return tx(
          `rebuild ${view.name} online as a ${type.toLowerCase()} from ${view.definition} (hierarchy_rebuild_view)`,
          [
            ...this.#prelude(),
            `SELECT view_name, strategy, rows FROM ${this.#schema}.hierarchy_rebuild_view(${literal(view.name)}, NULL, 'repaired', 'manual')`,
            ...this.#giveBack(type, `${this.#schema}.${ident(view.name)}`),
          ],
        );
      }
      case 'index': {
        const spec = ENTITIES_INDEXES.find((i) => i.name === repair.name)!;
        const name = `${this.#schema}.${ident(spec.name)}`;
        const create = `CREATE ${spec.unique ? 'UNIQUE ' : ''}INDEX CONCURRENTLY ${ident(spec.name)} ON ${entities} USING ${spec.method} (${spec.columns.join(', ')})`;
        const statements = {
          create: [create],
          recreate: [`DROP INDEX CONCURRENTLY IF EXISTS ${name}`, create],
          reindex: [`REINDEX INDEX CONCURRENTLY ${name}`],
        }[repair.how];
        return {
          description: `${repair.how === 'reindex' ? 'rebuild invalid' : repair.how === 'create' ? 'build' : 'rebuild drifted'} index ${spec.name} on entities (CONCURRENTLY)`,
          transactional: false,
          statements: [`SET lock_timeout = '${this.#lockTimeoutMs}ms'`, ...statements],
        };
      }
      case 'owner': {
        const object = `${this.#schema}.${repair.type === 'ROUTINE' ? repair.object : ident(repair.object)}`;
        const statements = this.#giveBack(repair.type, object);
        const owner = this.#owner ?? 'the owner of entities';
        return tx(`give ${repair.object} back to ${owner}`, [
          `SET LOCAL lock_timeout = '${this.#lockTimeoutMs}ms'`,
          ...(statements.length
            ? statements
            : [`ALTER ${repair.type} ${object} OWNER TO CURRENT_USER`]),
        ]);
      }
      case 'grants':
        return tx(`grant the privileges of ${this.#sql.grants.file}`, [
          ...this.#prelude(),
          this.#sql.grants.sql.trim(),
        ]);
    }
  }
}

/** The plan as SQL a person can read and run (what `repair --dry-run` prints). */
export function formatPlan(actions: RepairAction[]): string {
  return actions
    .map((action, i) =>
      [
        `-- ${i + 1}. ${action.description}`,
        ...action.reasons.map((reason) => `--    because ${reason.replace(/\n/g, ' ')}`),
        ...(action.transactional ? ['BEGIN;'] : []),
        ...action.statements.map((s) => `${s.replace(/;\s*$/, '')};`),
        ...(action.transactional ? ['COMMIT;'] : []),
        '',
      ].join('\n'),
    )
    .join('\n');
}

/**
 * `hierarchy-db repair`: recreates missing, invalid or drifted *derived* objects from `sql/`:
 * functions, definition views, triggers, the two relations (rebuilt online through
 * hierarchy_rebuild_view, never dropped and recreated in place), indexes of entities, grants.
 * Never touches `entities` rows, and never applies or reverts migrations: with a pending or
 * modified migration, `sql/` may not be what the database should have, so it refuses.
 *
 * Holds the schema lock of `migrate` (on a separate, idle connection, see acquireSchemaLock)
 * for the whole run, so it cannot race a deploy.
 */
export async function repairSchema(options: RepairOptions): Promise<RepairOutcome> {
  const { logger } = options;
  const dryRun = options.dryRun ?? false;
  const lockClient = dryRun
    ? null
    : await openClient(options.connection, 'hierarchy-db/repair-lock');
  let release: (() => Promise<void>) | undefined;
  let client: pg.Client | undefined;
  try {
    if (lockClient) {
      release = await acquireSchemaLock(lockClient, {
        ...(options.lockWaitMs !== undefined ? { waitMs: options.lockWaitMs } : {}),
        onWait: (pid) =>
          logger.info(
            { event: 'repair.lock_wait', holder_pid: pid },
            'a migration or repair holds the schema lock; waiting for it',
          ),
      });
    }
    client = await openClient(options.connection, 'hierarchy-db/repair');
    const inspection = await inspectAndCheck(client, options);
    const before: VerifyReport = { ok: inspection.ok, checks: inspection.checks };
    const plan = planRepairs(
      inspection.checks,
      inspection.facts,
      inspection.sql,
      options.lockTimeoutMs ?? DEFAULT_REPAIR_LOCK_TIMEOUT_MS,
    );
    const outcome = { dryRun, before, ...plan, steps: [], after: null };
    const migrations = inspection.checks.filter((c) => !c.ok && c.name.startsWith('migrations '));
    if (migrations.length > 0) {
      const refused = `not repairing: ${migrations.map((c) => `${c.name} (${c.detail})`).join('; ')}. sql/ describes the fully migrated schema, so migrate first: ${migrations.map((c) => c.fix).join('; ')}`;
      return { ...outcome, refused };
    }
    if (dryRun) return { ...outcome, refused: null };

    const steps: RepairStepResult[] = [];
    for (const action of plan.actions) steps.push(await runStep(client, action, logger));
    for (const check of plan.unrepairable) {
      logger.warn(
        { event: 'repair.skipped', check: check.name, fix: check.fix },
        `not repaired: ${check.name}: ${check.detail}`,
      );
    }
    const checked = await inspectAndCheck(client, options);
    const after: VerifyReport = { ok: checked.ok, checks: checked.checks };
    logger.info(
      {
        event: 'repair.done',
        steps: steps.length,
        failed_steps: steps.filter((s) => !s.ok).length,
        ok: after.ok,
      },
      after.ok ? 'repair finished: verify passes' : 'repair finished: some checks still fail',
    );
    return { ...outcome, refused: null, steps, after };
  } catch (error) {
    if (isConnectionFailure(error))
      throw toConnectionError(error, options.connection.target.display);
    throw error;
  } finally {
    await client?.end().catch(() => {});
    if (release) await release().catch(() => {});
    await lockClient?.end().catch(() => {});
  }
}

async function runStep(
  client: pg.Client,
  action: RepairAction,
  logger: Logger,
): Promise<RepairStepResult> {
  const started = performance.now();
  logger.info(
    { event: 'repair.step', action: action.description, reasons: action.reasons },
    `repairing: ${action.description}`,
  );
  try {
    if (action.transactional) await client.query('BEGIN');
    for (const statement of action.statements) await client.query(statement);
    if (action.transactional) await client.query('COMMIT');
    const durationMs = Math.round(performance.now() - started);
    logger.info(
      { event: 'repair.step_done', action: action.description, duration_ms: durationMs },
      `repaired: ${action.description}`,
    );
    return { action, ok: true, durationMs };
  } catch (error) {
    if (isConnectionFailure(error)) throw error;
    if (action.transactional) await client.query('ROLLBACK').catch(() => {});
    const message = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
    const durationMs = Math.round(performance.now() - started);
    logger.error(
      {
        event: 'repair.step_failed',
        action: action.description,
        sqlstate: sqlState(error),
        duration_ms: durationMs,
      },
      `repair failed: ${action.description}: ${message}`,
    );
    return { action, ok: false, durationMs, error: message };
  }
}
