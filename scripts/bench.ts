// `npm run bench` (docs/benchmark.md): this project's views and refresh path against the origin
// formulation (scripts/bench/origin-views.ts), on the same data, at several sizes, then the
// materialized and incremental view strategies side by side (scripts/bench/strategies.ts).
// Writes a JSON result file and prints
// a markdown table. Runs on a throwaway embedded PostgreSQL unless --database-url names a server,
// on which it creates (and drops) a scratch database of its own.
//
//   npm run bench -- [--sizes 10k,100k,1M] [--database-url URL] [--out .bench/results.json]
//                    [--lookup-samples 10000] [--writer-seconds 10] [--writer-clients 4]
//                    [--daemon-edits 5] [--edit-repeats 5] [--capture-clients 16]
//                    [--random-seed 42]
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { redactUrl } from '../src/config/database-url.ts';
import { type EmbeddedServer, startEmbeddedServer } from '../src/db/embedded-server.ts';
import type { ConnectionOptions } from '../src/db/pool.ts';
import { createLogger } from '../src/logging/logger.ts';
import { Migrator } from '../src/migrate/migrator.ts';
import { seedHierarchy } from '../src/seed/seed-hierarchy.ts';
import { drawEntityIds } from '../src/slo/ancestor-lookup.ts';
import {
  callRefreshFunction,
  cleanSkipCalls,
  compareRefresh,
  connect,
  editToVisible,
  idleLookups,
  lookupsDuring,
  timeMs,
  writerOverhead,
} from './bench/measure.ts';
import {
  type BenchReport,
  checkTargets,
  formatSize,
  meanRefreshMs,
  parseSize,
  renderMarkdown,
  type SizeResult,
} from './bench/report.ts';
import {
  lookupsDuringIncrementalRefresh,
  oneRowEditRefreshes,
  setViewStrategy,
  subtreeRefreshes,
  writerCapture,
} from './bench/strategies.ts';

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10k,100k,1M' },
    'database-url': { type: 'string' },
    out: { type: 'string', default: '.bench/results.json' },
    'lookup-samples': { type: 'string', default: '10000' },
    'writer-seconds': { type: 'string', default: '10' },
    'writer-clients': { type: 'string', default: '4' },
    'daemon-edits': { type: 'string', default: '5' },
    'edit-repeats': { type: 'string', default: '5' },
    'capture-clients': { type: 'string', default: '16' },
    'random-seed': { type: 'string', default: '42' },
  },
  strict: true,
});

const sizes = flags.sizes
  .split(',')
  .map(parseSize)
  .sort((a, b) => a - b);
const lookupSamples = positive(flags['lookup-samples'], 'lookup-samples');
const writerSeconds = positive(flags['writer-seconds'], 'writer-seconds');
const writerClients = positive(flags['writer-clients'], 'writer-clients');
const daemonEdits = positive(flags['daemon-edits'], 'daemon-edits');
const editRepeats = positive(flags['edit-repeats'], 'edit-repeats');
const captureClients = positive(flags['capture-clients'], 'capture-clients');
const randomSeed = positive(flags['random-seed'], 'random-seed');

