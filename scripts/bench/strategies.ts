// The measures of `npm run bench` that set the two view strategies side by side: refreshes after
// small and large edits, lookups on incremental tables, and writer throughput with each kind of
// change capture. The strategies are defined in sql/functions/hierarchy_set_view_strategy.sql and
// applied by sql/functions/hierarchy_apply_ancestors.sql and hierarchy_apply_descendant_counts.sql.
import type pg from 'pg';
import type { ConnectionOptions } from '../../src/db/pool.ts';
import { measureAncestorLookups } from '../../src/slo/ancestor-lookup.ts';
import { type LatencySummary, roundMs, summarizeLatencies } from '../../src/slo/latency.ts';
import { connect, timeMs } from './measure.ts';

/** The view strategies of sql/functions/hierarchy_set_view_strategy.sql. */
export type ViewStrategy = 'materialized' | 'incremental';

/**
 * Switches both views to `strategy` with the procedure the CLI's `views set-strategy` calls
 * (autocommit: it commits in steps of its own); returns how long the switch took.
 */
export async function setViewStrategy(
  connection: ConnectionOptions,
  strategy: ViewStrategy,
): Promise<number> {
  const client = await connect(connection);
  try {
    return await timeMs(() =>
      client.query(`CALL hierarchy_set_view_strategy($1, NULL, 'manual')`, [strategy]),
    );
  } finally {
    await client.end();
  }
}

/** One refresh_hierarchy_views() call after an edit: client-timed, with what each view did. */
export interface EditRefresh {
  /** Round trip of the call, as the CLI sees it. */
  ms: number;
  /** The views' own duration_ms, summed: the call without its round trip and housekeeping. */
  views_ms: number;
  /** Per view: `method` (incremental, full, concurrent, plain) and the rows it changed. */
  views: {
    view_name: string;
    status: string;
    method: string | null;
    rows_changed: number | null;
  }[];
}

/**
 * Runs `edit` (committed on its own), then one pending-driven refresh_hierarchy_views() call,
 * timed. The call is what the daemon makes after a change: not forced, both views.
 */
async function refreshAfter(client: pg.Client, edit: () => Promise<unknown>): Promise<EditRefresh> {
  await edit();
  const started = performance.now();
  const { rows } = await client.query<{
    view_name: string;
    status: string;
    method: string | null;
    rows_changed: string | null;
    duration_ms: number;
  }>(
    `SELECT view_name, status, method, rows_changed, duration_ms
       FROM refresh_hierarchy_views(false, NULL, 'manual')`,
  );
  const ms = roundMs(performance.now() - started);
  return {
    ms,
    views_ms: roundMs(rows.reduce((sum, r) => sum + r.duration_ms, 0)),
    views: rows.map((r) => ({
      view_name: r.view_name,
      status: r.status,
      method: r.method,
      rows_changed: r.rows_changed === null ? null : Number(r.rows_changed),
    })),
  };
}

/** Active entities without children, drawn from `ids` (random ids of the view). */
async function pickLeaves(client: pg.Client, ids: readonly number[], count: number) {
  const { rows } = await client.query<{ id: string; name: string }>(
    `SELECT e.id, e.name FROM entities e
      WHERE e.id = ANY ($1::bigint[]) AND e.is_active
        AND NOT EXISTS (SELECT 1 FROM entities c WHERE c.parent_path = e.path)
      LIMIT $2`,
    [ids.slice(0, 20_000), count],
  );
  if (rows.length < count) throw new Error(`found ${rows.length} active leaves, wanted ${count}`);
  return rows.map((r) => ({ id: Number(r.id), name: r.name }));
}

/**
 * One unmeasured rename of `leaf` (restored at once, without a refresh) and refresh: a
 * session's first call compiles the functions and plans their statements, which the daemon's
 * pooled sessions do once, not per refresh.
 */
async function warmUp(client: pg.Client, leaf: { id: number; name: string }): Promise<void> {
  await refreshAfter(client, () =>
    client.query('UPDATE entities SET name = $2 WHERE id = $1', [
      leaf.id,
      `${leaf.name} (bench warm-up)`,
    ]),
  );
  await refreshAfter(client, () =>
    client.query('UPDATE entities SET name = $2 WHERE id = $1', [leaf.id, leaf.name]),
  );
}

/** Refreshes after a one-row edit: repeated leaf renames and leaf inserts. */
export interface OneRowEditRefreshes {
  leaf_rename: EditRefresh[];
  leaf_insert: EditRefresh[];
}

