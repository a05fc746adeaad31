import { createRequire } from 'node:module';
import { type DestinationStream, type LevelWithSilent, type Logger, pino } from 'pino';
import type PinoPretty from 'pino-pretty';
import { redactUrl } from '../config/database-url.ts';
import { errorFields } from './error-fields.ts';

/** The log levels `--log-level` accepts. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The log formats `--log-format` accepts: JSON lines, or pino-pretty's lines for a person. */
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export type { Logger };

/**
 * A pino logger writing to stderr (stdout belongs to `--json` output): JSON lines, or with
 * `format` `pretty` one readable line per record (colored when stderr is a terminal and
 * NO_COLOR is unset). Every string passes through {@link redactUrl}, so a connection URL never
 * leaks a password.
 * @param level default `info`
 * @param format default `json`
 */
export function createLogger(
  level: LevelWithSilent = 'info',
  name = 'hierarchy-db',
  format: LogFormat = 'json',
): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['password', '*.password', 'connectionString'], censor: '***' },
      // `err` has one shape (src/logging/error-fields.ts): pino's own serializer would rewrite
      // ours (type `Object`, an empty stack), and an Error passed as `err` gets ours too.
      serializers: {
        err: (value: unknown) => (value instanceof Error ? errorFields(value).err : value),
      },
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
    format === 'pretty' ? prettyDestination() : pino.destination({ fd: 2, sync: true }),
  );
}

/** pino-pretty on stderr, loaded only when asked for (the JSON default never loads it). */
function prettyDestination(): DestinationStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  return pretty({
    destination: 2,
    sync: true,
    colorize: Boolean(process.stderr.isTTY) && !process.env.NO_COLOR,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,name',
    singleLine: true,
  });
}
