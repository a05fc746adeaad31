import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedServer, startEmbeddedServer } from '../../src/db/embedded-server.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { Migrator } from '../../src/migrate/migrator.ts';
import { killDaemons, startDaemon, waitForReady, waitUntil } from './daemon-process.ts';

// The database going away (docs/semantics.md, "Faults"): the daemon keeps running, reports not-ready,
// reconnects with backoff, re-LISTENs and refreshes what changed. A server of its own, since the
// test stops it.
describe('daemon across a database restart', () => {
  let server: EmbeddedServer;
  let client: pg.Client | undefined;

  beforeAll(async () => {
    server = await startEmbeddedServer();
    await new Migrator({
      connection: { target: { url: server.url, source: 'flag', display: 'restart-test' } },
      logger: createLogger('warn'),
    }).up();
  });
  afterEach(async () => {
    await killDaemons();
    await client?.end().catch(() => {});
  });
  afterAll(async () => {
    await killDaemons();
    await server?.destroy();
  });

  const connect = async () => {
    const c = new pg.Client(server.url);
    c.on('error', () => {});
    await c.connect();
    return c;
  };

  it('keeps its pid, answers /readyz 503 then 200, and refreshes a change made after the restart', async () => {
    client = await connect();
    await client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    await client.query('SELECT * FROM refresh_hierarchy_views()');
    await client.end();

    const daemon = startDaemon(server.url, ['--on-change', '--debounce', '200ms']);
    await waitForReady(daemon);
    const pid = daemon.child.pid;

    const stoppedAt = Date.now();
    await server.stop();
    await waitForReady(daemon, 5_000, 503);
    const notReady = await daemon.get('/readyz');
    expect(notReady.status).toBe(503);
    expect(JSON.parse(notReady.body).reasons).toContain('database unreachable');
    const metricsWhileDown = await daemon.get('/metrics');
    expect(metricsWhileDown.status).toBe(200);
    expect(metricsWhileDown.body).toMatch(/^hierarchy_db_up 0$/m);
    // Staleness and pending changes are unknown while the database is away: no frozen sample.
    expect(metricsWhileDown.body).not.toMatch(/^hierarchy_view_staleness_seconds\{/m);
    expect(metricsWhileDown.body).not.toMatch(/^hierarchy_view_pending_changes\{/m);
    expect(metricsWhileDown.body).toMatch(/^hierarchy_last_refresh_success_timestamp_seconds\{/m);
    await sleep(Math.max(0, 5_000 - (Date.now() - stoppedAt)));
    expect(daemon.child.exitCode).toBeNull();

    await server.start();
    // Reconnect backoff is capped at 15 s (with jitter); after a 5 s outage the next attempt
    // comes within about 8 s.
    await waitForReady(daemon, 20_000, 200);
    expect(daemon.child.pid).toBe(pid);
    expect(daemon.child.exitCode).toBeNull();
    await daemon.waitForLog((l) => l.event === 'db.up');
    await waitUntil(
      async () =>
        /^hierarchy_view_staleness_seconds\{view="mv_entity_ancestors"\} 0$/m.test(
          (await daemon.get('/metrics')).body,
        ),
      5_000,
      'staleness is sampled again once the database is back',
    );
    // The change probe failed while the database was away (and backed off), then recovered.
    expect(daemon.logs.some((l) => l.event === 'change.probe_failed')).toBe(true);
    const reconnects = daemon.logs.filter((l) => l.event === 'db.reconnect');
    expect(reconnects.length).toBeGreaterThanOrEqual(2);
    // Exponential: the waits grow (each within [half, all] of its doubling ceiling).
    const delays = reconnects.map((l) => Number(l.delay_ms));
    expect(delays[delays.length - 1]).toBeGreaterThan(delays[0] as number);
    // Every log line came from the one process.
    expect(new Set(daemon.logs.filter((l) => l.pid !== undefined).map((l) => l.pid))).toEqual(
      new Set([pid]),
    );

    client = await connect();
    await client.query(`UPDATE entities SET name = 'b-after-restart' WHERE path = 'a.b'`);
    const c = client;
    await waitUntil(
      async () => {
        const { rows } = await c.query(`SELECT name FROM mv_entity_ancestors WHERE path = 'a.b'`);
        return rows[0]?.name === 'b-after-restart';
      },
      5_000,
      'the change made after the restart is refreshed',
    );
    const { rows } = await client.query(
      `SELECT trigger, status FROM mv_refresh_audit
        WHERE view_name = 'mv_entity_ancestors' ORDER BY id DESC LIMIT 1`,
    );
    expect(rows[0]).toEqual({ trigger: 'change', status: 'refreshed' });
    if (process.env.DAEMON_TEST_LOGS) console.log(daemon.stderr());
  });
});