/**
 * After one unmeasured warm-up rename, `repeats` times each: renames an active leaf, refreshes; inserts a new active leaf under the
 * parent of another one (the same depth as the seeded leaves), refreshes. Every edit is
 * reverted at the end (names restored, inserted rows deleted), so both strategies are measured
 * on the same data; with `settle` the views are refreshed after that, so the next measure finds
 * nothing pending (without it the caller rebuilds them, e.g. by switching strategy).
 */
export async function oneRowEditRefreshes(
  connection: ConnectionOptions,
  ids: readonly number[],
  options: { repeats: number; settle: boolean },
): Promise<OneRowEditRefreshes> {
  const { repeats } = options;
  const client = await connect(connection);
  try {
    const leaves = await pickLeaves(client, ids, repeats * 2 + 1);
    const renamed = leaves.slice(0, repeats);
    const parents = leaves.slice(repeats, repeats * 2);
    const warmup = leaves[repeats * 2];
    if (warmup) await warmUp(client, warmup);
    const result: OneRowEditRefreshes = { leaf_rename: [], leaf_insert: [] };
    for (const [i, leaf] of renamed.entries()) {
      result.leaf_rename.push(
        await refreshAfter(client, () =>
          client.query('UPDATE entities SET name = $2 WHERE id = $1', [
            leaf.id,
            `${leaf.name} (bench rename ${i})`,
          ]),
        ),
      );
    }
    const inserted: number[] = [];
    for (const [i, sibling] of parents.entries()) {
      result.leaf_insert.push(
        await refreshAfter(client, async () => {
          const { rows } = await client.query<{ id: string }>(
            `INSERT INTO entities (name, path, confidence_score, is_active)
             SELECT $2, e.parent_path || text2ltree($3), 0.5, true FROM entities e WHERE e.id = $1
             RETURNING id`,
            [sibling.id, `bench leaf ${i}`, `bench_${Date.now()}_${i}`],
          );
          inserted.push(Number(rows[0]?.id));
        }),
      );
    }
    for (const leaf of renamed) {
      await client.query('UPDATE entities SET name = $2 WHERE id = $1', [leaf.id, leaf.name]);
    }
    await client.query('DELETE FROM entities WHERE id = ANY ($1::bigint[])', [inserted]);
    if (options.settle) {
      await client.query(`SELECT * FROM refresh_hierarchy_views(false, NULL, 'manual')`);
    }
    return result;
  } finally {
    await client.end();
  }
}

/** An entity chosen by its number of active descendants. */
export interface ChosenSubtree {
  entity_id: number;
  path: string;
  /** Active descendants (mv_descendant_counts.descendant_count). */
  descendant_count: number;
  /** Every row of the subtree, the root and inactive rows included. */
  subtree_rows: number;
}

/**
 * The active entity whose descendant count (mv_descendant_counts) is closest to `wanted`, a
 * root only if `allowRoot` (a root cannot be moved under another parent): the seeded shape
 * (src/seed/seed-hierarchy.ts, fanout 8) has no exact 1,000 or 10,000.
 */
export async function chooseSubtree(
  client: pg.Client,
  wanted: number,
  allowRoot: boolean,
): Promise<ChosenSubtree> {
  const { rows } = await client.query<{ id: string; path: string; n: string; rows: string }>(
    `SELECT c.entity_id AS id, c.path::text AS path, c.descendant_count AS n,
            (SELECT count(*) FROM entities d WHERE d.path <@ c.path) AS rows
       FROM mv_descendant_counts c
      WHERE c.path_depth > 1 OR $2
      ORDER BY abs(c.descendant_count - $1), c.entity_id
      LIMIT 1`,
    [wanted, allowRoot],
  );
  const row = rows[0];
  if (!row) throw new Error('mv_descendant_counts has no non-root entity');
  return {
    entity_id: Number(row.id),
    path: row.path,
    descendant_count: Number(row.n),
    subtree_rows: Number(row.rows),
  };
}

/** Refreshes after a subtree move (there and back) and after renaming a large subtree's root. */
export interface SubtreeRefreshes {
  move: ChosenSubtree & { to_parent: string; refreshes: EditRefresh[] };
  rename: ChosenSubtree & { refreshes: EditRefresh[] };
}

/**
 * Moves the subtree closest to `moveSize` descendants under another parent at the same depth
 * (one UPDATE of every row's path), refreshes, moves it back, refreshes; renames the entity
 * closest to `renameSize` descendants, refreshes, restores its name, refreshes.
 */
