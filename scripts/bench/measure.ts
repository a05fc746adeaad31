// The measurements of `npm run bench`, one function each. Every one takes connection settings and
// opens its own clients, so concurrent parts (lookups during a refresh, writers) never share one.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { connectOrThrow } from '../../src/db/connect.ts';
import { type ConnectionOptions, createClient } from '../../src/db/pool.ts';
import { measureAncestorLookups } from '../../src/slo/ancestor-lookup.ts';
import { type LatencySummary, roundMs, summarizeLatencies } from '../../src/slo/latency.ts';
import { createOriginViewSql, ORIGIN_SCHEMA, ORIGIN_VIEWS } from './origin-views.ts';

/** The two views, in refresh order. */
export const VIEWS = ['mv_entity_ancestors', 'mv_descendant_counts'] as const;

/** Milliseconds per view and their sum. */
export interface ViewTimings {
  mv_entity_ancestors: number;
  mv_descendant_counts: number;
  total: number;
}

/** Full refresh of both views, plain and CONCURRENTLY, for one formulation. */
export interface RefreshTimings {
  plain_ms: ViewTimings;
  concurrently_ms: ViewTimings;
}

/** Opens a connected client with the project's settings. */
export async function connect(connection: ConnectionOptions): Promise<pg.Client> {
  const client = createClient(connection);
  await connectOrThrow(client, connection.target);
  return client;
}

/** Runs `fn` and returns how long it took in milliseconds. */
export async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return roundMs(performance.now() - started);
}

async function refreshBoth(client: pg.Client, schema: string): Promise<RefreshTimings> {
  const timings = async (concurrently: boolean): Promise<ViewTimings> => {
    const result = { mv_entity_ancestors: 0, mv_descendant_counts: 0, total: 0 };
    for (const view of VIEWS) {
      result[view] = await timeMs(() =>
        client.query(
          `REFRESH MATERIALIZED VIEW ${concurrently ? 'CONCURRENTLY ' : ''}${schema}.${view}`,
        ),
      );
    }
    result.total = roundMs(result.mv_entity_ancestors + result.mv_descendant_counts);
    return result;
  };
  // Plain first: it also populates a view created WITH NO DATA, which CONCURRENTLY needs.
  const plain = await timings(false);
  const concurrently = await timings(true);
  return { plain_ms: plain, concurrently_ms: concurrently };
}

/**
 * Full refresh of both views with this project's definitions (the migrated views in `public`)
 * and with the origin formulation (scripts/bench/origin-views.ts, built in a scratch schema), on the same data, one
 * after the other; then checks that both formulations hold the same rows.
 */
export async function compareRefresh(connection: ConnectionOptions): Promise<{
  ours: RefreshTimings;
  origin: RefreshTimings;
  same_rows: boolean;
}> {
  const client = await connect(connection);
  try {
    const ours = await refreshBoth(client, 'public');
    await client.query(`DROP SCHEMA IF EXISTS ${ORIGIN_SCHEMA} CASCADE`);
    await client.query(`CREATE SCHEMA ${ORIGIN_SCHEMA}`);
    for (const view of ORIGIN_VIEWS) {
      for (const statement of createOriginViewSql(view)) await client.query(statement);
    }
    const origin = await refreshBoth(client, ORIGIN_SCHEMA);
    let same = true;
    for (const view of VIEWS) {
      const { rows } = await client.query<{ differ: boolean }>(
        `SELECT EXISTS (TABLE public.${view} EXCEPT ALL TABLE ${ORIGIN_SCHEMA}.${view})
             OR EXISTS (TABLE ${ORIGIN_SCHEMA}.${view} EXCEPT ALL TABLE public.${view}) AS differ`,
      );
      if (rows[0]?.differ !== false) same = false;
    }
    await client.query(`DROP SCHEMA ${ORIGIN_SCHEMA} CASCADE`);
    return { ours, origin, same_rows: same };
  } finally {
    await client.end();
  }
}

/** One call of refresh_hierarchy_views() as the CLI makes it; returns its per-view rows. */
export async function callRefreshFunction(
  client: pg.Client,
  force: boolean,
): Promise<{ view_name: string; status: string; duration_ms: number }[]> {
  const { rows } = await client.query(
    `SELECT view_name, status, duration_ms FROM refresh_hierarchy_views($1, NULL, 'manual')`,
    [force],
  );
  return rows;
}

/**
 * Samples ancestor lookups on one connection while `statement` runs again and again on another:
 * until `minRuns` runs of the statement finished and, after that, until `samples` lookups were
 * taken or `maxMs` passed (a plain refresh blocks readers: lookups then come slowly).
 */
