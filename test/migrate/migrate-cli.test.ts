import { appendFile, cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR } from '../../src/migrate/migration-files.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

const DERIVED = ['entities', 'mv_entity_ancestors', 'mv_descendant_counts'];

async function presentObjects(db: TestDatabase): Promise<string[]> {
  const { rows } = await db.client.query<{ name: string }>(
    `SELECT n AS name FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NOT NULL ORDER BY n`,
    [DERIVED],
  );
  return rows.map((r) => r.name);
}

describe('migrate (CLI)', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });
  async function emptyDatabase(): Promise<TestDatabase> {
    const db = await createTestDatabase({ migrated: false });
    cleanups.push(() => db.drop());
    return db;
  }

  it('applies on an empty database, reverts everything, and applies again', async () => {
    const db = await emptyDatabase();
    const up1 = await runCli(['migrate', 'up', '--database-url', db.url]);
    expect(up1.code, up1.stderr).toBe(0);
    expect(await presentObjects(db)).toEqual([...DERIVED].sort());
    // CONCURRENTLY works right after migrate up: the views are populated and uniquely indexed.
    await db.client.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors');
    await db.client.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_descendant_counts');

    // The migrations audit their own rebuilds: the audit holds rows, so this needs confirming.
    const down = await runCli([
      'migrate',
      'down',
      '--all',
      '--confirm-data-loss',
      '--database-url',
      db.url,
    ]);
    expect(down.code, down.stderr).toBe(0);
    expect(await presentObjects(db)).toEqual([]);
    const status = await runCli(['migrate', 'status', '--json', '--database-url', db.url]);
    expect(JSON.parse(status.stdout).applied).toEqual([]);

    const up2 = await runCli(['migrate', 'up', '--database-url', db.url]);
    expect(up2.code, up2.stderr).toBe(0);
    expect(await presentObjects(db)).toEqual([...DERIVED].sort());
  });

  it('reports up, down and the dry-run plan as one JSON document with --json', async () => {
    const db = await emptyDatabase();
    const applied = async () =>
      (
        await db.client.query<{ name: string }>(
          'SELECT name FROM hierarchy_db_migrations ORDER BY run_on, id',
        )
      ).rows.map((r) => r.name);
    const plan = await runCli(['migrate', 'up', '--dry-run', '--json', '--database-url', db.url]);
    expect(plan.code, plan.stderr).toBe(0);
    const planned = JSON.parse(plan.stdout).plan as { name: string; sql: string }[];
    expect(planned.length).toBeGreaterThanOrEqual(7);
    expect(planned[0]?.sql).toContain('CREATE TABLE');

    const up = await runCli(['migrate', 'up', '--json', '--database-url', db.url]);
    expect(up.code, up.stderr).toBe(0);
    expect(JSON.parse(up.stdout)).toEqual({ applied: await applied() });
    expect(JSON.parse(up.stdout).applied.map((n: string) => `${n}`)).toEqual(
      planned.map((p) => p.name),
    );

    const down = await runCli(['migrate', 'down', '--json', '--database-url', db.url]);
    expect(down.code, down.stderr).toBe(0);
    const reverted = JSON.parse(down.stdout).reverted as string[];
    expect(reverted).toEqual([planned[planned.length - 1]?.name]);
    expect(await applied()).toEqual(planned.slice(0, -1).map((p) => p.name));

    const again = await runCli(['migrate', 'up', '--json', '--database-url', db.url]);
    expect(JSON.parse(again.stdout)).toEqual({ applied: reverted });
  });

  it('refuses (exit 2, nothing reverted) to drop tables holding rows without --confirm-data-loss', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views(true)');
    const auditRows = (await db.client.query('SELECT count(*)::int AS n FROM mv_refresh_audit'))
      .rows[0].n;
    expect(auditRows).toBeGreaterThan(0);
    const applied = async () =>
      JSON.parse((await runCli(['migrate', 'status', '--json', '--database-url', db.url])).stdout)
        .applied.length;
    const before = await applied();

    const refused = await runCli(['migrate', 'down', '--all', '--database-url', db.url]);
    expect(refused.code, refused.stderr).toBe(2);
    const lines = refused.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('entities (2 rows');
    expect(lines[0]).toContain(`mv_refresh_audit (${auditRows} rows`);
    expect(lines[0]).toContain('--confirm-data-loss');
    expect(await applied()).toBe(before);
    expect(await presentObjects(db)).toEqual([...DERIVED].sort());

    const confirmed = await runCli([
      'migrate',
      'down',
      '--all',
      '--confirm-data-loss',
      '--database-url',
      db.url,
    ]);
    expect(confirmed.code, confirmed.stderr).toBe(0);
    expect(await applied()).toBe(0);
    expect(await presentObjects(db)).toEqual([]);
  });

  it('migrate down --count N reverts the last N (no data dropped, so no confirmation)', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a')`);
    const names = async (): Promise<string[]> =>
      JSON.parse(
        (await runCli(['migrate', 'status', '--json', '--database-url', db.url])).stdout,
      ).applied.map((m: { name: string }) => m.name);
    const before = await names();
    expect(before.length).toBeGreaterThanOrEqual(4);
    const down = await runCli(['migrate', 'down', '--count', '2', '--database-url', db.url]);
    expect(down.code, down.stderr).toBe(0);
    expect(await names()).toEqual(before.slice(0, -2));
    expect((await db.client.query('SELECT count(*)::int AS n FROM entities')).rows[0].n).toBe(1);
    const both = await runCli([
      'migrate',
      'down',
      '--count',
      '1',
      '--all',
      '--database-url',
      db.url,
    ]);
    expect(both.code).toBe(2);
    const bad = await runCli(['migrate', 'down', '--count', '0', '--database-url', db.url]);
    expect(bad.code).toBe(2);
    expect(await names()).toEqual(before.slice(0, -2));
  });

  it('takes destructive flags from the command line only, never from HIERARCHY_DB_* variables', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a')`);
    const applied = async () =>
      JSON.parse((await runCli(['migrate', 'status', '--json', '--database-url', db.url])).stdout)
        .applied.length;
    const before = await applied();
    for (const [variable, args] of [
      ['HIERARCHY_DB_ALL', ['migrate', 'down']],
      ['HIERARCHY_DB_COUNT', ['migrate', 'down']],
      ['HIERARCHY_DB_CONFIRM_DATA_LOSS', ['migrate', 'down', '--all']],
      ['HIERARCHY_DB_REPLACE', ['seed', '--entities', '5']],
    ] as const) {
      const result = await runCli([...args, '--database-url', db.url], {
        env: { [variable]: variable === 'HIERARCHY_DB_COUNT' ? '5' : 'true' },
      });
      expect(result.code, `${variable}: ${result.stderr}`).toBe(2);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toContain(variable);
    }
    expect(await applied()).toBe(before);
    const { rows } = await db.client.query('SELECT name FROM entities');
    expect(rows).toEqual([{ name: 'a' }]);
    // A withheld variable does not disturb commands without that flag.
    const status = await runCli(['migrate', 'status', '--database-url', db.url], {
      env: { HIERARCHY_DB_ALL: 'true' },
    });
    expect(status.code, status.stderr).toBe(0);
  }, 120_000);

  it('is safe when three deploys run it at the same moment', async () => {
    const db = await emptyDatabase();
    const results = await Promise.all(
      [1, 2, 3].map(() => runCli(['migrate', 'up', '--database-url', db.url])),
    );
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const { rows } = await db.client.query(
      'SELECT name, count(*)::int AS n FROM hierarchy_db_migrations GROUP BY name ORDER BY name',
    );
    const files = (await runCli(['migrate', 'status', '--json', '--database-url', db.url])).stdout;
    const status = JSON.parse(files);
    expect(status.pending).toEqual([]);
    expect(rows.length).toBe(status.applied.length);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    const invalid = await db.client.query(
      'SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid',
    );
    expect(invalid.rows).toEqual([]);
  });

  it('reports status as JSON in the documented shape', async () => {
    const db = await emptyDatabase();
    const before = await runCli(['migrate', 'status', '--json', '--database-url', db.url]);
    expect(before.code).toBe(0);
    const pending = JSON.parse(before.stdout);
    expect(pending.applied).toEqual([]);
    expect(pending.pending.length).toBeGreaterThanOrEqual(2);
    expect(pending.modified).toEqual([]);
    await runCli(['migrate', 'up', '--database-url', db.url]);
    const after = JSON.parse(
      (await runCli(['migrate', 'status', '--json', '--database-url', db.url])).stdout,
    );
    expect(after.pending).toEqual([]);
    expect(after.applied.map((m: { name: string }) => m.name)).toEqual(pending.pending);
    for (const m of after.applied) expect(Number.isNaN(Date.parse(m.run_on))).toBe(false);
  });

  it('--dry-run prints the SQL and writes nothing', async () => {
    const db = await emptyDatabase();
    const catalog = async () =>
      (
        await db.client.query(
          `SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'public'::regnamespace`,
        )
      ).rows[0].n;
    const before = await catalog();
    const dry = await runCli(['migrate', 'up', '--dry-run', '--database-url', db.url]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('CREATE TABLE entities');
    expect(dry.stdout).toContain('CREATE MATERIALIZED VIEW mv_entity_ancestors');
    expect(await catalog()).toBe(before);
    const ext = await db.client.query(
      `SELECT count(*)::int AS n FROM pg_extension WHERE extname IN ('ltree', 'btree_gist')`,
    );
    expect(ext.rows[0].n).toBe(0);
  });

  it('refuses to run when an applied migration file was modified, naming it', async () => {
    const db = await emptyDatabase();
    const dir = await mkdtemp(join(tmpdir(), 'hdb-migrations-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    const up = await runCli(['migrate', 'up', '--migrations-dir', dir, '--database-url', db.url]);
    expect(up.code, up.stderr).toBe(0);

    await appendFile(join(dir, '0001_entities.ts'), '\n// edited after release\n');
    const status = await runCli([
      'migrate',
      'status',
      '--json',
      '--migrations-dir',
      dir,
      '--database-url',
      db.url,
    ]);
    expect(status.code).toBe(1);
    expect(JSON.parse(status.stdout).modified).toEqual(['0001_entities.ts']);
    expect(status.stderr).toContain('0001_entities.ts');

    const refused = await runCli([
      'migrate',
      'up',
      '--migrations-dir',
      dir,
      '--database-url',
      db.url,
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('0001_entities.ts');
    // One error record (stderr is a pipe, so the logs are JSON), naming the file.
    const failures = refused.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event?: string; msg: string })
      .filter((l) => l.event === 'command.failed');
    expect(failures).toHaveLength(1);
    expect(failures[0]!.msg).toContain('0001_entities.ts');
  });

  it('migrate create writes a numbered file from the template', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hdb-migrations-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
    const created = await runCli(['migrate', 'create', 'add_kind', '--migrations-dir', dir]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout.trim()).toMatch(/\/\d{4}_add_kind\.ts$/);
    const bad = await runCli(['migrate', 'create', 'bad name!', '--migrations-dir', dir]);
    expect(bad.code).toBe(2);
  });
});