export async function subtreeRefreshes(
  connection: ConnectionOptions,
  ids: readonly number[],
  options: { moveSize: number; renameSize: number },
): Promise<SubtreeRefreshes> {
  const client = await connect(connection);
  try {
    const [leaf] = await pickLeaves(client, ids, 1);
    if (leaf) await warmUp(client, leaf);
    const moved = await chooseSubtree(client, options.moveSize, false);
    const oldParent = moved.path.split('.').slice(0, -1).join('.');
    const { rows: parents } = await client.query<{ path: string }>(
      `SELECT path::text AS path FROM entities
        WHERE is_active AND path_depth = nlevel($1::ltree) AND path <> $1::ltree
        ORDER BY id LIMIT 1`,
      [oldParent],
    );
    const newParent = parents[0]?.path;
    if (newParent === undefined) throw new Error(`no other parent at the depth of ${oldParent}`);
    const move = (from: string, to: string) => () =>
      client.query(
        `UPDATE entities SET path = $2::ltree || subpath(path, nlevel($1::ltree))
          WHERE path <@ ($1::ltree || subpath($3::ltree, nlevel($1::ltree)))`,
        [from, to, moved.path],
      );
    const moveRefreshes = [
      await refreshAfter(client, move(oldParent, newParent)),
      await refreshAfter(client, move(newParent, oldParent)),
    ];

    const renamed = await chooseSubtree(client, options.renameSize, true);
    const { rows: names } = await client.query<{ name: string }>(
      'SELECT name FROM entities WHERE id = $1',
      [renamed.entity_id],
    );
    const name = names[0]?.name ?? 'bench';
    const rename = (to: string) => () =>
      client.query('UPDATE entities SET name = $2 WHERE id = $1', [renamed.entity_id, to]);
    const renameRefreshes = [
      await refreshAfter(client, rename(`${name} (bench rename)`)),
      await refreshAfter(client, rename(name)),
    ];
    return {
      move: { ...moved, to_parent: newParent, refreshes: moveRefreshes },
      rename: { ...renamed, refreshes: renameRefreshes },
    };
  } finally {
    await client.end();
  }
}

/**
 * Lookups on one connection while another renames the root of `subtree` (alternating names)
 * and calls refresh_hierarchy_views() again and again. Only lookups that started and ended
 * while a refresh call was in flight are kept: the renames between the calls are not refreshes.
 */