export async function lookupsDuring(
  connection: ConnectionOptions,
  ids: readonly number[],
  statement: string,
  options: { samples: number; minRuns: number; maxMs: number },
): Promise<LatencySummary & { statement_runs: number }> {
  const reader = await connect(connection);
  const writer = await connect(connection);
  try {
    // Warm the reader (prepared statement, plan cache) before the statement starts.
    await measureAncestorLookups(reader, ids, { samples: 1, warmup: 500 });
    const stop = new AbortController();
    let runs = 0;
    const loop = (async () => {
      while (!stop.signal.aborted) {
        await writer.query(statement);
        runs++;
      }
    })();
    const started = performance.now();
    const latencies: number[] = [];
    try {
      while (
        runs < options.minRuns ||
        (latencies.length < options.samples && performance.now() - started < options.maxMs)
      ) {
        latencies.push(...(await measureAncestorLookups(reader, ids, { samples: 10, warmup: 0 })));
      }
    } finally {
      stop.abort();
      await loop;
    }
    return { ...summarizeLatencies(latencies), statement_runs: runs };
  } finally {
    await reader.end();
    await writer.end();
  }
}

/** Ancestor lookups with nothing else running. */
export async function idleLookups(
  connection: ConnectionOptions,
  ids: readonly number[],
  samples: number,
): Promise<LatencySummary> {
  const client = await connect(connection);
  try {
    return summarizeLatencies(await measureAncestorLookups(client, ids, { samples }));
  } finally {
    await client.end();
  }
}

/** Round-trip cost of a refresh_hierarchy_views() call that finds nothing to do. */
export async function cleanSkipCalls(
  connection: ConnectionOptions,
  calls: number,
): Promise<LatencySummary & { statuses: string[] }> {
  const client = await connect(connection);
  try {
    // One forced refresh first, so that every change is reflected and both views skip.
    await callRefreshFunction(client, true);
    const statuses = new Set<string>();
    for (let i = 0; i < 20; i++) await callRefreshFunction(client, false);
    const latencies: number[] = [];
    for (let i = 0; i < calls; i++) {
      const started = performance.now();
      const rows = await callRefreshFunction(client, false);
      latencies.push(performance.now() - started);
      for (const row of rows) statuses.add(row.status);
    }
    return { ...summarizeLatencies(latencies), statuses: [...statuses] };
  } finally {
    await client.end();
  }
}

/** The change-tracking triggers of migration 0003. */
const TRACKING_TRIGGERS = ['entities_track_changes', 'entities_track_truncate'];

/**
 * Single-row UPDATEs (each its own transaction) from `clients` connections for `seconds`;
 * returns updates per second. They touch `updated_at`, a column the views do not carry: every
 * write is tracked exactly like any other, but the views' contents stay the same, so the refresh
 * after the phases does not have to rewrite most of both views (a million random updates of a
 * view column made it take minutes at 1M entities).
 */
async function writerThroughput(
  connection: ConnectionOptions,
  entities: number,
  clients: number,
  seconds: number,
): Promise<number> {
  const connections = await Promise.all(Array.from({ length: clients }, () => connect(connection)));
  try {
    const deadline = performance.now() + seconds * 1000;
    const counts = await Promise.all(
      connections.map(async (client) => {
        let done = 0;
        while (performance.now() < deadline) {
          await client.query({
            name: 'bench_writer_update',
            text: 'UPDATE entities SET updated_at = now() WHERE id = $1',
            values: [1 + Math.floor(Math.random() * entities)],
          });
          done++;
        }
        return done;
      }),
    );
    return counts.reduce((a, b) => a + b, 0) / seconds;
  } finally {
    await Promise.all(connections.map((c) => c.end()));
  }
}

/** Writer throughput with change tracking on and off, and their ratio. */
export interface WriterOverhead {
  clients: number;
  seconds_per_phase: number;
  phases: number;
  with_tracking_per_s: number;
  without_tracking_per_s: number;
  /** with / without. */
  ratio: number;
  /** (1 - ratio) in percent. */
  overhead_pct: number;
}

/**
 * Writer overhead of change tracking: phases on, off, off, on (so drift during the run cancels
 * out), each `seconds` long, with the tracking triggers disabled for the off phases.
 */
export async function writerOverhead(
  connection: ConnectionOptions,
  entities: number,
  options: { clients: number; seconds: number },
): Promise<WriterOverhead> {
  const admin = await connect(connection);
  const setTracking = (on: boolean) =>
    admin.query(
      TRACKING_TRIGGERS.map(
        (t) => `ALTER TABLE entities ${on ? 'ENABLE' : 'DISABLE'} TRIGGER ${t}`,
      ).join('; '),
    );
  const on: number[] = [];
  const off: number[] = [];
  try {
    for (const tracking of [true, false, false, true]) {
      await setTracking(tracking);
      const rate = await writerThroughput(connection, entities, options.clients, options.seconds);
      (tracking ? on : off).push(rate);
    }
  } finally {
    await setTracking(true);
    // The untracked writes changed the data behind the views' backs: refresh everything.
    await callRefreshFunction(admin, true);
    await admin.end();
  }
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const withTracking = mean(on);
  const withoutTracking = mean(off);
  const ratio = withTracking / withoutTracking;
  return {
    clients: options.clients,
    seconds_per_phase: options.seconds,
    phases: on.length + off.length,
    with_tracking_per_s: Math.round(withTracking),
    without_tracking_per_s: Math.round(withoutTracking),
    ratio: Math.round(ratio * 1000) / 1000,
    overhead_pct: Math.round((1 - ratio) * 1000) / 10,
  };
}

