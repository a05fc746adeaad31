import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SCHEMA_LOCK_KEY } from '../../src/migrate/advisory-lock.ts';
import { canRunAsPid1, type RunningCli, startCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import { waitUntil } from '../helpers/wait-until.ts';

/** From the signal to the process's exit: cancel and close (3 s bound), then exit. */
const PROMPT_EXIT_MS = 10_000;

// Every command stops promptly on SIGTERM/SIGINT (README, "Commands"): it cancels what it runs,
// closes its sessions (releasing their locks) and exits 143/130. The CLI runs as PID 1 of a PID
// namespace of its own where possible: there, as in a container without an init, a signal with
// no handler is ignored and the process would run on until killed.
describe('stop signals', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  beforeAll(() => {
    if (!canRunAsPid1()) {
      process.stderr.write(
        '[signals] unshare --pid is not available: the CLI runs as an ordinary child (a missing handler then shows as death by signal, not as a hang)\n',
      );
    }
  });

  async function database(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
    const db = await createTestDatabase(options);
    cleanups.push(() => db.drop());
    return db;
  }
  async function session(db: TestDatabase): Promise<pg.Client> {
    const client = new pg.Client(db.url);
    client.on('error', () => {});
    await client.connect();
    cleanups.push(() => client.end().catch(() => {}));
    return client;
  }
  async function cli(args: string[]): Promise<RunningCli> {
    const running = await startCli(args);
    cleanups.push(async () => {
      running.kill();
      await running.exited;
    });
    return running;
  }
  /** Sends `signal` and waits for the exit, failing when it takes longer than the bound. */
  async function stop(running: RunningCli, signal: NodeJS.Signals) {
    const sent = Date.now();
    process.kill(running.pid, signal);
    const outcome = await Promise.race([
      running.exited,
      new Promise<'still running'>((resolve) =>
        setTimeout(() => resolve('still running'), PROMPT_EXIT_MS + 5_000),
      ),
    ]);
    return { outcome, ms: Date.now() - sent };
  }
  const backends = async (db: TestDatabase, applicationName: string, queryLike = '%') =>
    (
      await db.client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = $1 AND query LIKE $2`,
        [applicationName, queryLike],
      )
    ).rows[0]!.n;

  it.for<[NodeJS.Signals, number]>([
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ])(
    'migrate up waiting for the migration lock exits %s promptly with %i, its sessions closed',
    { timeout: 120_000 },
    async ([signal, code]) => {
      const db = await database();
      const holder = await session(db);
      await holder.query('SELECT pg_advisory_lock($1::bigint)', [SCHEMA_LOCK_KEY.toString()]);
      const running = await cli(['migrate', 'up', '--database-url', db.url]);
      await waitUntil(
        () => running.stderr().includes('"migrate.lock_wait"'),
        60_000,
        'migrate up waiting for the schema lock',
      );
      expect(await backends(db, 'hierarchy-db/migrate')).toBeGreaterThan(0);

      const { outcome, ms } = await stop(running, signal);
      expect(outcome, running.stderr()).toEqual({ code, signal: null });
      expect(ms).toBeLessThan(PROMPT_EXIT_MS);
      // Its logs are JSON (stderr is a pipe): the last line is the record of the signal.
      expect(JSON.parse(running.stderr().trim().split('\n').at(-1)!)).toMatchObject({
        event: 'command.interrupted',
        signal,
        exit_code: code,
        msg: `${signal}: cancelling running statements and exiting`,
      });
      await waitUntil(
        async () => (await backends(db, 'hierarchy-db/migrate')) === 0,
        5_000,
        'the sessions of the stopped migrate up to end',
      );
    },
  );

  it('migrate up holding the migration lock in a long migration cancels it and releases the lock on SIGTERM', async () => {
    const db = await database({ migrated: false });
    const dir = await mkdtemp(join(tmpdir(), 'hdb-signal-migrations-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(
      join(dir, '0001_slow.sql'),
      '-- Up Migration\nSELECT pg_sleep(600);\n-- Down Migration\n',
    );
    const running = await cli(['migrate', 'up', '--migrations-dir', dir, '--database-url', db.url]);
    await waitUntil(
      async () => (await backends(db, 'hierarchy-db/migrate', '%pg_sleep(600)%')) === 1,
      60_000,
      'the slow migration running',
    );
    const tryLock = async () =>
      (
        await db.client.query<{ locked: boolean }>(
          'SELECT pg_try_advisory_lock($1::bigint) AS locked',
          [SCHEMA_LOCK_KEY.toString()],
        )
      ).rows[0]!.locked;
    expect(await tryLock()).toBe(false);

    const { outcome, ms } = await stop(running, 'SIGTERM');
    expect(outcome, running.stderr()).toEqual({ code: 143, signal: null });
    expect(ms).toBeLessThan(PROMPT_EXIT_MS);
    // Cancelled, not left sleeping on the server, and the lock is free again.
    await waitUntil(
      async () => (await backends(db, 'hierarchy-db/migrate')) === 0,
      5_000,
      'the migration and its lock session to end',
    );
    expect(await tryLock()).toBe(true);
    await db.client.query('SELECT pg_advisory_unlock($1::bigint)', [SCHEMA_LOCK_KEY.toString()]);
    const applied = await db.client.query(
      `SELECT to_regclass('hierarchy_db_migrations') IS NULL OR NOT EXISTS (SELECT 1 FROM hierarchy_db_migrations) AS none`,
    );
    expect(applied.rows[0].none).toBe(true);
  }, 120_000);

  it('a long refresh is cancelled on SIGTERM, leaving the refresh free to run again', async () => {
    const db = await database();
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views(true)');
    // An open REFRESH elsewhere holds the view's lock: the CLI's refresh waits on it.
    const blocker = await session(db);
    await blocker.query('BEGIN');
    await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors');
    const running = await cli([
      'refresh',
      '--force',
      '--statement-timeout',
      '0',
      '--lock-timeout',
      '0',
      '--database-url',
      db.url,
    ]);
    await waitUntil(
      async () =>
        (
          await db.client.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'hierarchy-db/cli'
                AND wait_event_type = 'Lock'`,
          )
        ).rows[0]!.n === 1,
      60_000,
      'the refresh waiting for the view lock',
    );

    const { outcome, ms } = await stop(running, 'SIGTERM');
    expect(outcome, running.stderr()).toEqual({ code: 143, signal: null });
    expect(ms).toBeLessThan(PROMPT_EXIT_MS);
    await waitUntil(
      async () => (await backends(db, 'hierarchy-db/cli')) === 0,
      5_000,
      'the refresh session to end',
    );
    await blocker.query('COMMIT');
    // The refresh's single-flight lock went with its transaction: a new refresh runs.
    const { rows } = await db.client.query('SELECT status FROM refresh_hierarchy_views(true)');
    expect(rows.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);
  }, 120_000);
});
