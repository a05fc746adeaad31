import type { CommandModule } from 'yargs';
import { DEFAULT_POLL_INTERVAL_MS } from '../../daemon/change-poller.ts';
import { Daemon } from '../../daemon/daemon.ts';
import {
  DEFAULT_DEBOUNCE_MS,
  DEFAULT_GRACE_MS,
  DEFAULT_HTTP_HOST,
  DEFAULT_HTTP_PORT,
  DEFAULT_MAX_WAIT_MS,
  resolveDaemonOptions,
} from '../../daemon/daemon-options.ts';
import { onShutdownSignals } from '../../daemon/shutdown-signals.ts';
import { type GlobalArgs, runCommand } from '../context.ts';
import { EXIT } from '../exit-codes.ts';
import { lockTimeoutOption, statementTimeoutOption } from '../options.ts';

interface DaemonArgs extends GlobalArgs {
  schedule?: string;
  'on-change': boolean;
  'poll-interval': string;
  debounce: string;
  'max-wait': string;
  'http-host': string;
  'http-port': string;
  grace: string;
  'statement-timeout': string;
  'lock-timeout': string;
}

/** `hierarchy-db daemon`: scheduled and change-driven refresh, health, readiness, metrics. */
export const daemonCommand: CommandModule<GlobalArgs, DaemonArgs> = {
  command: 'daemon',
  describe:
    'run the refresh daemon: cron and/or change-driven refresh, /healthz, /readyz, /metrics; safe as several replicas',
  builder: (y) =>
    y
      .option('schedule', {
        type: 'string',
        describe:
          "cron expression, 5 fields or 6 with seconds first (e.g. '*/30 * * * * *'), in the process's time zone (TZ); each tick refreshes views with pending changes (trigger schedule)",
      })
      .option('on-change', {
        type: 'boolean',
        default: false,
        describe:
          'poll the change log every --poll-interval and refresh (trigger change) once writes are quiet for --debounce, at most --max-wait after the first change',
      })
      .option('poll-interval', {
        type: 'string',
        default: `${DEFAULT_POLL_INTERVAL_MS}ms`,
        describe:
          'with --on-change: time between probes of the change log (each costs well under 1 ms)',
      })
      .option('debounce', {
        type: 'string',
        default: `${DEFAULT_DEBOUNCE_MS / 1000}s`,
        describe: 'quiet period after the last change before a change refresh',
      })
      .option('max-wait', {
        type: 'string',
        default: `${DEFAULT_MAX_WAIT_MS / 1000}s`,
        describe: 'longest wait after the first unreflected change, however busy the writes',
      })
      .option('http-host', {
        type: 'string',
        default: DEFAULT_HTTP_HOST,
        describe: 'address of /healthz, /readyz and /metrics (0.0.0.0 to be scraped from outside)',
      })
      .option('http-port', {
        type: 'string',
        default: String(DEFAULT_HTTP_PORT),
        describe: 'port of /healthz, /readyz and /metrics (0 = any free port, logged)',
      })
      .option('grace', {
        type: 'string',
        default: `${DEFAULT_GRACE_MS / 1000}s`,
        describe:
          'on SIGTERM/SIGINT, how long a running refresh may finish before it is cancelled (a second signal exits at once)',
      })
      .option('statement-timeout', statementTimeoutOption)
      .option('lock-timeout', lockTimeoutOption)
      .epilog(
        'Give --schedule, --on-change, or both; with neither the daemon refuses to start (exit 2). ' +
          'Replicas coordinate through the database: refreshes never overlap and each schedule tick refreshes each view once. ' +
          'The daemon keeps running while the database is away (/readyz answers 503) and catches up when it is back.',
      ) as never,
  handler: async (args) => {
    await runCommand(
      args,
      async (ctx) => {
        const options = resolveDaemonOptions({
          schedule: args.schedule,
          onChange: args['on-change'],
          pollInterval: args['poll-interval'],
          debounce: args.debounce,
          maxWait: args['max-wait'],
          httpHost: args['http-host'],
          httpPort: args['http-port'],
          grace: args.grace,
          statementTimeout: args['statement-timeout'],
          lockTimeout: args['lock-timeout'],
        });
        const daemon = new Daemon(options, { connection: ctx.connection, logger: ctx.logger });
        const removeHandlers = onShutdownSignals(
          (signal) => void daemon.stop(signal),
          (signal) => {
            ctx.logger.warn({ event: 'daemon.forced', signal }, `second ${signal}: exiting now`);
            process.exit(EXIT.FAILED);
          },
        );
        try {
          await daemon.start();
          await daemon.done;
        } finally {
          removeHandlers();
        }
        return EXIT.OK;
      },
      { signals: 'own' },
    );
  },
};
