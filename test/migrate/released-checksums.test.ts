import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RELEASED_CHECKSUMS } from '../../src/migrate/released-checksums.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// A database migrated before 0004 carried its own SQL recorded 0004's earlier checksum. It must
// neither look modified nor re-run anything; `migrate up` records the current checksum instead.
describe('released checksums', () => {
  let db: TestDatabase;
  const cli = (...args: string[]) =>
    runCli([...args, '--log-level', 'warn', '--database-url', db.url]);

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('accepts the earlier checksum of 0004, re-runs nothing, and records the current one', async () => {
    const [earlier] = RELEASED_CHECKSUMS['0004_fast_hierarchy_views'] ?? [];
    expect(earlier).toMatch(/^[0-9a-f]{64}$/);
    const current = (
      await db.client.query(
        `SELECT checksum FROM hierarchy_db_migration_checksums WHERE name = '0004_fast_hierarchy_views'`,
      )
    ).rows[0]?.checksum;
    expect(current).not.toBe(earlier);
    // As yesterday's release recorded it, with the migration after it not yet applied.
    await db.client.query(
      `UPDATE hierarchy_db_migration_checksums SET checksum = $1 WHERE name = '0004_fast_hierarchy_views'`,
      [earlier],
    );
    const runsBefore = (
      await db.client.query('SELECT count(*)::int AS n FROM hierarchy_db_migrations')
    ).rows[0].n;

    const status = await cli('migrate', 'status', '--json');
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ pending: [], modified: [] });

    const up = await cli('migrate', 'up');
    expect(up.code, up.stderr).toBe(0);
    const runsAfter = (
      await db.client.query('SELECT count(*)::int AS n FROM hierarchy_db_migrations')
    ).rows[0].n;
    expect(runsAfter).toBe(runsBefore);
    const recorded = (
      await db.client.query(
        `SELECT checksum FROM hierarchy_db_migration_checksums WHERE name = '0004_fast_hierarchy_views'`,
      )
    ).rows[0]?.checksum;
    expect(recorded).toBe(current);
  });

  it('still reports a genuinely different checksum as modified', async () => {
    await db.client.query(
      `UPDATE hierarchy_db_migration_checksums SET checksum = repeat('0', 64) WHERE name = '0004_fast_hierarchy_views'`,
    );
    const status = await cli('migrate', 'status', '--json');
    expect(status.code).toBe(1);
    expect(JSON.parse(status.stdout).modified).toEqual(['0004_fast_hierarchy_views.ts']);
  });
});
