import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// A reader that stops early (`hierarchy-db ... | head`): no stack trace, the exit code of the
// command itself, and the command still finishes (src/cli/main.ts).
describe('stdout closed by its reader', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase({ migrated: false });
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** `hierarchy-db ARGS | head -n 1` under `pipefail`: the pipeline's status is the CLI's. */
  function throughHead(args: string[]) {
    const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    return spawnSync(
      'bash',
      [
        '-o',
        'pipefail',
        '-c',
        `${JSON.stringify(process.execPath)} ${CLI_PATH} ${quoted} | head -n 1`,
      ],
      {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, HIERARCHY_DB_LOG_LEVEL: 'warn' },
      },
    );
  }

  it('ends a dry run quietly with exit 0, and a real migrate up still applies everything', async () => {
    const dryRun = throughHead(['migrate', 'up', '--dry-run', '--database-url', db.url]);
    expect(dryRun.stdout).toBe('-- 0001_entities\n');
    expect(dryRun.stderr).not.toMatch(/EPIPE|Unhandled|at /);
    expect(dryRun.status, dryRun.stderr).toBe(0);

    const up = throughHead(['migrate', 'up', '--database-url', db.url]);
    expect(up.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(up.status, up.stderr).toBe(0);
    const { rows } = await db.client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM hierarchy_db_migrations',
    );
    expect(rows[0]!.n).toBeGreaterThanOrEqual(7);

    // Output longer than a pipe's buffer, cut after its first line.
    const verify = throughHead(['verify', '--database-url', db.url, '--json']);
    expect(verify.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(verify.status, verify.stderr).toBe(0);
  }, 120_000);
});
