import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// `--schema NAME` (README, "Commands"): one schema for the migrations table, every object and each
// session's search_path, so migrate up, migrate status and verify agree on where things are. Without
// it node-pg-migrate keeps its table in public while the objects follow the search_path.
describe('--schema', () => {
  let db: TestDatabase;
  const cli = (...args: string[]) =>
    runCli(['--schema', 'app', ...args, '--log-level', 'warn', '--database-url', db.url]);
  const relationsIn = async (schema: string) =>
    (
      await db.client.query<{ name: string }>(
        `SELECT c.relname AS name FROM pg_class c
          WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
            AND c.relkind IN ('r', 'm', 'v') ORDER BY 1`,
        [schema],
      )
    ).rows.map((r) => r.name);

  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
    // The role's default search_path names the app schema first, as an operator's would.
    await db.client.query(`ALTER DATABASE ${db.name} SET search_path = app, public`);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('migrate up creates the schema and puts the migrations table and every object in it', async () => {
    const up = await cli('migrate', 'up');
    expect(up.code, up.stderr).toBe(0);
    const app = await relationsIn('app');
    for (const name of [
      'hierarchy_db_migrations',
      'hierarchy_db_migration_checksums',
      'entities',
      'mv_entity_ancestors',
      'mv_descendant_counts',
      'mv_refresh_audit',
    ]) {
      expect(app).toContain(name);
    }
    expect(await relationsIn('public')).toEqual([]);
  }, 120_000);

  it('migrate status, migrate up and verify agree', async () => {
    const status = await cli('migrate', 'status', '--json');
    expect(status.code, status.stderr).toBe(0);
    const doc = JSON.parse(status.stdout);
    expect(doc.pending).toEqual([]);
    expect(doc.applied.length).toBeGreaterThanOrEqual(5);
    const again = await cli('migrate', 'up');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim()).toBe('schema is up to date');
    const verify = await cli('verify', '--json');
    expect(verify.code, verify.stdout).toBe(0);
    expect(JSON.parse(verify.stdout).ok).toBe(true);
  }, 120_000);

  it('refresh and status work in it', async () => {
    await db.client.query(`INSERT INTO app.entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    const refresh = await cli('refresh', '--json');
    expect(refresh.code, refresh.stderr).toBe(0);
    expect(JSON.parse(refresh.stdout).results.map((r: { status: string }) => r.status)).toEqual([
      'refreshed',
      'refreshed',
    ]);
    const status = await cli('status', '--json');
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).ok).toBe(true);
  }, 120_000);

  it('refuses a name that is not a plain lower-case identifier (exit 2)', async () => {
    for (const name of ['App', 'a b', 'x;drop', 'pg_app', '1abc']) {
      const result = await runCli([
        '--schema',
        name,
        'migrate',
        'status',
        '--database-url',
        db.url,
      ]);
      expect(result.code, name).toBe(2);
      expect(result.stderr).toContain('--schema: expected a lower-case schema name');
    }
  }, 120_000);
});
