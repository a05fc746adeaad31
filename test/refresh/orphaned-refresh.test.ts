import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  killDaemons,
  refreshWaitingOnLock,
  startDaemon,
  waitForReady,
  waitUntil,
} from '../daemon/daemon-process.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// A refresh whose client died (docs/semantics.md, "Single-flight"): the refresh session checks
// its client connection every second (client_connection_check_interval), so a daemon killed
// with SIGKILL mid-refresh leaves no backend behind holding the single-flight lock, and
// `status` names the refresh in progress while it runs, also for a role with only
// hierarchy_reader and hierarchy_refresher.
describe('a refresh whose client was killed', () => {
  let db: TestDatabase;
  let blocker: pg.Client | undefined;
  const login = `hdbt_status_${randomBytes(3).toString('hex')}`;
  // The embedded server asks for a password (md5/scram), the machine's may trust: give one.
  const password = randomBytes(12).toString('hex');
  let loginUrl: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    await db.client.query(
      `CREATE ROLE ${login} LOGIN PASSWORD '${password}' IN ROLE hierarchy_reader, hierarchy_refresher`,
    );
    const url = new URL(db.url);
    url.username = login;
    url.password = password;
    loginUrl = url.toString();
  });
  afterEach(async () => {
    await blocker?.query('ROLLBACK').catch(() => {});
    await blocker?.end().catch(() => {});
    blocker = undefined;
    await killDaemons();
  });
  afterAll(async () => {
    await killDaemons();
    if (db) {
      await db.client.query(`DROP OWNED BY ${login}`).catch(() => {});
      await db.client.query(`DROP ROLE IF EXISTS ${login}`).catch(() => {});
      await db.drop();
    }
  });

  const status = async () => {
    const result = await runCli(['status', '--json', '--database-url', loginUrl]);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout);
  };

  it('ends within seconds of a SIGKILL, frees single-flight, and status names it while it runs', async () => {
    const daemon = startDaemon(db.url, [
      '--on-change',
      '--debounce',
      '100ms',
      '--lock-timeout',
      '60s',
    ]);
    await waitForReady(daemon);
    // Another session holds the view's EXCLUSIVE lock (its own uncommitted REFRESH ...
    // CONCURRENTLY; LOCK TABLE refuses materialized views): the daemon's refresh waits for it.
    blocker = new pg.Client(db.url);
    blocker.on('error', () => {});
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('REFRESH MATERIALIZED VIEW CONCURRENTLY mv_entity_ancestors');
    await db.client.query(`UPDATE entities SET name = 'orphan' WHERE path = 'a.b'`);
    const pid = await refreshWaitingOnLock(db.client, daemon);

    const during = await status();
    expect(during.refresh_in_progress).toMatchObject({
      pid,
      application_name: 'hierarchy-db/daemon',
      state: 'active',
      wait_event: expect.stringMatching(/^Lock\//),
      views: ['mv_entity_ancestors'],
      view: 'mv_entity_ancestors',
    });
    expect(Date.parse(during.refresh_in_progress.started_at)).toBeLessThanOrEqual(Date.now());

    const killedAt = Date.now();
    daemon.child.kill('SIGKILL');
    await daemon.exited;
    // Without the connection check the backend would wait out the 60 s lock timeout.
    const goneAfterMs = await waitUntil(
      async () =>
        (await db.client.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount ===
        0,
      8_000,
      `backend ${pid} of the killed daemon ends`,
    );
    expect(Date.now() - killedAt).toBeLessThan(8_000);
    expect(goneAfterMs).toBeLessThan(8_000);

    // The single-flight lock went with it: another refresh runs (the blocker still holds only
    // mv_entity_ancestors), instead of being skipped with lock_busy.
    const refresh = await runCli([
      'refresh',
      '--force',
      '--view',
      'mv_descendant_counts',
      '--json',
      '--database-url',
      loginUrl,
    ]);
    expect(refresh.code, refresh.stderr).toBe(0);
    expect(JSON.parse(refresh.stdout).results).toMatchObject([
      { view: 'mv_descendant_counts', status: 'refreshed' },
    ]);
    expect((await status()).refresh_in_progress).toBeNull();
  });
});
