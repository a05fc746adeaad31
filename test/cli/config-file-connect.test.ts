import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// A deployment that keeps its flags in a file (src/cli/config-file.ts): the connection and a
// command's flags come from it, and DATABASE_URL still wins over the file's URL.
describe('--config against a database', () => {
  let db: TestDatabase;
  const dir = mkdtempSync(join(tmpdir(), 'hierarchy-db-config-'));

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('connects with the file URL and takes the section flags', async () => {
    const config = join(dir, 'hierarchy-db.yaml');
    writeFileSync(
      config,
      [
        `database-url: ${JSON.stringify(db.url)}`,
        'log-level: warn',
        'refresh:',
        '  force: true',
        '  json: true',
        'status:',
        '  json: true',
        '',
      ].join('\n'),
    );
    const refresh = await runCli(['refresh', '--config', config]);
    expect(refresh.code, refresh.stderr).toBe(0);
    const refreshed = JSON.parse(refresh.stdout) as { results: { view: string; status: string }[] };
    expect(refreshed.results.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);

    const status = await runCli(['status', '--config', config]);
    expect(status.code, status.stderr).toBe(0);
    const json = JSON.parse(status.stdout) as { views: { view: string; populated: boolean }[] };
    expect(json.views.map((v) => [v.view, v.populated])).toEqual([
      ['mv_entity_ancestors', true],
      ['mv_descendant_counts', true],
    ]);
    const { rows } = await db.client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM mv_refresh_audit WHERE trigger = 'manual'`,
    );
    expect(rows[0]!.n).toBe(2);

    // DATABASE_URL is an environment variable: it wins over the file. Here it points at a
    // closed port, so the command cannot reach the file's database.
    const overridden = await runCli(['status', '--config', config], {
      env: { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none?connect_timeout=2' },
    });
    expect(overridden.code).toBe(3);
  }, 120_000);
});
