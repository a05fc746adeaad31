import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listMigrationFiles } from '../src/migrate/migration-files.ts';
import { runNode } from './helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from './helpers/test-database.ts';

// The README's library example runs as written: a plain ES module importing `hierarchy-db` (this
// package, resolved through its `exports` to dist/) against an empty database.

const ROOT = fileURLToPath(new URL('../', import.meta.url));

async function readmeExample(): Promise<string> {
  const text = await readFile(join(ROOT, 'README.md'), 'utf8');
  const section = text.slice(text.indexOf('\n## Library\n'));
  const match = /```js\n([\s\S]*?)\n```/.exec(section);
  expect(match, 'a ```js block in the README section "Library"').not.toBeNull();
  return match![1]!;
}

describe('README library example', () => {
  let db: TestDatabase;
  let file: string;

  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
    // Inside the package, so that `hierarchy-db` resolves to it (a package's self-reference).
    const dir = join(ROOT, '.tmp');
    await mkdir(dir, { recursive: true });
    file = join(dir, `readme-example-${process.pid}.mjs`);
    await writeFile(file, await readmeExample());
  });
  afterAll(async () => {
    await rm(file, { force: true });
    await db?.drop();
  });

  it('migrates, refreshes and reads the status from code', async () => {
    const result = await runNode([file], { env: { DATABASE_URL: db.url }, timeoutMs: 120_000 });
    expect(result.code, result.stderr).toBe(0);
    const migrations = await listMigrationFiles();
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toBe(`applied ${migrations.length} migration(s)`);
    for (const view of ['mv_entity_ancestors', 'mv_descendant_counts']) {
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^refresh ${view}: \\w+$`)));
      expect(lines).toContainEqual(
        expect.stringMatching(new RegExp(`^status ${view}: populated=true staleness_ms=\\d+$`)),
      );
    }
    const applied = await db.client.query('SELECT count(*) AS n FROM hierarchy_db_migrations');
    expect(applied.rows[0].n).toBe(migrations.length);
  });
});
