import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { TYPE_PARSERS } from '../../src/db/pool.ts';
import { withDatabase } from './database-provider.ts';

export { withDatabase };

/** A database of its own for one test file, dropped by {@link TestDatabase.drop}. */
export interface TestDatabase {
  name: string;
  url: string;
  /** A client connected to this database (closed by `drop`). */
  client: pg.Client;
  drop(): Promise<void>;
}

/**
 * Creates a database for a test: a clone of the migrated template (default), or empty
 * (`{ migrated: false }`) for tests of the migrations themselves.
 */
export async function createTestDatabase(
  options: { migrated?: boolean } = {},
): Promise<TestDatabase> {
  const adminUrl = inject('adminUrl');
  if (!adminUrl) {
    throw new Error(
      'no test server in this project: a test file that creates databases must not be listed in UNIT_TESTS (vitest.config.ts)',
    );
  }
  const name = `${inject('runPrefix')}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client(adminUrl);
  await admin.connect();
  try {
    const template = options.migrated === false ? 'template0' : inject('templateDatabase');
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(adminUrl, name);
  // The project's type parsers (bigint and numeric as numbers), as its own clients have them.
  const client = new pg.Client({ connectionString: url, types: TYPE_PARSERS });
  client.on('error', () => {});
  await client.connect();
  return {
    name,
    url,
    client,
    drop: async () => {
      await client.end().catch(() => {});
      const cleanup = new pg.Client(adminUrl);
      await cleanup.connect();
      try {
        await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await cleanup.end();
      }
    },
  };
}
