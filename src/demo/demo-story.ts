import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { readHistory } from '../audit/refresh-history.ts';
import { readViewStatus, type ViewStatus } from '../audit/view-status.ts';
import { formatDuration as ms } from '../config/duration.ts';
import { type DatabaseHandle, openDatabase } from '../db/database.ts';
import type { ConnectionOptions } from '../db/pool.ts';
import type { Logger } from '../logging/logger.ts';
import { Migrator } from '../migrate/migrator.ts';
import { RefreshEngine, type RefreshResult } from '../refresh/refresh-engine.ts';
import { setViewStrategy } from '../refresh/view-strategy.ts';
import type { RefreshMethod, ViewStrategy } from '../refresh/views.ts';
import { type SeedProgress, seedHierarchy } from '../seed/seed-hierarchy.ts';
import { checkSlo, type SloReport as SloSummary } from '../slo/slo-check.ts';
import {
  type Breadcrumb,
  moveSubtree,
  pickSubtreeMove,
  readBreadcrumb,
  readDescendantCounts,
  type SubtreeMove,
  type SubtreeMoveResult,
} from './subtree-move.ts';

/** How a piece of demo text should stand out; the terminal decides what that looks like. */
export type Tone = 'good' | 'bad' | 'warn' | 'dim' | 'strong';

/** Text with a tone. */
export interface Styled {
  text: string;
  tone: Tone;
}

/** One piece of a line or one table cell (`null` prints as `-`). */
export type Segment = string | number | Styled | null;

/** Where the demo tells its story: the CLI renders it for a terminal. */
export interface DemoOutput {
  /** Starts a numbered section; `command` is the equivalent `hierarchy-db` command line. */
  section(title: string, command?: string): void;
  line(...segments: Segment[]): void;
  /** Numeric columns are right-aligned. */
  table(headers: string[], rows: Segment[][]): void;
  /** Seed progress (a progress bar on a terminal). */
  progress(progress: SeedProgress): void;
  /** The seed is done: remove the progress bar. */
  progressDone(): void;
}

/** Options for {@link runDemo}. */
export interface DemoOptions {
  /** A database the demo may fill: an empty one (it runs `migrate up` and seeds). */
  connection: ConnectionOptions;
  logger: Logger;
  output: DemoOutput;
  /** Entities to seed. Default {@link DEMO_ENTITIES}. */
  entities?: number;
  /** Seed of the synthetic hierarchy. Default {@link DEMO_RANDOM_SEED}. */
  randomSeed?: number;
  /** Pause between the two status reads that show staleness growing. Default {@link DEMO_STALENESS_PAUSE_MS}. */
  stalenessPauseMs?: number;
  /** Ancestor lookups the SLO summary measures. Default {@link DEMO_SLO_SAMPLES}. */
  sloSamples?: number;
  /** Audit rows shown at the end. Default {@link DEMO_HISTORY_LIMIT}. */
  historyLimit?: number;
  /** Aborts between steps (and during the pause). */
  signal?: AbortSignal;
}

/** What the demo did, for callers that want more than the story. */
export interface DemoReport {
  move: SubtreeMove;
  moveResult: SubtreeMoveResult;
  breadcrumbBefore: Breadcrumb;
  breadcrumbAfter: Breadcrumb;
  /** Status read right after the move, then again after the pause. */
  staleStatus: [ViewStatus[], ViewStatus[]];
  freshStatus: ViewStatus[];
  /** The same kind of edit refreshed under each strategy: the move, then the move back. */
  strategies: StrategyComparison[];
  /** The breadcrumb after moving back under the incremental strategy (equals the first one). */
  breadcrumbIncremental: Breadcrumb;
  slo: SloSummary;
}

/** One strategy's refresh of a subtree move, in the demo's side-by-side table. */
export interface StrategyComparison {
  strategy: ViewStrategy;
  /** Rows the move's UPDATE changed. */
  rowsMoved: number;
  methods: (RefreshMethod | null)[];
  /** Both views, as the refresh function measured them. */
  refreshMs: number;
  /** Rows the refresh changed, when the method can tell (incremental). */
  rowsChanged: number | null;
  /** From the end of the edit to both views showing it. */
  editToVisibleMs: number;
}

/** A step of the demo did not have the outcome the story needs. */
export class DemoStepError extends Error {
  override readonly name = 'DemoStepError';
}

/** Default size of the demo hierarchy: 10 000 entities. */
export const DEMO_ENTITIES = 10_000;
/** Default seed: the same hierarchy, and the same moved node, on every run. */
export const DEMO_RANDOM_SEED = 7;
/** Default pause between the two stale status reads: 1500 ms. */
export const DEMO_STALENESS_PAUSE_MS = 1_500;
/** Default ancestor lookups measured for the SLO summary: 5000. */
export const DEMO_SLO_SAMPLES = 5_000;
/** Default audit rows shown: 8. */
export const DEMO_HISTORY_LIMIT = 8;

