import type pg from 'pg';
import { connectOrThrow } from '../db/connect.ts';
import { type ConnectionOptions, createClient } from '../db/pool.ts';
import type { Logger } from '../logging/logger.ts';
import { Migrator } from '../migrate/migrator.ts';
import { buildChecks, type CheckResult } from './checks.ts';
import { checkViewData } from './data-check.ts';
import { inspectSchema, type SchemaFacts } from './schema-inspector.ts';
import { loadSqlDefinitions, type SqlDefinitions } from './sql-definitions.ts';

/** Options for {@link verifySchema}. */
export interface VerifyOptions {
  connection: ConnectionOptions;
  logger: Logger;
  /** Directory of migration files for the pending/modified checks. Default: the project's. */
  migrationsDir?: string;
  /** Directory of canonical definitions. Default: the `sql/` shipped with hierarchy-db. */
  sqlDir?: string;
  /** Also compare each view's contents with its definition. Default false. */
  data?: boolean;
}

/** The checklist: `ok` only when every check passes. */
export interface VerifyReport {
  ok: boolean;
  checks: CheckResult[];
}

/** A report with what it was built from, for `repair`. */
export interface VerifyInspection extends VerifyReport {
  facts: SchemaFacts;
  sql: SqlDefinitions;
}

/** Opens a client with the project's connection settings (ConnectionError if unreachable). */
export async function openClient(options: ConnectionOptions, applicationName: string) {
  const client = createClient({ ...options, applicationName });
  await connectOrThrow(client, options.target);
  return client;
}

/** Runs the checklist on `client`'s database. Read-only (see inspectSchema). */
export async function inspectAndCheck(
  client: pg.Client,
  options: VerifyOptions,
): Promise<VerifyInspection> {
  const sql = await loadSqlDefinitions(options.sqlDir);
  const facts = await inspectSchema(client, sql);
  const migrations = await new Migrator({
    connection: options.connection,
    logger: options.logger,
    ...(options.migrationsDir ? { dir: options.migrationsDir } : {}),
  }).status();
  const checks = buildChecks(facts, migrations);
  if (options.data) checks.push(...(await checkViewData(client, facts)));
  return { ok: checks.every((c) => c.ok), checks, facts, sql };
}

/**
 * `hierarchy-db verify`: the schema checklist (README "hierarchy-db verify"), each live object
 * compared with its definition in `sql/`; with `data`, each view's contents with its definition
 * view. Changes nothing.
 */
export async function verifySchema(options: VerifyOptions): Promise<VerifyReport> {
  const client = await openClient(options.connection, 'hierarchy-db/verify');
  try {
    const { ok, checks } = await inspectAndCheck(client, options);
    options.logger.debug(
      { event: 'verify.done', ok, failed: checks.filter((c) => !c.ok).map((c) => c.name) },
      'verify finished',
    );
    return { ok, checks };
  } finally {
    await client.end().catch(() => {});
  }
}

/** The report as `verify --json` prints it: `{ ok, checks: [{ name, ok, detail, fix }] }`. */
export function reportJson(report: VerifyReport) {
  return {
    ok: report.ok,
    checks: report.checks.map(({ name, ok, detail, fix, differences }) => ({
      name,
      ok,
      detail,
      fix,
      ...(differences ? { differences } : {}),
    })),
  };
}
