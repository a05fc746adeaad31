import type pg from 'pg';
import { connectOrThrow } from '../db/connect.ts';
import { type ConnectionOptions, createClient } from '../db/pool.ts';
import type { Logger } from '../logging/logger.ts';
import { Migrator } from '../migrate/migrator.ts';
import { type CanonicalObjects, loadCanonicalObjects } from './canonical-objects.ts';
import { buildChecks } from './checks.ts';
import type { CheckResult } from './repairs.ts';
import { inspectSchema, type SchemaFacts } from './schema-inspector.ts';

/** Options for {@link verifySchema}. */
export interface VerifyOptions {
  connection: ConnectionOptions;
  logger: Logger;
  /** Directory of migration files for the pending/modified checks. Default: the project's. */
  migrationsDir?: string;
}

/** The checklist: `ok` only when every check passes. */
export interface VerifyReport {
  ok: boolean;
  checks: CheckResult[];
}

/** A report with what it was built from, for `repair`. */
export interface VerifyInspection extends VerifyReport {
  facts: SchemaFacts;
  canonical: CanonicalObjects;
}

/** Opens a client with the project's connection settings (ConnectionError if unreachable). */
export async function openClient(options: ConnectionOptions, applicationName: string) {
  const client = createClient({ ...options, applicationName });
  await connectOrThrow(client, options.target);
  return client;
}

/** Runs the SPEC 5 checklist on `client`'s database. Read-only (see {@link inspectSchema}). */
export async function inspectAndCheck(
  client: pg.Client,
  options: VerifyOptions,
): Promise<VerifyInspection> {
  const canonical = await loadCanonicalObjects();
  const facts = await inspectSchema(client, canonical);
  const migrations = await new Migrator({
    connection: options.connection,
    logger: options.logger,
    ...(options.migrationsDir ? { dir: options.migrationsDir } : {}),
  }).status();
  const checks = buildChecks(facts, canonical, migrations);
  return { ok: checks.every((c) => c.ok), checks, facts, canonical };
}

/** `hierarchy-db verify`: the schema checklist of SPEC 5. Changes nothing. */
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

/** The report as `verify --json` prints it: the SPEC fields only. */
export function reportJson(report: VerifyReport): {
  ok: boolean;
  checks: { name: string; ok: boolean; detail: string; fix: string | null }[];
} {
  return {
    ok: report.ok,
    checks: report.checks.map(({ name, ok, detail, fix }) => ({ name, ok, detail, fix })),
  };
}
