import type { CommandModule } from 'yargs';
import { readHistory } from '../../audit/refresh-history.ts';
import { ConfigError } from '../../config/config-error.ts';
import { HIERARCHY_VIEWS, parseViewNames } from '../../refresh/views.ts';
import { type GlobalArgs, runCommand } from '../context.ts';
import { withDatabase } from '../database.ts';
import { EXIT } from '../exit-codes.ts';
import { formatRefreshDetail, jsonOption } from '../options.ts';
import { formatTable, printJson, printLine } from '../print.ts';

interface HistoryArgs extends GlobalArgs {
  view?: string[];
  limit: number;
  json: boolean;
}

/** `hierarchy-db history`: audit rows, newest first. */
export const historyCommand: CommandModule<GlobalArgs, HistoryArgs> = {
  command: 'history',
  describe: 'refresh audit rows, newest first',
  builder: (y) =>
    y
      .option('view', {
        type: 'string',
        array: true,
        describe: `only this view (repeatable): ${HIERARCHY_VIEWS.join(', ')}`,
      })
      .option('limit', { type: 'number', default: 20, describe: 'how many rows' })
      .option('json', jsonOption('one JSON document on stdout: { "history": [...] }')) as never,
  handler: (args) =>
    runCommand(args, async (ctx) => {
      const views = parseViewNames(args.view);
      if (!Number.isInteger(args.limit) || args.limit < 1 || args.limit > 10_000) {
        throw new ConfigError(
          `--limit: expected a whole number from 1 to 10000, got ${args.limit}`,
        );
      }
      const rows = await withDatabase(ctx, (handle) =>
        readHistory(handle.db, { ...(views ? { views } : {}), limit: args.limit }),
      );
      if (args.json) {
        printJson({ history: rows });
      } else {
        printLine(
          formatTable(
            [
              'started_at',
              'view',
              'trigger',
              'status',
              'method',
              'duration_ms',
              'rows',
              'changed',
              'staleness_ms',
              'detail',
            ],
            rows.map((r) => [
              r.started_at,
              r.view,
              r.trigger,
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
      return EXIT.OK;
    }),
};
