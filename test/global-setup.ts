import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { createLogger } from '../src/logging/logger.ts';
import { Migrator } from '../src/migrate/migrator.ts';
import { selectProvider, withDatabase } from './helpers/database-provider.ts';
import { startServer } from './helpers/start-server.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of a maintenance database on the test server. */
    adminUrl: string;
    /** Name of the migrated template database that test databases are cloned from. */
    templateDatabase: string;
    /** Prefix of every database this run creates (dropped at the end). */
    runPrefix: string;
  }
}

/**
 * Starts the test server once, migrates a template database, and hands both to the test files,
 * which clone the template (graphile-worker's pattern: migrate once, copy per test file).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const provider = selectProvider(process.env);
  const server = await startServer(provider);
  const runPrefix = `hdbt_${process.pid}_${Date.now().toString(36)}`;
  const templateDatabase = `${runPrefix}_template`;
  const admin = new pg.Client(server.adminUrl);
  await admin.connect();
  const version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]
    ?.server_version;
  process.stderr.write(`[tests] PostgreSQL ${version} (${server.description})\n`);
  await admin.query(`CREATE DATABASE ${templateDatabase}`);
  await admin.end();

  const templateUrl = withDatabase(server.adminUrl, templateDatabase);
  await new Migrator({
    connection: { target: { url: templateUrl, source: 'flag', display: 'test' } },
    logger: createLogger('warn'),
  }).up();

  project.provide('adminUrl', server.adminUrl);
  project.provide('templateDatabase', templateDatabase);
  project.provide('runPrefix', runPrefix);

  return async () => {
    const cleanup = new pg.Client(server.adminUrl);
    await cleanup.connect();
    const { rows } = await cleanup.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE datname LIKE $1',
      [`${runPrefix}%`],
    );
    for (const { datname } of rows) {
      await cleanup.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    await cleanup.end();
    await server.stop();
  };
}
