import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import { killDaemons, startDaemon, waitForReady, waitUntil } from './daemon-process.ts';

interface AuditRow {
  view_name: string;
  started_at: Date;
  finished_at: Date;
  backend_pid: number;
}

// Several replicas against one database (docs/semantics.md, "Schedule"): each due refresh happens once and
// refreshes never overlap; the database decides, not the processes.
describe('daemon replicas', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(
      `INSERT INTO entities (name, path)
       SELECT 'n' || i, ('r.n' || i)::ltree FROM generate_series(1, 200) i
        UNION ALL SELECT 'r', 'r' ORDER BY 2`,
    );
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
  });
  afterEach(killDaemons);
  afterAll(async () => {
    await killDaemons();
    await db?.drop();
  });

  it('two daemons on a 1 s schedule: no overlapping refreshes, refreshes per view <= ticks', async () => {
    // Ticks, and ticks another replica served, are logged at debug.
    const args = ['--schedule', '* * * * * *', '--log-level', 'debug'];
    const a = startDaemon(db.url, args);
    const b = startDaemon(db.url, args);
    await Promise.all([waitForReady(a), waitForReady(b)]);

    const windowStart = new Date();
    let i = 0;
    while (Date.now() - windowStart.getTime() < 10_000) {
      await db.client.query(`UPDATE entities SET name = $1 WHERE path = 'r.n1'`, [`w${i++}`]);
      await sleep(300);
    }
    const lastName = `w${i - 1}`;
    // The tick after the last write reflects it.
    await waitUntil(
      async () => {
        const { rows } = await db.client.query(
          'SELECT sum(pending_changes)::int AS n FROM hierarchy_view_status()',
        );
        return rows[0].n === 0;
      },
      10_000,
      'every change written in the window is reflected in both views',
    );

    // Ticks of the window, and those of the second before it: a tick claimed just before the
    // window may start its refresh inside it when the machine is loaded.
    const slots = new Set<string>();
    const slotsWithLeadIn = new Set<string>();
    for (const daemon of [a, b]) {
      for (const line of daemon.logs) {
        if (line.event !== 'schedule.tick') continue;
        const slot = Date.parse(String(line.slot));
        if (slot >= windowStart.getTime()) slots.add(String(line.slot));
        if (slot >= windowStart.getTime() - 1_000) slotsWithLeadIn.add(String(line.slot));
      }
    }
    const { rows } = await db.client.query<AuditRow>(
      `SELECT view_name, started_at, finished_at, backend_pid FROM mv_refresh_audit
        WHERE trigger = 'schedule' AND status = 'refreshed' AND started_at >= $1
        ORDER BY started_at`,
      [windowStart],
    );
    const ticks = slots.size;
    expect(ticks).toBeGreaterThanOrEqual(9);
    for (const view of ['mv_entity_ancestors', 'mv_descendant_counts']) {
      const refreshes = rows.filter((r) => r.view_name === view);
      // Changes arrive 3 times a tick, so (nearly) every tick has something to refresh...
      expect(
        refreshes.length,
        `${view}: ${refreshes.length} refreshes, ${ticks} ticks`,
      ).toBeGreaterThanOrEqual(ticks - 2);
      // ...but never more than once per tick, whichever replica did it.
      expect(
        refreshes.length,
        `${view}: ${refreshes.length} refreshes, ${slotsWithLeadIn.size} ticks with the lead-in`,
      ).toBeLessThanOrEqual(slotsWithLeadIn.size);
      for (let k = 1; k < refreshes.length; k++) {
        const previous = refreshes[k - 1] as AuditRow;
        const current = refreshes[k] as AuditRow;
        expect(
          current.started_at.getTime(),
          `${view} refreshes overlap: ${JSON.stringify([previous, current])}`,
        ).toBeGreaterThanOrEqual(previous.finished_at.getTime());
      }
    }
    // Both replicas took part in every tick; the one that did not refresh logged why.
    const skipped = [...a.logs, ...b.logs].filter((l) => l.event === 'refresh.skipped');
    expect(skipped.length).toBeGreaterThanOrEqual(ticks - 2);
    expect(new Set(skipped.map((l) => l.reason))).toSatisfy((reasons: Set<unknown>) =>
      [...reasons].every((r) => r === 'busy' || r === 'served'),
    );
    // The views show the last write, not just an empty change log.
    const { rows: last } = await db.client.query(
      `SELECT a.name AS ancestors_name, c.name AS counts_name
         FROM mv_entity_ancestors a JOIN mv_descendant_counts c USING (entity_id)
        WHERE a.path = 'r.n1'`,
    );
    expect(last).toEqual([{ ancestors_name: lastName, counts_name: lastName }]);
  });

  it('logs nothing at info for ticks with nothing to do, on either replica', async () => {
    await db.client.query('SELECT * FROM refresh_hierarchy_views()');
    const args = ['--schedule', '* * * * * *'];
    const a = startDaemon(db.url, args);
    const b = startDaemon(db.url, args);
    await Promise.all([waitForReady(a), waitForReady(b)]);
    const startedLines = a.logs.length + b.logs.length;
    // The skips are counted, not logged: wait for 3 ticks' worth on the metrics.
    const skips = async () => {
      let total = 0;
      for (const daemon of [a, b]) {
        const { body } = await daemon.get('/metrics');
        for (const match of body.matchAll(
          /^hierarchy_refresh_total\{[^}]*status="skipped"[^}]*\} (\d+)/gm,
        ))
          total += Number(match[1]);
      }
      return total;
    };
    await waitUntil(async () => (await skips()) >= 6, 15_000, '3 ticks of skips (2 views each)');
    const lines = [...a.logs, ...b.logs];
    const routine = lines.filter((l) =>
      ['schedule.tick', 'refresh.result', 'refresh.skipped'].includes(String(l.event)),
    );
    expect(routine, JSON.stringify(routine.slice(0, 3))).toEqual([]);
    // Only the start-up lines (and nothing per tick) were written.
    expect(lines.length - startedLines).toBeLessThanOrEqual(2);
  });
});
