import type { CommandModule } from 'yargs';
import { formatDuration, parseDuration } from '../../config/duration.ts';
import {
  checkSlo,
  DEFAULT_REFRESH_THRESHOLD_MS,
  DEFAULT_SLO_SAMPLES,
  DEFAULT_TARGET_MEAN_MS,
  DEFAULT_TARGET_P95_MS,
} from '../../slo/slo-check.ts';
import { type GlobalArgs, runCommand } from '../context.ts';
import { withDatabase } from '../database.ts';
import { EXIT } from '../exit-codes.ts';
import { formatTable, printJson, printLine } from '../print.ts';

interface SloArgs extends GlobalArgs {
  json: boolean;
  samples: number;
  'target-mean-ms': number;
  'target-p95-ms': number;
  'refresh-threshold-ms': number;
  'refresh-window': string;
  'measure-refresh': boolean;
}

/** `hierarchy-db slo`: ancestor lookup latency and refresh duration against the SLOs. */
export const sloCommand: CommandModule<GlobalArgs, SloArgs> = {
  command: 'slo',
  describe:
    'validate the SLOs (ancestor lookup latency, refresh duration); exit 1 if one is missed',
  builder: (y) =>
    y
      .option('json', { type: 'boolean', default: false, describe: 'one JSON document on stdout' })
      .option('samples', {
        type: 'number',
        default: DEFAULT_SLO_SAMPLES,
        describe: 'measured ancestor lookups (after a warm-up)',
      })
      .option('target-mean-ms', {
        type: 'number',
        default: DEFAULT_TARGET_MEAN_MS,
        describe: 'ancestor lookup mean target',
      })
      .option('target-p95-ms', {
        type: 'number',
        default: DEFAULT_TARGET_P95_MS,
        describe: 'ancestor lookup p95 target',
      })
      .option('refresh-threshold-ms', {
        type: 'number',
        default: DEFAULT_REFRESH_THRESHOLD_MS,
        describe: 'the p95 of audited view refreshes (or the forced refresh) must take less',
      })
      .option('refresh-window', {
        type: 'string',
        default: '24h',
        describe: 'window of audited refreshes the refresh SLO is measured on',
      })
      .option('measure-refresh', {
        type: 'boolean',
        default: false,
        describe:
          'measure the refresh SLO with one forced refresh of both views instead of the audit (also done when the window holds no refresh)',
      })
      .example('$0 slo --json', 'lookups and the p95 of the last 24 h of refreshes')
      .example('$0 slo --measure-refresh', 'force one refresh of both views and time it') as never,
  handler: (args) =>
    runCommand(args, async (ctx) => {
      const report = await withDatabase(ctx, (handle) =>
        checkSlo({
          pool: handle.pool,
          logger: ctx.logger,
          target: ctx.connection.target.display,
          samples: args.samples,
          targetMeanMs: args['target-mean-ms'],
          targetP95Ms: args['target-p95-ms'],
          refreshThresholdMs: args['refresh-threshold-ms'],
          refreshWindowMs: parseDuration(args['refresh-window'], 'refresh-window', {
            maxMs: Number.MAX_SAFE_INTEGER,
          }),
          measureRefresh: args['measure-refresh'],
        }),
      );
      const ancestors = report.ancestor_resolution;
      const refresh = report.refresh;
      if (args.json) {
        printJson(report);
      } else {
        printLine(`SLO validation at ${report.entities} entities`);
        printLine(
          formatTable(
            ['check', 'target', 'actual', 'status'],
            [
              [
                'ancestor resolution mean',
                `<= ${ancestors.target_mean_ms} ms`,
                `${ancestors.actual_mean_ms} ms`,
                ancestors.status,
              ],
              [
                'ancestor resolution p95',
                `<= ${ancestors.target_p95_ms} ms`,
                `${ancestors.actual_p95_ms} ms (p99 ${ancestors.actual_p99_ms} ms, ${ancestors.samples} samples)`,
                ancestors.status,
              ],
              [
                refresh.source === 'audit'
                  ? `view refresh p95 (audit, last ${formatDuration(refresh.window_ms ?? 0)})`
                  : 'view refresh (both, forced)',
                `< ${refresh.threshold_ms} ms`,
                refresh.source === 'audit'
                  ? `${refresh.actual_ms} ms (${refresh.samples} refreshes)`
                  : `${refresh.actual_ms} ms`,
                refresh.status,
              ],
            ],
          ),
        );
      }
      return ancestors.status === 'PASSED' && refresh.status === 'PASSED' ? EXIT.OK : EXIT.FAILED;
    }),
};
