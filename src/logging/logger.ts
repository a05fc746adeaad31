import { type LevelWithSilent, type Logger, pino } from 'pino';
import { redactUrl } from '../config/database-url.ts';

/** The log levels `--log-level` accepts. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type { Logger };

/**
 * A pino logger writing JSON lines to stderr (stdout belongs to `--json` output).
 * Every string passes through {@link redactUrl}, so a connection URL never leaks a password.
 * @param level default `info`
 */
export function createLogger(level: LevelWithSilent = 'info', name = 'hierarchy-db'): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['password', '*.password', 'connectionString'], censor: '***' },
      hooks: {
        logMethod(args, method) {
          method.apply(
            this,
            args.map((arg) => (typeof arg === 'string' ? redactUrl(arg) : arg)) as Parameters<
              typeof method
            >,
          );
        },
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
