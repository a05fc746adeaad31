import type { CommandModule } from 'yargs';
import { ConfigError } from '../../config/config-error.ts';
import { formatDuration, parseDuration } from '../../config/duration.ts';
import { connectOrThrow } from '../../db/connect.ts';
import { createClient } from '../../db/pool.ts';
import { listViews, setViewStrategy, type ViewInfo } from '../../refresh/view-strategy.ts';
import {
  HIERARCHY_VIEWS,
  parseViewNames,
  VIEW_STRATEGIES,
  type ViewStrategy,
} from '../../refresh/views.ts';
import { type CommandContext, type GlobalArgs, runCommand } from '../context.ts';
import { EXIT } from '../exit-codes.ts';
import { jsonOption } from '../options.ts';
import { formatTable, printJson, printLine } from '../print.ts';

interface ViewsArgs extends GlobalArgs {
  json: boolean;
}

interface SetStrategyArgs extends ViewsArgs {
  strategy: string;
  view?: string[];
  'lock-wait': string;
  'lock-timeout': string;
}

/** Runs `fn` on a dedicated client (the strategy switch commits on its own). */
async function withClient<T>(
  ctx: CommandContext,
  fn: (client: ReturnType<typeof createClient>) => Promise<T>,
): Promise<T> {
  const client = createClient(ctx.connection);
  await connectOrThrow(client, ctx.connection.target);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function printViews(views: ViewInfo[], json: boolean): void {
  if (json) {
    printJson({ views });
    return;
  }
  printLine(
    formatTable(
      ['view', 'strategy', 'relation', 'rows', 'populated', 'staleness', 'last refresh'],
      views.map((v) => [
        v.view,
        v.strategy,
        v.relation_kind ?? 'MISSING',
        v.rows,
        v.populated ? 'yes' : 'NO',
        v.staleness_ms === 0 ? 'fresh' : formatDuration(v.staleness_ms),
        v.last_refresh
          ? `${v.last_refresh.status}${v.last_refresh.method ? ` ${v.last_refresh.method}` : ''} at ${v.last_refresh.started_at} in ${formatDuration(v.last_refresh.duration_ms)}`
          : 'never',
      ]),
    ),
  );
}

const setStrategyCommand: CommandModule<ViewsArgs, SetStrategyArgs> = {
  command: 'set-strategy <strategy>',
  describe:
    'switch views to materialized (a materialized view refreshed CONCURRENTLY) or incremental (a table maintained from the change log), online',
  builder: (y) =>
    y
      .positional('strategy', {
        type: 'string',
        choices: VIEW_STRATEGIES as string[],
        describe: 'materialized | incremental',
      })
      .option('view', {
        type: 'string',
        array: true,
        describe: `only this view (repeatable): ${HIERARCHY_VIEWS.join(', ')}; default both`,
      })
      .option('lock-wait', {
        type: 'string',
        default: '5m',
        describe: 'how long to wait for the schema lock held by a migration or another switch',
      })
      .option('lock-timeout', {
        type: 'string',
        default: '30s',
        describe:
          'bound on each lock wait inside the switch (writers in flight when capture is enabled, a running refresh)',
      })
      .epilog(
        'Each view is built beside the old relation with its indexes and grants, then swapped in one short transaction: ' +
          'readers see no error and wait at most for the swap. Contents are identical before and after. Idempotent. ' +
          "From psql: CALL hierarchy_set_view_strategy('incremental');",
      ) as never,
  handler: (args) =>
    runCommand(args, async (ctx) => {
      if (!(VIEW_STRATEGIES as readonly string[]).includes(args.strategy)) {
        throw new ConfigError(
          `unknown strategy '${args.strategy}'; expected ${VIEW_STRATEGIES.join(' or ')}`,
        );
      }
      const views = parseViewNames(args.view);
      const lockWaitMs = parseDuration(args['lock-wait'], 'lock-wait');
      const lockTimeoutMs = parseDuration(args['lock-timeout'], 'lock-timeout');
      const started = Date.now();
      const after = await withClient(ctx, (client) =>
        setViewStrategy(client, {
          strategy: args.strategy as ViewStrategy,
          ...(views ? { views } : {}),
          lockWaitMs,
          lockTimeoutMs,
          onLockWait: (pid) =>
            ctx.logger.info(
              { event: 'views.lock_wait', holder_pid: pid ?? null },
              'a migration or another strategy switch holds the schema lock; waiting for it',
            ),
        }),
      );
      ctx.logger.info(
        {
          event: 'views.strategy_set',
          strategy: args.strategy,
          views: views ?? HIERARCHY_VIEWS,
          duration_ms: Date.now() - started,
        },
        `strategy ${args.strategy} in place`,
      );
      printViews(after, args.json);
      return EXIT.OK;
    }),
};

/** `hierarchy-db views`: list the views; `views set-strategy`: switch their strategy online. */
export const viewsCommand: CommandModule<GlobalArgs, ViewsArgs> = {
  command: 'views',
  describe:
    'list the views with strategy, relation kind, rows and last refresh; set-strategy switches online',
  builder: (y) =>
    y
      .option('json', jsonOption('one JSON document on stdout: { "views": [...] }'))
      .command(setStrategyCommand as never) as never,
  handler: (args) =>
    runCommand(args, async (ctx) => {
      printViews(await withClient(ctx, listViews), args.json);
      return EXIT.OK;
    }),
};
