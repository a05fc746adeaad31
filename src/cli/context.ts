import { ConfigError } from '../config/config-error.ts';
import { redactUrl, resolveDatabaseTarget } from '../config/database-url.ts';
import { onShutdownSignals, type ShutdownSignal } from '../daemon/shutdown-signals.ts';
import { ConnectionError } from '../db/connection-error.ts';
import { type ConnectionOptions, validateSchemaName } from '../db/pool.ts';
import { abortOpenConnections } from '../db/tracked-client.ts';
import { errorFields } from '../logging/error-fields.ts';
import {
  createLogger,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
  type Logger,
  type LogLevel,
} from '../logging/logger.ts';
import { type CommandLineOnlyFlag, refuseWithheldFlags } from './command-line-only.ts';
import { EXIT, exitCodeForSignal } from './exit-codes.ts';

/** How long a finished command may wait for stray handles before it exits anyway. */
const LINGER_BOUND_MS = 2_000;

/** Flags every command accepts. */
export interface GlobalArgs {
  'database-url'?: string;
  'log-level': string;
  schema?: string;
  /** Default: `pretty` when stderr is a terminal, else `json` (see {@link logFormatOf}). */
  'log-format'?: string;
}

/** What a command handler gets: a logger and the connection settings. */
export interface CommandContext {
  logger: Logger;
  logLevel: LogLevel;
  logFormat: LogFormat;
  connection: ConnectionOptions;
}

/** Validates the global flags. Throws {@link ConfigError} for a bad level or URL. */
export function createContext(
  args: GlobalArgs,
  applicationName = 'hierarchy-db/cli',
): CommandContext {
  const level = args['log-level'] as LogLevel;
  if (!LOG_LEVELS.includes(level)) {
    throw new ConfigError(
      `--log-level: expected one of ${LOG_LEVELS.join(', ')}, got '${args['log-level']}'`,
    );
  }
  const format = logFormatOf(args['log-format'], Boolean(process.stderr.isTTY));
  const target = resolveDatabaseTarget(args['database-url']);
  const schema =
    args.schema === undefined || args.schema === '' ? undefined : validateSchemaName(args.schema);
  return {
    logger: createLogger(level, 'hierarchy-db', format),
    logLevel: level,
    logFormat: format,
    connection: { target, applicationName, ...(schema !== undefined ? { schema } : {}) },
  };
}

/**
 * `--log-format`, else `pretty` for a person at a terminal and `json` for everything else
 * (pipes, files, log collectors). Throws {@link ConfigError} for an unknown format.
 */
export function logFormatOf(flag: string | undefined, stderrIsTerminal: boolean): LogFormat {
  if (flag === undefined || flag === '') return stderrIsTerminal ? 'pretty' : 'json';
  if (!(LOG_FORMATS as readonly string[]).includes(flag)) {
    throw new ConfigError(`--log-format: expected one of ${LOG_FORMATS.join(', ')}, got '${flag}'`);
  }
  return flag as LogFormat;
}

/** A check or operation failed in a way already explained: exit 1 with this message. */
export class CommandFailedError extends Error {
  override readonly name = 'CommandFailedError';
}

/** Maps an error to its exit code (see {@link EXIT}): alerting and deploy scripts branch on it. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof ConfigError) return EXIT.USAGE;
  if (error instanceof ConnectionError) return EXIT.UNREACHABLE;
  return EXIT.FAILED;
}

/** Options of {@link runCommand}. */
export interface RunCommandOptions {
  /** The command's flags of COMMAND_LINE_ONLY_FLAGS: refused when set in the environment. */
  commandLineOnly?: readonly CommandLineOnlyFlag[];
  /**
   * `interrupt` (default): SIGTERM/SIGINT cancel the running statements, close every connection
   * and exit 143/130 (see {@link interruptOnSignals}). `own`: the command handles them itself
   * (the daemon's graceful stop, the demo's cleanup).
   */
  signals?: 'interrupt' | 'own';
}

/** Bound on cancelling and closing the connections after a signal. */
const INTERRUPT_BOUND_MS = 3_000;

