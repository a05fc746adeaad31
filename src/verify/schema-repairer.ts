import type pg from 'pg';
import { isConnectionFailure, toConnectionError } from '../db/connection-error.ts';
import type { ConnectionOptions } from '../db/pool.ts';
import { errorFields } from '../logging/error-fields.ts';
import type { Logger } from '../logging/logger.ts';
import { acquireSchemaLock } from '../migrate/advisory-lock.ts';
import { type CheckResult, ENTITIES_INDEXES, type Repair } from './checks.ts';
import type { SchemaFacts } from './schema-inspector.ts';
import { inspectAndCheck, openClient, type VerifyReport } from './schema-verifier.ts';
import type { SqlDefinitions, SqlFile } from './sql-definitions.ts';

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
  /** What it does, e.g. `rebuild mv_descendant_counts online as a materialized view ...`. */
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
const ORDER = 'function definition trigger trigger-state rebuild index owner grants'.split(' ');

/** Quotes an identifier unless it is a plain lower-case name. */
const ident = (name: string) =>
  /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

/** Turns failed checks into repair steps, in dependency order. */
export function planRepairs(
  checks: CheckResult[],
  facts: SchemaFacts,
  sql: SqlDefinitions,
  lockTimeoutMs: number,
): { actions: RepairAction[]; unrepairable: CheckResult[] } {
  const failed = checks.filter((c) => !c.ok);
  const planned = new Map<string, { repair: Repair; reasons: string[] }>();
  const plan = (repair: Repair, reason: string) => {
    const key = JSON.stringify(repair);
    planned.set(key, { repair, reasons: [...(planned.get(key)?.reasons ?? []), reason] });
  };
  for (const c of failed) for (const r of c.repairs) plan(r, `${c.name}: ${c.detail}`);
  // Recreated objects start without their grants: grants.sql runs after any other step.
  if (planned.size > 0) plan({ kind: 'grants' }, 'privileges of repaired objects');

  const schema = facts.quotedSchema;
  const entities = `${schema}.entities`;
  const owner = facts.relations.entities?.owner ?? null;
  const file = (files: SqlFile[], name: string) => files.find((f) => f.name === name)!;
  // How every file of sql/ is applied (sql/README.md): the schema first on the search_path.
  const prelude = [
    `SET LOCAL lock_timeout = '${lockTimeoutMs}ms'`,
    `SELECT set_config('search_path', ${literal(`${schema}, pg_temp`)}, true)`,
  ];
  // `ALTER ... OWNER TO` the owner of entities, when `repair` runs as someone else.
  const giveBack = (type: string, object: string, always = false) =>
    owner && (always || owner !== facts.currentUser)
      ? [`ALTER ${type} ${object} OWNER TO "${owner.replaceAll('"', '""')}"`]
      : [];
  // Writes made while a trigger on entities was missing, drifted or disabled may never have been
  // recorded, so no view knows it misses them. Record one change dated when the oldest view's
  // data was read: every unrecorded write came later, so staleness is over-estimated, never
  // under-estimated, until the next refresh.
  const markStale = `INSERT INTO ${schema}.hierarchy_changes (xid, changed_at)
  SELECT pg_current_xact_id(), COALESCE(min(s.data_as_of), clock_timestamp())
    FROM ${schema}.hierarchy_view_state s
  ON CONFLICT (xid) DO NOTHING`;

  const action = (repair: Repair): Omit<RepairAction, 'reasons'> => {
    const step = (description: string, statements: string[], transactional = true) => ({
      description,
      transactional,
      statements: transactional ? [...prelude, ...statements] : statements,
    });
    switch (repair.kind) {
      case 'function': {
        const f = file(sql.functions, repair.name);
        const fact = facts.functions.find((x) => x.file.name === repair.name);
        const identity = fact?.canonical.ok ? fact.canonical.value.identity : repair.name;
        const created = repair.drop !== null || !fact?.live;
        return step(`${created ? 'create' : 'replace'} function ${identity} from ${f.file}`, [
          ...(repair.drop ? [`DROP ROUTINE ${schema}.${repair.drop}`] : []),
          f.sql.trim(),
          ...(created ? giveBack('ROUTINE', `${schema}.${identity}`) : []),
        ]);
      }
      case 'definition': {
        const f = file(sql.views, repair.name);
        return step(`create or replace view ${repair.name} from ${f.file}`, [f.sql.trim()]);
      }
      case 'trigger': {
        const f = file(sql.triggers, repair.name);
        const disabled = repair.enable ? '' : ' (disabled)';
        return step(`recreate trigger ${repair.name} on entities from ${f.file}${disabled}`, [
          `DROP TRIGGER IF EXISTS ${ident(repair.name)} ON ${entities}`,
          f.sql.trim(),
          ...(repair.enable
            ? []
            : [`ALTER TABLE ${entities} DISABLE TRIGGER ${ident(repair.name)}`]),
          markStale,
        ]);
      }
      case 'trigger-state': {
        const verb = repair.enable ? 'ENABLE' : 'DISABLE';
        return step(`${verb.toLowerCase()} trigger ${repair.name} on entities`, [
          `ALTER TABLE ${entities} ${verb} TRIGGER ${ident(repair.name)}`,
          ...(repair.enable ? [markStale] : []),
        ]);
      }
      case 'rebuild': {
        const view = facts.views.find((v) => v.name === repair.view)!;
        const type = view.strategy === 'incremental' ? 'TABLE' : 'MATERIALIZED VIEW';
        // Online: built beside the old relation, then swapped in one short transaction.
        const call = `${schema}.hierarchy_rebuild_view(${literal(view.name)}, NULL, 'rebuilt', 'manual')`;
        return step(
          `rebuild ${view.name} online as a ${type.toLowerCase()} from ${view.definition} (hierarchy_rebuild_view)`,
          [
            `SELECT view_name, strategy, rows FROM ${call}`,
            ...giveBack(type, `${schema}.${view.name}`),
          ],
        );
      }
      case 'index': {
        const [name, , shape] = ENTITIES_INDEXES.find(([n]) => n === repair.name)!;
        const [, unique, method, columns] = /^(unique )?(\w+) (\(.*\))$/.exec(shape)!;
        const create = `CREATE ${unique ? 'UNIQUE ' : ''}INDEX CONCURRENTLY ${name} ON ${entities} USING ${method} ${columns}`;
        const statements = {
          create: [create],
          recreate: [`DROP INDEX CONCURRENTLY IF EXISTS ${schema}.${name}`, create],
          reindex: [`REINDEX INDEX CONCURRENTLY ${schema}.${name}`],
        }[repair.how];
        const what = { create: 'build', recreate: 'rebuild drifted', reindex: 'rebuild invalid' }[
          repair.how
        ];
        return step(
          `${what} index ${name} on entities (CONCURRENTLY)`,
          [`SET lock_timeout = '${lockTimeoutMs}ms'`, ...statements],
          false,
        );
      }
      case 'owner': {
        const object = `${schema}.${repair.type === 'ROUTINE' ? repair.object : ident(repair.object)}`;
        return step(`give ${repair.object} back to ${owner}`, giveBack(repair.type, object, true));
      }
      case 'grants':
        return step(`grant the privileges of ${sql.grants.file}`, [sql.grants.sql.trim()]);
    }
  };
  const actions = [...planned.values()]
    .sort((a, b) => ORDER.indexOf(a.repair.kind) - ORDER.indexOf(b.repair.kind))
    .map(({ repair, reasons }) => ({ ...action(repair), reasons }));
  return { actions, unrepairable: failed.filter((c) => c.repairs.length === 0) };
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
  const fields = { action: action.description };
  logger.info(
    { event: 'repair.step', ...fields, reasons: action.reasons },
    `repairing: ${action.description}`,
  );
  try {
    if (action.transactional) await client.query('BEGIN');
    for (const statement of action.statements) await client.query(statement);
    if (action.transactional) await client.query('COMMIT');
    const durationMs = Math.round(performance.now() - started);
    logger.info(
      { event: 'repair.step_done', ...fields, duration_ms: durationMs },
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
        ...fields,
        ...errorFields(error),
        duration_ms: durationMs,
      },
      `repair failed: ${action.description}: ${message}`,
    );
    return { action, ok: false, durationMs, error: message };
  }
}
