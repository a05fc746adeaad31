import type pg from 'pg';
import { isConnectionFailure, toConnectionError } from '../db/connection-error.ts';
import type { ConnectionOptions } from '../db/pool.ts';
import { sqlState } from '../db/sqlstate.ts';
import type { Logger } from '../logging/logger.ts';
import { acquireSchemaLock } from '../migrate/advisory-lock.ts';
import { formatPlan, planRepairs, type RepairAction, type RepairPlan } from './repair-plan.ts';
import { inspectAndCheck, openClient, type VerifyReport } from './schema-verifier.ts';

/** SQLSTATE 0A000: e.g. REINDEX CONCURRENTLY of an index that cannot be rebuilt that way. */
const FEATURE_NOT_SUPPORTED = '0A000';

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
  plan: RepairPlan;
  /** The plan as SQL. */
  planSql: string;
  steps: RepairStepResult[];
  /** The checklist after the repair; null for a dry run or a refusal. */
  after: VerifyReport | null;
}

/**
 * `hierarchy-db repair`: recreates missing, invalid or drifted *derived* objects — the
 * materialized views (populated again), their indexes, invalid indexes, the functions, the
 * triggers, the grants — from the migrations' canonical definitions. Never touches `entities`
 * rows, and never applies or reverts migrations: with a pending or modified migration the
 * canonical definitions may not be the ones the database should have, so it refuses.
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
    const { rows } = await client.query<{ user: string }>('SELECT current_user AS user');
    const plan = planRepairs(inspection.checks, inspection.facts, inspection.canonical, {
      lockTimeoutMs: options.lockTimeoutMs ?? DEFAULT_REPAIR_LOCK_TIMEOUT_MS,
      currentUser: rows[0]!.user,
    });
    const planSql = formatPlan(plan);
    const outcome = { dryRun, before, plan, planSql, steps: [], after: null };

    const migrations = inspection.checks.filter((c) => !c.ok && c.name.startsWith('migrations '));
    if (migrations.length > 0) {
      const refused = `not repairing: ${migrations.map((c) => `${c.name} (${c.detail})`).join('; ')}. The canonical definitions come from the migration files, so the schema must be migrated to exactly them first: ${migrations.map((c) => c.fix).join('; ')}`;
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
    try {
      await runStatements(client, action.statements, action.transactional);
    } catch (error) {
      if (!action.fallback || sqlState(error) !== FEATURE_NOT_SUPPORTED) throw error;
      logger.info(
        { event: 'repair.fallback', action: action.description, reason: (error as Error).message },
        `not possible concurrently here; falling back to: ${action.fallback.join('; ')}`,
      );
      await runStatements(client, action.fallback, action.transactional);
    }
    const durationMs = Math.round(performance.now() - started);
    logger.info(
      { event: 'repair.step_done', action: action.description, duration_ms: durationMs },
      `repaired: ${action.description}`,
    );
    return { action, ok: true, durationMs };
  } catch (error) {
    if (isConnectionFailure(error)) throw error;
    const message = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
    if (action.cleanupInvalidIndex) await dropIfInvalid(client, action.cleanupInvalidIndex, logger);
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

async function runStatements(
  client: pg.Client,
  statements: string[],
  transactional: boolean,
): Promise<void> {
  if (!transactional) {
    for (const statement of statements) await client.query(statement);
    return;
  }
  await client.query('BEGIN');
  try {
    for (const statement of statements) await client.query(statement);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** A failed CONCURRENTLY build leaves an invalid index; drop it (only if it is invalid). */
async function dropIfInvalid(client: pg.Client, index: string, logger: Logger): Promise<void> {
  try {
    const { rows } = await client.query<{ invalid: boolean }>(
      `SELECT NOT i.indisvalid AS invalid FROM pg_catalog.pg_index i WHERE i.indexrelid = to_regclass($1)`,
      [index],
    );
    if (!rows[0]?.invalid) return;
    await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`);
    logger.info({ event: 'repair.cleanup', index }, `dropped the invalid leftover ${index}`);
  } catch (error) {
    logger.warn(
      { event: 'repair.cleanup_failed', index, reason: (error as Error).message },
      `could not drop the invalid leftover ${index}; drop it with DROP INDEX CONCURRENTLY`,
    );
  }
}
