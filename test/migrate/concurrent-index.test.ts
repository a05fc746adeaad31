import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR } from '../../src/migrate/migration-files.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// A migration that opts out of the transaction for CREATE INDEX CONCURRENTLY, applied by three
// deploys at once. With a blocking pg_advisory_lock the waiting sessions would hold snapshots the
// index build waits for, while they wait for the builder's lock: a deadlock nobody detects.
describe('migrate up with CREATE INDEX CONCURRENTLY under parallel deploys', () => {
  let db: TestDatabase;
  let dir: string;
  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
    dir = await mkdtemp(join(tmpdir(), 'hdb-migrations-'));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    await writeFile(
      join(dir, '9001_concurrent_index.ts'),
      `import type { MigrationBuilder } from 'node-pg-migrate';
export async function up(pgm: MigrationBuilder): Promise<void> {
  pgm.noTransaction();
  // Slow enough that the other deploys are polling for the lock while the index builds.
  pgm.sql("SELECT pg_sleep(1)");
  pgm.sql('CREATE INDEX CONCURRENTLY entities_name_idx ON entities (name)');
}
export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.noTransaction();
  pgm.sql('DROP INDEX CONCURRENTLY IF EXISTS entities_name_idx');
}
`,
    );
  });
  afterAll(async () => {
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('applies once, every deploy exits 0, and the index is valid', async () => {
    const results = await Promise.all(
      [1, 2, 3].map(() =>
        runCli(['migrate', 'up', '--migrations-dir', dir, '--database-url', db.url], {
          timeoutMs: 90_000,
        }),
      ),
    );
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const index = await db.client.query(
      `SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = 'entities_name_idx'::regclass`,
    );
    expect(index.rows).toEqual([{ indisvalid: true }]);
    const applied = await db.client.query(
      `SELECT count(*)::int AS n FROM hierarchy_db_migrations WHERE name = '9001_concurrent_index'`,
    );
    expect(applied.rows[0].n).toBe(1);
    const down = await runCli([
      'migrate',
      'down',
      '--migrations-dir',
      dir,
      '--database-url',
      db.url,
    ]);
    expect(down.code, down.stderr).toBe(0);
    const gone = await db.client.query(`SELECT to_regclass('entities_name_idx') AS idx`);
    expect(gone.rows[0].idx).toBeNull();
  });
});
