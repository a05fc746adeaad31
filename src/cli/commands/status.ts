import type { CommandModule } from 'yargs';
import { readViewStatus } from '../../audit/view-status.ts';
import { formatDuration, parseDuration } from '../../config/duration.ts';
import { type GlobalArgs, runCommand } from '../context.ts';
import { withDatabase } from '../database.ts';
import { EXIT } from '../exit-codes.ts';
import { jsonOption } from '../options.ts';
import { formatTable, printJson, printLine } from '../print.ts';

interface StatusArgs extends GlobalArgs {
  json: boolean;
  'max-staleness'?: string;
}

/** `hierarchy-db status`: per view populated, last refresh, staleness, pending changes. */
export const statusCommand: CommandModule<GlobalArgs, StatusArgs> = {
  command: 'status',
  describe:
    'per view: populated, last refresh, staleness (data age), pending changes; exit 1 if staler than --max-staleness or unpopulated',
  builder: (y) =>
    y.option('json', jsonOption()).option('max-staleness', {
      type: 'string',
      describe: 'staleness budget, e.g. 5m: exit 1 when a view is staler',
    }) as never,
  handler: (args) =>
    runCommand(args, async (ctx) => {
      const budgetMs =
        args['max-staleness'] === undefined
          ? null
          : parseDuration(args['max-staleness'], 'max-staleness', {
              maxMs: Number.MAX_SAFE_INTEGER,
            });
      const views = await withDatabase(ctx, (handle) => readViewStatus(handle.db));
      const ok = views.every(
        (v) => v.populated && (budgetMs === null || v.staleness_ms <= budgetMs),
      );
      if (args.json) {
        printJson({ ok, checked_at: new Date().toISOString(), max_staleness_ms: budgetMs, views });
      } else {
        printLine(
          formatTable(
            ['view', 'strategy', 'populated', 'staleness', 'pending', 'last refresh'],
            views.map((v) => [
              v.view,
              v.strategy,
              v.populated ? 'yes' : 'NO',
              v.staleness_ms === 0 ? 'fresh' : formatDuration(v.staleness_ms),
              v.pending_changes,
              v.last_refresh
                ? `${v.last_refresh.status}${v.last_refresh.method ? ` ${v.last_refresh.method}` : ''} (${v.last_refresh.trigger}) at ${v.last_refresh.started_at} in ${formatDuration(v.last_refresh.duration_ms)}`
                : 'never',
            ]),
          ),
        );
        if (!ok) {
          printLine(
            budgetMs === null
              ? 'NOT OK: a view is not populated; run `hierarchy-db refresh`'
              : `NOT OK: a view is staler than ${formatDuration(budgetMs)} or unpopulated; run \`hierarchy-db refresh\``,
          );
        }
      }
      return ok ? EXIT.OK : EXIT.FAILED;
    }),
};
