import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// `status` says what fixes what it found (README, "hierarchy-db status"): a dropped view only
// `repair` recreates; an unpopulated or stale one a refresh fixes.
describe('status advice', () => {
  let db: TestDatabase;
  const cli = (...args: string[]) =>
    runCli([...args, '--log-level', 'warn', '--database-url', db.url]);

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views(true)');
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('sends a dropped view to repair, not to refresh (which cannot bring it back)', async () => {
    await db.client.query('DROP MATERIALIZED VIEW mv_descendant_counts');
    const status = await cli('status');
    expect(status.code, status.stderr).toBe(1);
    expect(status.stdout).toMatch(/^mv_descendant_counts\s+materialized\s+MISSING/m);
    expect(status.stdout).toContain(
      'NOT OK: mv_descendant_counts does not exist; run `hierarchy-db repair` to recreate it (a refresh cannot)',
    );
    expect(status.stdout).not.toContain('hierarchy-db refresh');
    const json = JSON.parse((await cli('status', '--json')).stdout);
    expect(
      json.views.map((v: { view: string; relation_kind: string | null }) => [
        v.view,
        v.relation_kind,
      ]),
    ).toEqual([
      ['mv_entity_ancestors', 'materialized view'],
      ['mv_descendant_counts', null],
    ]);

    // The advice is right: a refresh leaves it missing, repair recreates it.
    await cli('refresh', '--force');
    expect((await cli('status')).stdout).toContain('mv_descendant_counts does not exist');
    const repair = await cli('repair');
    expect(repair.code, repair.stdout + repair.stderr).toBe(0);
    const after = await cli('status');
    expect(after.code, after.stdout).toBe(0);
    expect(after.stdout).not.toContain('NOT OK');
  }, 180_000);

  it('sends an unpopulated view to refresh', async () => {
    await db.client.query('REFRESH MATERIALIZED VIEW mv_entity_ancestors WITH NO DATA');
    const status = await cli('status');
    expect(status.code).toBe(1);
    expect(status.stdout).toContain(
      'NOT OK: mv_entity_ancestors not populated; run `hierarchy-db refresh`',
    );
    expect(status.stdout).not.toContain('repair');
    expect((await cli('refresh')).code).toBe(0);
    expect((await cli('status')).code).toBe(0);
  }, 120_000);
});