const BREADCRUMB_SEPARATOR = ' > ';

/** Printed instead of the SLO summary when this checkout has no SLO library. */

/**
 * The whole lifecycle on one database, told step by step through `output`: migrate, seed,
 * refresh, move a subtree, watch both views go stale and staleness grow, refresh, read the moved
 * node back from the views, check the SLOs, show the audit. Each step goes through the same
 * library code the commands use. Throws {@link DemoStepError} when a step's outcome is wrong
 * (e.g. a refresh failed), and the signal's reason when aborted.
 */
export async function runDemo(options: DemoOptions): Promise<DemoReport> {
  const { output, logger, signal } = options;
  const entities = options.entities ?? DEMO_ENTITIES;
  const randomSeed = options.randomSeed ?? DEMO_RANDOM_SEED;
  const historyLimit = options.historyLimit ?? DEMO_HISTORY_LIMIT;
  const target = options.connection.target.display;

  const handle = openDatabase(options.connection);
  try {
    await handle.ping();
    const version = await sql<{ v: string }>`SELECT current_setting('server_version') AS v`.execute(
      handle.db,
    );
    output.line({
      text: `connected: PostgreSQL ${version.rows[0]?.v ?? '?'} at ${target}`,
      tone: 'dim',
    });

    output.section('Migrate', 'hierarchy-db migrate up');
    const migrateStarted = performance.now();
    const migration = await new Migrator({ connection: options.connection, logger }).up();
    output.line(
      `applied ${migration.ran.length} migrations in ${ms(performance.now() - migrateStarted)}: `,
      { text: migration.ran.join(', '), tone: 'dim' },
    );
    signal?.throwIfAborted();
    const engine = new RefreshEngine({ pool: handle.pool, logger, target });

    output.section(
      `Seed ${entities} entities`,
      `hierarchy-db seed --entities ${entities} --random-seed ${randomSeed}`,
    );
    const seeded = await seed(handle, { entities, randomSeed, output });
    output.line(
      `seeded ${seeded.entities} entities in ${ms(seeded.durationMs)}: ${seeded.roots} roots, ` +
        `depth ${seeded.depth} (${seeded.levels.join(' / ')} per level), ${seeded.inactive} inactive`,
    );
    await printStatus(handle, output, 'the views know nothing of them yet:');
    signal?.throwIfAborted();

    output.section('Refresh both views', 'hierarchy-db refresh');
    printRefresh(output, await refreshOrThrow(engine));
    await printStatus(handle, output);
    signal?.throwIfAborted();

    output.section('Move a subtree: one UPDATE of its paths');
    const move = await pickSubtreeMove(handle.db);
    const breadcrumbBefore = await breadcrumbOrThrow(handle, move.node.id);
    const countsBefore = await readDescendantCounts(handle.db, movedIds(move));
    const moveResult = await moveSubtree(handle.pool, move);
    const moveEndedAt = performance.now();
    output.line(
      'moved ',
      { text: `${move.node.name} (id ${move.node.id})`, tone: 'strong' },
      ` and its subtree from under ${move.oldParent.name} to under `,
      { text: move.newParent.name, tone: 'strong' },
      `: one UPDATE, ${moveResult.rows} rows, ${ms(moveResult.durationMs)}`,
    );
    output.line({ text: moveResult.statement, tone: 'dim' });
    output.line(
      `path ${move.node.path} -> ${moveResult.newPath} ` +
        `(depth ${pathDepth(move.node.path)} -> ${pathDepth(moveResult.newPath)}, kept by the database)`,
    );
    signal?.throwIfAborted();

    output.section('Both views are now stale', 'hierarchy-db status');
    const firstStale = await printStatus(handle, output, 'right after the move:');
    await sleep(options.stalenessPauseMs ?? DEMO_STALENESS_PAUSE_MS, undefined, { signal });
    const secondStale = await printStatus(
      handle,
      output,
      `${ms(options.stalenessPauseMs ?? DEMO_STALENESS_PAUSE_MS)} later, staleness (data age) has grown:`,
    );
    const staleBreadcrumb = await breadcrumbOrThrow(handle, move.node.id);
    output.line('readers are never blocked, and still see the old hierarchy: ', {
      text: staleBreadcrumb.names.join(BREADCRUMB_SEPARATOR),
      tone: 'warn',
    });
    signal?.throwIfAborted();

    output.section('Refresh again', 'hierarchy-db refresh');
    const materializedResults = await refreshOrThrow(engine);
    const materializedVisibleMs = performance.now() - moveEndedAt;
    printRefresh(output, materializedResults);
    const freshStatus = await printStatus(handle, output, 'fresh again:');
    signal?.throwIfAborted();

    output.section('Read the moved node back from the views');
    const breadcrumbAfter = await breadcrumbOrThrow(handle, move.node.id);
    output.line(`breadcrumb of ${move.node.name} (mv_entity_ancestors): `, {
      text: breadcrumbAfter.names.join(BREADCRUMB_SEPARATOR),
      tone: 'good',
    });
    output.line({
      text: `before the move: ${breadcrumbBefore.names.join(BREADCRUMB_SEPARATOR)}`,
      tone: 'dim',
    });
    const countsAfter = await readDescendantCounts(handle.db, movedIds(move));
    output.line('descendant counts (mv_descendant_counts):');
    output.table(
      ['entity', 'role', 'before', 'after'],
      (
        [
          [move.node, 'moved node'],
          [move.oldParent, 'old parent'],
          [move.newParent, 'new parent'],
        ] as const
      ).map(([entity, role]) => [
        entity.name,
        role,
        countsBefore.get(entity.id) ?? null,
        countsAfter.get(entity.id) ?? null,
      ]),
    );
    signal?.throwIfAborted();

    output.section(
      'Switch both views to the incremental strategy, online',
      'hierarchy-db views set-strategy incremental',
    );
    const switchStarted = performance.now();
    const switchClient = await handle.pool.connect();
    try {
      await setViewStrategy(switchClient, { strategy: 'incremental' });
    } finally {
      switchClient.release();
    }
    output.line(
      `both views are now tables maintained from the change log, built beside the materialized views and swapped in ${ms(performance.now() - switchStarted)}; readers' SQL is unchanged`,
    );
    signal?.throwIfAborted();

    output.section('The same edit again, refreshed incrementally', 'hierarchy-db refresh');
    const back = await moveSubtree(handle.pool, {
      node: { ...move.node, path: moveResult.newPath },
      newParent: move.oldParent,
    });
    const backEndedAt = performance.now();
    output.line(
      'moved ',
      { text: move.node.name, tone: 'strong' },
      ` back under ${move.oldParent.name}: one UPDATE, ${back.rows} rows`,
    );
    const incrementalResults = await refreshOrThrow(engine);
    const incrementalVisibleMs = performance.now() - backEndedAt;
    printRefresh(output, incrementalResults);
    const breadcrumbIncremental = await breadcrumbOrThrow(handle, move.node.id);
    if (breadcrumbIncremental.names.join() !== breadcrumbBefore.names.join()) {
      throw new DemoStepError(
        `the incremental refresh shows ${breadcrumbIncremental.names.join(BREADCRUMB_SEPARATOR)} for ${move.node.name}, expected ${breadcrumbBefore.names.join(BREADCRUMB_SEPARATOR)}`,
      );
    }
    output.line('breadcrumb back where it started: ', {
      text: breadcrumbIncremental.names.join(BREADCRUMB_SEPARATOR),
      tone: 'good',
    });
    const strategies: StrategyComparison[] = [
      compare('materialized', moveResult.rows, materializedResults, materializedVisibleMs),
      compare('incremental', back.rows, incrementalResults, incrementalVisibleMs),
    ];
    output.line('the same edit under each strategy:');
    output.table(
      [
        'strategy',
        'rows moved',
        'method',
        'refresh (both views)',
        'rows changed',
        'edit to visible',
      ],
      strategies.map((c) => [
        c.strategy,
        c.rowsMoved,
        c.methods.join(', '),
        ms(c.refreshMs),
        c.rowsChanged,
        ms(c.editToVisibleMs),
      ]),
    );
    signal?.throwIfAborted();

    output.section('SLO summary', 'hierarchy-db slo');
    const slo = await checkSlo({
      pool: handle.pool,
      logger,
      target,
      samples: options.sloSamples ?? DEMO_SLO_SAMPLES,
    });
    printSlo(output, slo);
    signal?.throwIfAborted();

    output.section(`Last ${historyLimit} refreshes in the audit`, 'hierarchy-db history');
    const history = await readHistory(handle.db, { limit: historyLimit });
    output.table(
      ['started', 'view', 'trigger', 'status', 'method', 'duration_ms', 'rows', 'staleness_ms'],
      history.map((r) => [
        r.started_at.slice(11, 23),
        r.view,
        r.trigger,
        statusCell(r.status),
        r.method,
        r.duration_ms.toFixed(1),
        r.rows,
        r.staleness_ms,
      ]),
    );

    return {
      move,
      moveResult,
      breadcrumbBefore,
      breadcrumbAfter,
      staleStatus: [firstStale, secondStale],
      freshStatus,
      strategies,
      breadcrumbIncremental,
      slo,
    };
  } finally {
    await handle.close().catch(() => {});
  }
}