function positive(text: string, flag: string): number {
  const value = Number(text);
  if (!(value > 0)) throw new Error(`--${flag}: expected a positive number, got '${text}'`);
  return value;
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function cpuPressure(): number | null {
  try {
    const line = readFileSync('/proc/pressure/cpu', 'utf8').split('\n')[0] ?? '';
    const match = /avg60=([\d.]+)/.exec(line);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

const startedAt = new Date();
let embedded: EmbeddedServer | undefined;
let serverUrl = flags['database-url'];
if (serverUrl === undefined) {
  log('starting embedded PostgreSQL');
  // Durable, as production runs: with fsync off a commit that waits for its WAL flush waits for
  // nothing, and the writer measures would leave out the cost that dominates real commits.
  // synchronous_commit stays off server-wide; the writer measures turn it on per session.
  embedded = await startEmbeddedServer({ settings: { fsync: 'on', full_page_writes: 'on' } });
  serverUrl = embedded.url;
}
const database = `hierarchy_db_bench_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client(serverUrl);
await admin.connect();
const cleanup = async () => {
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => {});
  await admin.end().catch(() => {});
  await embedded?.destroy();
};
// Ctrl-C or a kill must not leave a server or a scratch database behind.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  const databaseUrl = url.toString();
  const connection: ConnectionOptions = {
    target: { url: databaseUrl, source: 'flag', display: `${url.hostname}:${url.port}` },
    applicationName: 'hierarchy-db/bench',
  };
  log(`migrating ${redactUrl(databaseUrl)}`);
  await new Migrator({ connection, logger: createLogger('warn') }).up();

  const client = await connect(connection);
  const settingNames = [
    'server_version',
    'shared_buffers',
    'work_mem',
    'maintenance_work_mem',
    'max_parallel_workers_per_gather',
    'synchronous_commit',
    'fsync',
    'jit',
  ];
  const { rows: settingRows } = await client.query<{ name: string; setting: string }>(
    'SELECT name, current_setting(name) AS setting FROM unnest($1::text[]) AS name',
    [settingNames],
  );
  const settings = Object.fromEntries(settingRows.map((r) => [r.name, r.setting]));

  const results: SizeResult[] = [];
  for (const entities of sizes) {
    const label = formatSize(entities);
    const pressureBefore = cpuPressure();
    log(`${label}: seeding`);
    const seed = await seedHierarchy(client, { entities, randomSeed, replace: true });

    log(`${label}: full refresh of both views, ours then the origin formulation`);
    const compared = await compareRefresh(connection);
    const ratio = (kind: 'plain_ms' | 'concurrently_ms') =>
      Math.round((compared.origin[kind].total / compared.ours[kind].total) * 10) / 10;

    log(`${label}: forced refresh_hierarchy_views()`);
    const forcedMs = await timeMs(() => callRefreshFunction(client, true));

    const ids = await drawEntityIds(client, 100_000);
    log(`${label}: ancestor lookups idle`);
    const idle = await idleLookups(connection, ids, lookupSamples);
    log(`${label}: ancestor lookups during concurrent refreshes`);
    const duringConcurrent = await lookupsDuring(
      connection,
      ids,
      `SELECT * FROM refresh_hierarchy_views(true, NULL, 'manual')`,
      { samples: lookupSamples, minRuns: 1, maxMs: 120_000 },
    );
    log(`${label}: ancestor lookups during plain refreshes`);
    const duringPlain = await lookupsDuring(
      connection,
      ids,
      'REFRESH MATERIALIZED VIEW mv_entity_ancestors',
      { samples: lookupSamples, minRuns: 1, maxMs: 5_000 },
    );

    log(`${label}: clean-skip refresh calls`);
    const cleanSkip = await cleanSkipCalls(connection, 200);

    log(`${label}: writer overhead of change tracking (${writerClients} clients)`);
    const writer = await writerOverhead(connection, entities, {
      clients: writerClients,
      seconds: writerSeconds,
    });

    log(`${label}: edit-to-visible with the daemon --on-change`);
    const visible = await editToVisible(connection, databaseUrl, ids, {
      edits: daemonEdits,
      debounce: '100ms',
      maxWait: '5s',
      timeoutMs: 600_000,
    });

    // Materialized first (the views are materialized after migrating and after each size), then
    // the same edits and more on incremental tables.
    log(`${label}: materialized refresh after a one-row edit`);
    const materializedEdits = await oneRowEditRefreshes(connection, ids, {
      repeats: 1,
      settle: false,
    });
    log(`${label}: switching to the incremental strategy`);
    const toIncrementalMs = await setViewStrategy(connection, 'incremental');
    log(`${label}: incremental refresh after one-row edits`);
    const incrementalEdits = await oneRowEditRefreshes(connection, ids, {
      repeats: editRepeats,
      settle: true,
    });
    log(`${label}: incremental refresh after a subtree move and a large rename`);
    const subtree = await subtreeRefreshes(connection, ids, {
      moveSize: 1_000,
      renameSize: 10_000,
    });
    log(`${label}: lookups on incremental tables, idle and during incremental refreshes`);
    const incrementalIdle = await idleLookups(connection, ids, lookupSamples);
    const duringIncremental = await lookupsDuringIncrementalRefresh(connection, ids, subtree.move, {
      samples: lookupSamples,
      minRuns: 1,
      maxMs: 60_000,
    });
    log(`${label}: edit-to-visible with the daemon --on-change on incremental views`);
    const incrementalVisible = await editToVisible(connection, databaseUrl, ids, {
      edits: daemonEdits,
      debounce: '100ms',
      maxWait: '5s',
      timeoutMs: 600_000,
    });
    log(`${label}: writer throughput by change capture (${captureClients} clients)`);
    const capture = await writerCapture(connection, entities, {
      clients: captureClients,
      seconds: writerSeconds,
    });
    let toMaterializedMs: number | null = null;
    if (entities !== sizes[sizes.length - 1]) {
      log(`${label}: back to the materialized strategy for the next size`);
      toMaterializedMs = await setViewStrategy(connection, 'materialized');
    }
    const editRatio = (kind: 'leaf_rename' | 'leaf_insert') =>
      Math.round(meanRefreshMs(materializedEdits[kind]) / meanRefreshMs(incrementalEdits[kind]));

    results.push({
      entities,
      active_entities: entities - seed.inactive,
      depth: seed.depth,
      seed_ms: Math.round(seed.durationMs),
      refresh: {
        ours: compared.ours,
        origin: compared.origin,
        ratio_plain: ratio('plain_ms'),
        ratio_concurrently: ratio('concurrently_ms'),
        same_rows: compared.same_rows,
      },
      refresh_function_forced_ms: forcedMs,
      lookups: {
        idle,
        during_concurrent_refresh: duringConcurrent,
        during_plain_refresh: duringPlain,
      },
      clean_skip_call: cleanSkip,
      writer,
      edit_to_visible: visible,
      strategies: {
        switch_to_incremental_ms: toIncrementalMs,
        one_row_edit: {
          materialized: materializedEdits,
          incremental: incrementalEdits,
          ratio_leaf_rename: editRatio('leaf_rename'),
          ratio_leaf_insert: editRatio('leaf_insert'),
        },
        subtree,
        lookups: { idle: incrementalIdle, during_incremental_refresh: duringIncremental },
        edit_to_visible: incrementalVisible,
        writer_capture: capture,
        switch_to_materialized_ms: toMaterializedMs,
      },
      cpu_pressure_some_avg60_pct: { before: pressureBefore, after: cpuPressure() },
    });
    log(`${label}: done`);
    // Written after every size: a long run that fails later still leaves its numbers.
    await writeReport(results, settings);
  }
  await client.end();
  const report = await writeReport(results, settings);
  process.stdout.write(`${renderMarkdown(report)}\n`);
} finally {
  await cleanup();
}

async function writeReport(
  results: SizeResult[],
  settings: Record<string, string>,
): Promise<BenchReport> {
  const report: BenchReport = {
    version: 1,
    command: ['npm run bench --', ...process.argv.slice(2)].join(' '),
    started_at: startedAt.toISOString(),
    finished_at: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpu_model: os.cpus()[0]?.model ?? 'unknown',
      memory_gb: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
    },
    server: {
      kind: embedded ? 'embedded' : 'external',
      version: settings.server_version ?? 'unknown',
      settings,
    },
    options: {
      sizes,
      lookup_samples: lookupSamples,
      writer_seconds: writerSeconds,
      writer_clients: writerClients,
      daemon_edits: daemonEdits,
      edit_repeats: editRepeats,
      capture_clients: captureClients,
      random_seed: randomSeed,
    },
    results,
    targets: checkTargets(results),
  };
  const out = resolve(flags.out);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
  log(`wrote ${out}`);
  return report;
}