/**
 * Makes SIGTERM and SIGINT stop the command promptly, as an operator, an orchestrator or a
 * container runtime expects — also as PID 1 of a container, where a signal without a handler is
 * ignored: cancel whatever each connection is running (its transaction rolls back), close them
 * all (their sessions end, releasing locks such as the migration lock), exit 128 + the signal's
 * number. A second signal exits at once. Returns whether a signal arrived, and a remover.
 */
function interruptOnSignals(context: () => CommandContext | undefined): {
  interrupted: () => boolean;
  remove: () => void;
} {
  let received: ShutdownSignal | undefined;
  const remove = onShutdownSignals(
    (signal) => {
      received = signal;
      // Whatever ends the process now (this handler, or runCommand's linger bound) reports it.
      process.exitCode = exitCodeForSignal(signal);
      report(
        context(),
        'warn',
        { event: 'command.interrupted', signal, exit_code: exitCodeForSignal(signal) },
        `${signal}: cancelling running statements and exiting`,
      );
      void abortOpenConnections(INTERRUPT_BOUND_MS).finally(() =>
        process.exit(exitCodeForSignal(signal)),
      );
    },
    (signal) => process.exit(exitCodeForSignal(signal)),
  );
  return { interrupted: () => received !== undefined, remove };
}

/**
 * Runs a command body: sets `process.exitCode` from its result or error, printing errors as
 * one redacted line on stderr (with the stack only at `--log-level debug` or `trace`).
 */
export async function runCommand(
  args: GlobalArgs,
  body: (ctx: CommandContext) => Promise<number | undefined>,
  options: RunCommandOptions = {},
): Promise<void> {
  let debug = args['log-level'] === 'debug' || args['log-level'] === 'trace';
  let ctx: CommandContext | undefined;
  const signals = options.signals === 'own' ? undefined : interruptOnSignals(() => ctx);
  try {
    refuseWithheldFlags(options.commandLineOnly ?? []);
    ctx = createContext(args);
    debug = ctx.logLevel === 'debug' || ctx.logLevel === 'trace';
    const code = await body(ctx);
    if (!signals?.interrupted()) process.exitCode = typeof code === 'number' ? code : EXIT.OK;
  } catch (error) {
    // After a signal, errors are the cancellation's own ("canceling statement due to user
    // request"): the signal's line already said what happened, and its exit code stands.
    if (!signals?.interrupted()) {
      process.exitCode = exitCodeFor(error);
      printError(error, debug, ctx);
    }
  } finally {
    signals?.remove();
    // The work is done and everything was closed; a handle that still remains (a socket a
    // driver did not close) must not keep the process, or a deploy step, waiting on it.
    setTimeout(() => process.exit(), LINGER_BOUND_MS).unref();
  }
}

/**
 * Reports the error that ended a command: one `command.failed` record (with `err`, see
 * src/logging/error-fields.ts) when the logs are JSON, so that nothing but JSON reaches a log
 * collector; otherwise, and before the logger exists (a bad --log-level), the line
 * `hierarchy-db: <message>`. The stack only when debugging.
 */
export function printError(error: unknown, debug: boolean, ctx?: CommandContext): void {
  const message =
    error instanceof ConfigError && error.option !== undefined
      ? `--${error.option}: ${error.problem}`
      : error instanceof Error
        ? error.message
        : String(error);
  const stack = debug && error instanceof Error && error.stack ? redactUrl(error.stack) : undefined;
  report(
    ctx,
    'error',
    {
      event: 'command.failed',
      exit_code: exitCodeFor(error),
      ...errorFields(error),
      ...(stack !== undefined ? { stack } : {}),
    },
    redactUrl(message.split('\n')[0] ?? message),
  );
  if (stack !== undefined && ctx?.logFormat !== 'json') process.stderr.write(`${stack}\n`);
}

/** A record in JSON logs, else the line `hierarchy-db: <message>` on stderr. */
function report(
  ctx: CommandContext | undefined,
  level: 'warn' | 'error',
  fields: Record<string, unknown>,
  message: string,
): void {
  // Never lost: below the logger's level (--log-level fatal or silent) it is the plain line.
  if (ctx?.logFormat === 'json' && ctx.logger.isLevelEnabled(level))
    ctx.logger[level](fields, message);
  else process.stderr.write(`hierarchy-db: ${message}\n`);
}