async function seed(
  handle: DatabaseHandle,
  options: { entities: number; randomSeed: number; output: DemoOutput },
) {
  const client = await handle.pool.connect();
  // A connection lost between statements is reported by the next query, not as a crash.
  const ignore = () => {};
  client.on('error', ignore);
  try {
    return await seedHierarchy(client, {
      entities: options.entities,
      randomSeed: options.randomSeed,
      onProgress: (p) => options.output.progress(p),
    });
  } finally {
    options.output.progressDone();
    client.off('error', ignore);
    client.release();
  }
}

async function refreshOrThrow(engine: RefreshEngine): Promise<RefreshResult[]> {
  const results = await engine.refresh({ trigger: 'manual' });
  const bad = results.find((r) => r.status === 'failed' || r.status === 'cancelled');
  if (bad) {
    throw new DemoStepError(
      `refresh of ${bad.view} ${bad.status}: ${bad.error_code ?? ''} ${bad.error_message ?? ''}`.trim(),
    );
  }
  return results;
}

async function breadcrumbOrThrow(handle: DatabaseHandle, entityId: number): Promise<Breadcrumb> {
  const breadcrumb = await readBreadcrumb(handle.db, entityId);
  if (!breadcrumb)
    throw new DemoStepError(`entity ${entityId} is missing from mv_entity_ancestors`);
  return breadcrumb;
}