/** Edit-to-visible latency with the daemon, or why it was not measured. */
export type EditToVisible =
  | (LatencySummary & {
      measured: true;
      debounce: string;
      max_wait: string;
      /** `--poll-interval` given to the daemon, or null for its default (250 ms). */
      poll_interval: string | null;
    })
  | { measured: false; reason: string };

const CLI_PATH = fileURLToPath(new URL('../../bin/hierarchy-db.js', import.meta.url));
const DAEMON_COMMAND = fileURLToPath(new URL('../../src/cli/commands/daemon.ts', import.meta.url));

/**
 * Starts `hierarchy-db daemon --on-change` as a subprocess, then `edits` times: renames an active
 * entity (one committed UPDATE) and polls `mv_entity_ancestors` until the new name is visible.
 * Latency = from the UPDATE's commit to the first read that sees it.
 */
export async function editToVisible(
  connection: ConnectionOptions,
  databaseUrl: string,
  ids: readonly number[],
  options: {
    edits: number;
    debounce: string;
    maxWait: string;
    timeoutMs: number;
    /** `--poll-interval`; the daemon's default when absent. */
    pollInterval?: string;
  },
): Promise<EditToVisible> {
  const { existsSync } = await import('node:fs');
  if (!existsSync(DAEMON_COMMAND)) {
    return { measured: false, reason: 'not measured: the daemon command does not exist yet' };
  }
  // The CLI entry run by node itself (never through npx or npm): SIGTERM reaches the daemon.
  const daemon = spawn(
    process.execPath,
    [
      CLI_PATH,
      '--database-url',
      databaseUrl,
      'daemon',
      '--on-change',
      '--debounce',
      options.debounce,
      '--max-wait',
      options.maxWait,
      '--http-port',
      '0',
      ...(options.pollInterval === undefined ? [] : ['--poll-interval', options.pollInterval]),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const client = await connect(connection);
  try {
    // The daemon logs daemon.started once its change poller runs (src/daemon/daemon.ts).
    await waitForLog(daemon, '"daemon.started"', options.timeoutMs);
    const latencies: number[] = [];
    for (let i = 0; i < options.edits; i++) {
      await waitUntilReflected(client, options.timeoutMs);
      const id = ids[Math.floor(Math.random() * ids.length)];
      const name = `bench edit ${i} ${Date.now()}`;
      const started = performance.now();
      await client.query('UPDATE entities SET name = $2 WHERE id = $1', [id, name]);
      for (;;) {
        const { rows } = await client.query({
          name: 'bench_visible',
          text: 'SELECT name FROM mv_entity_ancestors WHERE entity_id = $1',
          values: [id],
        });
        if (rows[0]?.name === name) break;
        if (performance.now() - started > options.timeoutMs) {
          throw new Error(`edit not visible after ${options.timeoutMs} ms`);
        }
        await sleep(5);
      }
      latencies.push(performance.now() - started);
    }
    return {
      ...summarizeLatencies(latencies),
      measured: true,
      debounce: options.debounce,
      max_wait: options.maxWait,
      poll_interval: options.pollInterval ?? null,
    };
  } catch (error) {
    return {
      measured: false,
      reason: `not measured: ${error instanceof Error ? error.message : String(error)}`,
    };
  } finally {
    await client.end();
    await stopProcess(daemon);
  }
}

async function waitUntilReflected(client: pg.Client, timeoutMs: number): Promise<void> {
  const started = performance.now();
  for (;;) {
    const { rows } = await client.query<{ pending: string }>(
      'SELECT COALESCE(sum(pending_changes), 0) AS pending FROM hierarchy_view_status()',
    );
    if (Number(rows[0]?.pending) === 0) return;
    if (performance.now() - started > timeoutMs) {
      throw new Error(`the daemon did not catch up within ${timeoutMs} ms`);
    }
    await sleep(20);
  }
}

function waitForLog(child: ChildProcess, marker: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`the daemon did not log ${marker} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    child.stderr?.on('data', (chunk: Buffer) => {
      seen = (seen + chunk.toString()).slice(-10_000);
      if (seen.includes(marker)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the daemon exited with code ${code}: ${seen.trim().split('\n').pop()}`));
    });
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
