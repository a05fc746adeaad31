import type { CommandModule } from 'yargs';
import { readRefreshInProgress } from '../../audit/refresh-activity.ts';
import { readViewStatus, type ViewStatus } from '../../audit/view-status.ts';
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
      const { views, refreshing } = await withDatabase(ctx, async (handle) => ({
        views: await readViewStatus(handle.db),
        refreshing: await readRefreshInProgress(handle.db),
      }));
      const ok = views.every(
        (v) => v.populated && (budgetMs === null || v.staleness_ms <= budgetMs),
      );
      if (args.json) {
        printJson({
          ok,
          checked_at: new Date().toISOString(),
          max_staleness_ms: budgetMs,
          views,
          refresh_in_progress: refreshing,
        });
      } else {
        printLine(
          formatTable(
            ['view', 'strategy', 'populated', 'staleness', 'pending', 'last refresh'],
            views.map((v) => [
              v.view,
              v.strategy,
              v.relation_kind === null ? 'MISSING' : v.populated ? 'yes' : 'NO',
              v.staleness_ms === 0 ? 'fresh' : formatDuration(v.staleness_ms),
              v.pending_changes,
              v.last_refresh
                ? `${v.last_refresh.status}${v.last_refresh.method ? ` ${v.last_refresh.method}` : ''} (${v.last_refresh.trigger}) at ${v.last_refresh.started_at} in ${formatDuration(v.last_refresh.duration_ms)}`
                : 'never',
            ]),
          ),
        );
        if (refreshing) {
          printLine(
            `refresh in progress: backend pid ${refreshing.pid}` +
              ` (${refreshing.application_name ?? 'unknown client'})` +
              (refreshing.started_at ? ` since ${refreshing.started_at}` : '') +
              (refreshing.view ? `, at ${refreshing.view}` : '') +
              (refreshing.wait_event?.startsWith('Lock') ? `, waiting for a lock` : ''),
          );
        }
        for (const line of advice(views, budgetMs)) printLine(line);
      }
      return ok ? EXIT.OK : EXIT.FAILED;
    }),
};

/**
 * What to run for each problem: a missing relation only `repair` recreates (a refresh has
 * nothing to refresh); an unpopulated or stale one a refresh fixes.
 */
export function advice(views: ViewStatus[], budgetMs: number | null): string[] {
  const missing = views.filter((v) => v.relation_kind === null).map((v) => v.view);
  const unpopulated = views
    .filter((v) => v.relation_kind !== null && !v.populated)
    .map((v) => v.view);
  const stale = views
    .filter((v) => v.relation_kind !== null && v.populated)
    .filter((v) => budgetMs !== null && v.staleness_ms > budgetMs)
    .map((v) => v.view);
  const lines: string[] = [];
  if (missing.length > 0) {
    lines.push(
      `NOT OK: ${missing.join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist; run \`hierarchy-db repair\` to recreate ${missing.length === 1 ? 'it' : 'them'} (a refresh cannot)`,
    );
  }
  if (unpopulated.length > 0) {
    lines.push(`NOT OK: ${unpopulated.join(', ')} not populated; run \`hierarchy-db refresh\``);
  }
  if (stale.length > 0 && budgetMs !== null) {
    lines.push(
      `NOT OK: ${stale.join(', ')} staler than ${formatDuration(budgetMs)}; run \`hierarchy-db refresh\``,
    );
  }
  return lines;
}