function movedIds(move: SubtreeMove): number[] {
  return [move.node.id, move.oldParent.id, move.newParent.id];
}

function compare(
  strategy: ViewStrategy,
  rowsMoved: number,
  results: RefreshResult[],
  editToVisibleMs: number,
): StrategyComparison {
  const changed = results.map((r) => r.rows_changed);
  return {
    strategy,
    rowsMoved,
    methods: results.map((r) => r.method),
    refreshMs: results.reduce((sum, r) => sum + r.duration_ms, 0),
    rowsChanged: changed.every((n) => n !== null)
      ? changed.reduce<number>((sum, n) => sum + (n ?? 0), 0)
      : null,
    editToVisibleMs,
  };
}

function printRefresh(output: DemoOutput, results: RefreshResult[]): void {
  output.table(
    ['view', 'status', 'method', 'duration_ms', 'rows', 'staleness cured (ms)'],
    results.map((r) => [
      r.view,
      statusCell(r.status),
      r.method,
      r.duration_ms.toFixed(1),
      r.rows,
      r.staleness_ms,
    ]),
  );
}

async function printStatus(
  handle: DatabaseHandle,
  output: DemoOutput,
  caption?: string,
): Promise<ViewStatus[]> {
  const views = await readViewStatus(handle.db);
  if (caption) output.line(caption);
  output.table(
    ['view', 'populated', 'staleness_ms', 'pending', 'last refresh'],
    views.map((v) => [
      v.view,
      v.populated ? 'yes' : { text: 'NO', tone: 'bad' },
      { text: String(v.staleness_ms), tone: v.staleness_ms === 0 ? 'good' : 'warn' },
      { text: String(v.pending_changes), tone: v.pending_changes === 0 ? 'good' : 'warn' },
      v.last_refresh
        ? `${v.last_refresh.status} (${v.last_refresh.trigger}) at ${v.last_refresh.started_at.slice(11, 23)}`
        : 'never',
    ]),
  );
  return views;
}

function printSlo(output: DemoOutput, slo: SloSummary): void {
  const a = slo.ancestor_resolution;
  const r = slo.refresh;
  output.table(
    ['check', 'target', 'actual', 'status'],
    [
      [
        'ancestor resolution mean',
        `<= ${a.target_mean_ms} ms`,
        `${a.actual_mean_ms} ms`,
        statusCell(a.status),
      ],
      ['ancestor resolution p95', `<= ${a.target_p95_ms} ms`, `${a.actual_p95_ms} ms`, ''],
      [
        r.source === 'audit' ? 'view refresh p95 (audit)' : 'refresh of both views',
        `< ${r.threshold_ms} ms`,
        `${r.actual_ms} ms`,
        statusCell(r.status),
      ],
    ],
  );
  output.line({
    text: `${a.samples} lookups by entity_id at ${slo.entities} entities (p99 ${a.actual_p99_ms} ms); ${
      r.source === 'audit'
        ? `the refresh figure is the p95 of the ${r.samples} view refreshes audited in the last 24 h, both strategies`
        : 'the refresh measured is a forced one'
    }`,
    tone: 'dim',
  });
}

function pathDepth(path: string): number {
  return path.split('.').length;
}

function statusCell(status: string): Styled {
  const tone: Tone =
    status === 'refreshed' || status === 'PASSED' ? 'good' : status === 'skipped' ? 'dim' : 'bad';
  return { text: status, tone };
}
