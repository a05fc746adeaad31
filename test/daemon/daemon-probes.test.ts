import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { killDaemons, parsePrometheusText, startDaemon } from './daemon-process.ts';

// Probes report the last known state and never bypass the reconnect backoff
// (docs/semantics.md, "Faults"): while the database is down, a burst of /readyz and /metrics
// requests makes no more connection attempts than the backoff schedule does by itself. The
// "database" is a listener that counts connections and closes each at once, so no server is
// needed.
describe('probes while the database is down', () => {
  let listener: Server | undefined;
  afterEach(async () => {
    await killDaemons();
    await new Promise<void>((resolve) => (listener ? listener.close(() => resolve()) : resolve()));
    listener = undefined;
  });

  it('answer from the last known state: a burst of 100 requests makes next to no connection attempts, and unknown gauges have no sample', async () => {
    const attempts: number[] = [];
    listener = createServer((socket) => {
      attempts.push(Date.now());
      socket.destroy();
    });
    const server = listener;
    const port = await new Promise<number>((resolve) => {
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
    const daemon = startDaemon(`postgres://hdb:secret@127.0.0.1:${port}/hdb`, ['--on-change']);
    // Wait until the backoff has grown past a second, so the burst below fits between two
    // scheduled attempts (each delay is between half and all of 250 ms * 2^n, capped at 15 s).
    await daemon.waitForLog(
      (l) => l.event === 'db.reconnect' && Number(l.delay_ms) >= 1_000,
      30_000,
    );

    const burstStarted = Date.now();
    for (let i = 0; i < 50; i++) {
      const ready = await daemon.get('/readyz');
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.body).reasons).toContain('database unreachable');
      const metrics = await daemon.get('/metrics');
      expect(metrics.status).toBe(200);
      const up = parsePrometheusText(metrics.body).samples.find(
        (s) => s.name === 'hierarchy_db_up',
      );
      expect(up?.value).toBe(0);
    }
    const burstEnded = Date.now();
    // A replica that never reached the database cannot tell staleness, pending changes or the
    // last success: no sample (a 0 would read as "fresh" and hide other replicas' staleness from
    // min() in the alert rules), while the counters exist at 0 for rate() and increase().
    const { samples } = parsePrometheusText((await daemon.get('/metrics')).body);
    const names = new Set(samples.map((s) => s.name));
    for (const unknown of [
      'hierarchy_view_staleness_seconds',
      'hierarchy_view_pending_changes',
      'hierarchy_last_refresh_success_timestamp_seconds',
    ]) {
      expect(names.has(unknown), unknown).toBe(false);
    }
    expect(samples.filter((s) => s.name === 'hierarchy_refresh_total')).toHaveLength(8);
    const during = attempts.filter((at) => at >= burstStarted && at <= burstEnded).length;
    // The monitor's and the change probe's own schedules may each fall into the burst once or
    // twice; a request that bypassed the backoff would add one attempt per request.
    expect(during, `${during} attempts in ${burstEnded - burstStarted} ms`).toBeLessThanOrEqual(4);
  });
});
