import type { CommandModule } from 'yargs';
import { parseDuration } from '../../config/duration.ts';
import { RefreshEngine } from '../../refresh/refresh-engine.ts';
import { HIERARCHY_VIEWS, parseViewNames } from '../../refresh/views.ts';
import { type GlobalArgs, runCommand } from '../context.ts';
import { withDatabase } from '../database.ts';
import { EXIT } from '../exit-codes.ts';
import {
  formatRefreshDetail,
  jsonOption,
  lockTimeoutOption,
  statementTimeoutOption,
} from '../options.ts';
import { formatTable, printJson, printLine } from '../print.ts';

interface RefreshArgs extends GlobalArgs {
  force: boolean;
  full: boolean;
  view?: string[];
  json: boolean;
  'statement-timeout': string;
  'lock-timeout': string;
}

/** `hierarchy-db refresh`: refresh now, through refresh_hierarchy_views() (trigger `manual`). */
export const refreshCommand: CommandModule<GlobalArgs, RefreshArgs> = {
  command: 'refresh',
  describe: 'refresh the views now (trigger manual); exit 1 if a view failed',
  builder: (y) =>
    y
      .option('force', {
        type: 'boolean',
        default: false,
        describe: 'refresh views that have no pending change too',
      })
      .option('full', {
        type: 'boolean',
        default: false,
        describe:
          'recompute from the definition whatever the strategy, applying only the difference (restores an incremental table that drifted; see verify --data)',
      })
      .option('view', {
        type: 'string',
        array: true,
        describe: `only this view (repeatable): ${HIERARCHY_VIEWS.join(', ')}`,
      })
      .option('json', jsonOption())
      .option('statement-timeout', statementTimeoutOption)
      .option('lock-timeout', lockTimeoutOption) as never,
  handler: (args) =>
    runCommand(args, async (ctx) => {
      const views = parseViewNames(args.view);
      const statementTimeoutMs = parseDuration(args['statement-timeout'], 'statement-timeout');
      const lockTimeoutMs = parseDuration(args['lock-timeout'], 'lock-timeout');
      const results = await withDatabase(ctx, (handle) =>
        new RefreshEngine({
          pool: handle.pool,
          logger: ctx.logger,
          target: ctx.connection.target.display,
        }).refresh({
          trigger: 'manual',
          force: args.force,
          full: args.full,
          ...(views ? { views } : {}),
          statementTimeoutMs,
          lockTimeoutMs,
        }),
      );
      if (args.json) {
        printJson({ results });
      } else {
        printLine(
          formatTable(
            [
              'view',
              'status',
              'method',
              'duration_ms',
              'rows',
              'changed',
              'staleness_ms',
              'detail',
            ],
            results.map((r) => [
              r.view,
              r.status,
              r.method,
              r.duration_ms.toFixed(1),
              r.rows,
              r.rows_changed,
              r.staleness_ms,
              formatRefreshDetail(r),
            ]),
          ),
        );
      }
      return results.some((r) => r.status === 'failed' || r.status === 'cancelled')
        ? EXIT.FAILED
        : EXIT.OK;
    }),
};