export async function lookupsDuringIncrementalRefresh(
  connection: ConnectionOptions,
  ids: readonly number[],
  subtree: ChosenSubtree,
  options: { samples: number; minRuns: number; maxMs: number },
): Promise<LatencySummary & { refresh_runs: number; methods: string[] }> {
  const reader = await connect(connection);
  const writer = await connect(connection);
  try {
    await measureAncestorLookups(reader, ids, { samples: 1, warmup: 500 });
    const stop = new AbortController();
    let runs = 0;
    // Counts refresh calls begun; a lookup counts if no call began or ended while it ran.
    let generation = 0;
    let inFlight = false;
    const methods = new Set<string>();
    const loop = (async () => {
      for (let i = 0; !stop.signal.aborted; i++) {
        await writer.query('UPDATE entities SET name = $2 WHERE id = $1', [
          subtree.entity_id,
          `bench refresh load ${i % 2}`,
        ]);
        inFlight = true;
        generation++;
        const { rows } = await writer.query<{ method: string | null }>(
          `SELECT method FROM refresh_hierarchy_views(false, NULL, 'manual')`,
        );
        inFlight = false;
        generation++;
        for (const row of rows) if (row.method) methods.add(row.method);
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
        const before = generation;
        const wasInFlight = inFlight;
        const [latency] = await measureAncestorLookups(reader, ids, { samples: 1, warmup: 0 });
        if (wasInFlight && inFlight && generation === before && latency !== undefined) {
          latencies.push(latency);
        }
      }
    } finally {
      stop.abort();
      await loop;
    }
    return { ...summarizeLatencies(latencies), refresh_runs: runs, methods: [...methods] };
  } finally {
    await reader.end();
    await writer.end();
  }
}

/** The staleness tracking triggers (sql/triggers/entities_track_*.sql). */
const TRACK_TRIGGERS = ['entities_track_changes', 'entities_track_truncate'];
/** The row capture triggers of the incremental strategy (sql/triggers/entities_capture_*.sql). */
const CAPTURE_TRIGGERS = [
  'entities_capture_insert',
  'entities_capture_update',
  'entities_capture_delete',
  'entities_capture_truncate',
];

/** Which change capture the writers run under. */
type CaptureMode = 'off' | 'materialized' | 'incremental';

/** Writer throughput under each kind of change capture. */
export interface WriterCapture {
  clients: number;
  seconds_per_phase: number;
  /** The writers' own setting, whatever the server default. */
  synchronous_commit: 'on';
  /** The order the phases ran in. */
  phases: CaptureMode[];
  /** Updates per second of each phase, in that order. */
  phase_rates_per_s: number[];
  /** Tracking and capture triggers disabled. */
  off_per_s: number;
  /** Staleness tracking only: what a database with only materialized views runs. */
  materialized_per_s: number;
  /** Staleness tracking and row capture: what an incremental view needs. */
  incremental_per_s: number;
  /** materialized / off. */
  ratio_materialized: number;
  /** incremental / off. */
  ratio_incremental: number;
  /** The full reconcile (refresh_hierarchy_views(p_full)) the untracked phases made necessary. */
  reconcile_ms: number;
}

/**
 * Single-row UPDATE transactions from `clients` connections, each with synchronous_commit on,
 * in phases off, materialized, incremental, incremental, materialized, off (drift cancels out).
 * Every update changes `confidence_score`, a column both views carry, so the incremental
 * capture records a row for every transaction (the case it exists for); the triggers are
 * switched with ALTER TABLE ... ENABLE/DISABLE TRIGGER between phases. Writes made with capture
 * off are unknown to the incremental tables, so this ends with a full reconcile.
 */
export async function writerCapture(
  connection: ConnectionOptions,
  entities: number,
  options: { clients: number; seconds: number },
): Promise<WriterCapture> {
  const admin = await connect(connection);
  const setMode = (mode: CaptureMode) => {
    const track = mode !== 'off';
    const capture = mode === 'incremental';
    const clauses = [
      ...TRACK_TRIGGERS.map((t) => `${track ? 'ENABLE' : 'DISABLE'} TRIGGER ${t}`),
      ...CAPTURE_TRIGGERS.map((t) => `${capture ? 'ENABLE' : 'DISABLE'} TRIGGER ${t}`),
    ];
    return admin.query(`ALTER TABLE entities ${clauses.join(', ')}`);
  };
  const phases: CaptureMode[] = [
    'off',
    'materialized',
    'incremental',
    'incremental',
    'materialized',
    'off',
  ];
  const rates: Record<CaptureMode, number[]> = { off: [], materialized: [], incremental: [] };
  const phaseRates: number[] = [];
  let reconcileMs = 0;
  try {
    for (const mode of phases) {
      await setMode(mode);
      const rate = await throughput(connection, entities, options);
      rates[mode].push(rate);
      phaseRates.push(Math.round(rate));
    }
  } finally {
    await setMode('incremental');
    reconcileMs = await timeMs(() =>
      admin.query(`SELECT * FROM refresh_hierarchy_views(true, NULL, 'manual', true)`),
    );
    await admin.end();
  }
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const off = mean(rates.off);
  const materialized = mean(rates.materialized);
  const incremental = mean(rates.incremental);
  const ratio = (value: number) => Math.round((value / off) * 1000) / 1000;
  return {
    clients: options.clients,
    seconds_per_phase: options.seconds,
    synchronous_commit: 'on',
    phases,
    phase_rates_per_s: phaseRates,
    off_per_s: Math.round(off),
    materialized_per_s: Math.round(materialized),
    incremental_per_s: Math.round(incremental),
    ratio_materialized: ratio(materialized),
    ratio_incremental: ratio(incremental),
    reconcile_ms: reconcileMs,
  };
}

async function throughput(
  connection: ConnectionOptions,
  entities: number,
  options: { clients: number; seconds: number },
): Promise<number> {
  const connections = await Promise.all(
    Array.from({ length: options.clients }, () => connect(connection)),
  );
  try {
    // The server runs with synchronous_commit off; the writers measure commits that wait for
    // their WAL flush, as production's would (a real flush when fsync is on: see scripts/bench.ts
    // and the `fsync` setting recorded in the report).
    await Promise.all(connections.map((c) => c.query('SET synchronous_commit = on')));
    const deadline = performance.now() + options.seconds * 1000;
    const counts = await Promise.all(
      connections.map(async (client) => {
        let done = 0;
        while (performance.now() < deadline) {
          await client.query({
            name: 'bench_capture_update',
            text: 'UPDATE entities SET confidence_score = $2 WHERE id = $1',
            values: [
              1 + Math.floor(Math.random() * entities),
              Math.round(Math.random() * 1e6) / 1e6,
            ],
          });
          done++;
        }
        return done;
      }),
    );
    return counts.reduce((a, b) => a + b, 0) / options.seconds;
  } finally {
    await Promise.all(connections.map((c) => c.end()));
  }
}
