import { appendFile, cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR } from '../../src/migrate/migration-files.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// A pending or modified migration is reported by verify and never "repaired": that is
// migrate's job, and repair refuses to rebuild anything while the files and the database
// disagree (its canonical definitions come from those files).

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function setup(): Promise<{ db: TestDatabase; dir: string }> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const dir = await mkdtemp(join(tmpdir(), 'hdb-verify-migrations-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await cp(MIGRATIONS_DIR, dir, { recursive: true });
  return { db, dir };
}

async function bookkeeping(db: TestDatabase): Promise<unknown[]> {
  const { rows } = await db.client.query(
    `SELECT m.name, c.checksum FROM hierarchy_db_migrations m
       LEFT JOIN hierarchy_db_migration_checksums c USING (name) ORDER BY m.id`,
  );
  return rows;
}

describe('verify and repair with migrations out of step', () => {
  it('reports a pending migration; repair refuses and applies nothing', async () => {
    const { db, dir } = await setup();
    await writeFile(
      join(dir, '0099_verify_extra.ts'),
      `import type { MigrationBuilder } from 'node-pg-migrate';
export async function up(pgm: MigrationBuilder): Promise<void> {
  pgm.sql('CREATE TABLE verify_extra (id int)');
}
export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.sql('DROP TABLE verify_extra');
}
`,
    );
    await db.client.query('DROP MATERIALIZED VIEW mv_descendant_counts');
    const before = await bookkeeping(db);

    const verify = await runCli([
      'verify',
      '--json',
      '--migrations-dir',
      dir,
      '--database-url',
      db.url,
    ]);
    expect(verify.code).toBe(1);
    const report = JSON.parse(verify.stdout);
    const pending = report.checks.find((c: { name: string }) => c.name === 'migrations applied');
    expect(pending).toMatchObject({ ok: false, fix: 'hierarchy-db migrate up' });
    expect(pending.detail).toContain('0099_verify_extra');

    for (const args of [['--dry-run'], []]) {
      const repair = await runCli([
        'repair',
        ...args,
        '--migrations-dir',
        dir,
        '--database-url',
        db.url,
      ]);
      expect(repair.code).toBe(1);
      expect(repair.stderr).toContain('not repairing');
      expect(repair.stderr).toContain('0099_verify_extra');
    }
    expect(await bookkeeping(db)).toEqual(before);
    const { rows } = await db.client.query(
      `SELECT to_regclass('verify_extra') AS extra, to_regclass('mv_descendant_counts') AS view`,
    );
    // Neither the pending migration nor anything else was applied.
    expect(rows).toEqual([{ extra: null, view: null }]);
  });

  it('reports a modified migration; repair refuses and records nothing', async () => {
    const { db, dir } = await setup();
    await appendFile(join(dir, '0002_hierarchy_views.ts'), '\n// edited after release\n');
    await db.client.query('DROP INDEX entities_depth_path_gist');
    const before = await bookkeeping(db);

    const verify = await runCli([
      'verify',
      '--json',
      '--migrations-dir',
      dir,
      '--database-url',
      db.url,
    ]);
    expect(verify.code).toBe(1);
    const report = JSON.parse(verify.stdout);
    const modified = report.checks.find(
      (c: { name: string }) => c.name === 'migrations unmodified',
    );
    expect(modified.ok).toBe(false);
    expect(modified.detail).toContain('0002_hierarchy_views.ts');
    expect(report.checks.find((c: { name: string }) => c.name === 'migrations applied').ok).toBe(
      true,
    );

    const repair = await runCli(['repair', '--migrations-dir', dir, '--database-url', db.url]);
    expect(repair.code).toBe(1);
    expect(repair.stderr).toContain('0002_hierarchy_views.ts');
    expect(await bookkeeping(db)).toEqual(before);
    const { rows } = await db.client.query(`SELECT to_regclass('entities_depth_path_gist') AS idx`);
    expect(rows).toEqual([{ idx: null }]);
  });
});
