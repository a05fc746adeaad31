import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { CLI_PATH } from '../helpers/cli.ts';
import { waitUntil } from '../helpers/wait-until.ts';

export { waitUntil };

/** One pino line of the daemon's stderr (or `{ raw }` for anything that is not JSON). */
export interface LogLine {
  event?: string;
  level?: number;
  pid?: number;
  msg?: string;
  raw?: string;
  [field: string]: unknown;
}

/** A `hierarchy-db daemon` subprocess under test. */
export interface DaemonProcess {
  child: ChildProcess;
  logs: LogLine[];
  /** Resolves with the exit code and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>;
  /** The first log line matching `predicate` (already logged or still to come). */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** The HTTP port the daemon bound (`--http-port 0`). */
  port(): Promise<number>;
  /** GET a path of the daemon's HTTP server. */
  get(path: string): Promise<{ status: number; body: string; contentType: string | null }>;
  /** Everything it wrote to stderr, for assertion messages. */
  stderr(): string;
}

const running = new Set<DaemonProcess>();

/**
 * Starts `hierarchy-db --database-url URL daemon ...args --http-port 0` with a clean environment.
 * Always pair with {@link killDaemons} in `afterEach`.
 */
export function startDaemon(databaseUrl: string, args: string[]): DaemonProcess {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key === 'DATABASE_URL' || key.startsWith('PG') || key.startsWith('HIERARCHY_DB_'))
      delete env[key];
  }
  const child = spawn(
    process.execPath,
    [CLI_PATH, '--database-url', databaseUrl, 'daemon', '--http-port', '0', ...args],
    { env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const logs: LogLine[] = [];
  let stderr = '';
  let partial = '';
  const waiters = new Set<{ predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const text of lines) {
      if (text.trim() === '') continue;
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { raw: text };
      }
      logs.push(line);
      const problem = logLineProblem(line);
      if (problem) malformed.push(`${problem}: ${text}`);
      for (const waiter of waiters) {
        if (waiter.predicate(line)) {
          waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; atMs: number }>(
    (resolve) => {
      child.on('exit', (code, signal) => resolve({ code, signal, atMs: Date.now() }));
    },
  );

  const waitForLog = async (predicate: (line: LogLine) => boolean, timeoutMs = 15_000) => {
    const seen = logs.find(predicate);
    if (seen) return seen;
    let waiter: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void } | undefined;
    const found = new Promise<LogLine>((resolve) => {
      waiter = { predicate, resolve };
      waiters.add(waiter);
    });
    const timeout = sleep(timeoutMs).then(() => {
      throw new Error(`no matching daemon log line within ${timeoutMs}ms; stderr:\n${stderr}`);
    });
    const early = exited.then(({ code }) => {
      throw new Error(
        `daemon exited (code ${code}) before the expected log line; stderr:\n${stderr}`,
      );
    });
    try {
      return await Promise.race([found, timeout, early]);
    } finally {
      if (waiter) waiters.delete(waiter);
    }
  };

  const port = async () => {
    const line = await waitForLog((l) => l.event === 'http.listening');
    return Number(line.port);
  };

  const daemon: DaemonProcess = {
    child,
    logs,
    exited,
    waitForLog,
    port,
    get: async (path) => {
      const response = await fetch(`http://127.0.0.1:${await port()}${path}`, {
        signal: AbortSignal.timeout(5_000),
      });
      return {
        status: response.status,
        body: await response.text(),
        contentType: response.headers.get('content-type'),
      };
    },
    stderr: () => stderr,
  };
  running.add(daemon);
  void exited.then(() => running.delete(daemon));
  return daemon;
}

/** SIGKILLs every daemon still running and waits for them to go (for `afterEach`). */
export async function killDaemons(): Promise<void> {
  const all = [...running];
  for (const daemon of all) {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) {
      daemon.child.kill('SIGKILL');
    }
  }
  await Promise.all(all.map((d) => Promise.race([d.exited, sleep(5_000)])));
  const problems = malformed.splice(0);
  if (problems.length > 0) {
    throw new Error(`daemon log lines break the log format:\n${problems.join('\n')}`);
  }
}

/** Log lines of every daemon since the last {@link killDaemons} that break the format. */
const malformed: string[] = [];

/**
 * What is wrong with a daemon log line, if anything: every line is JSON (stderr is not a
 * terminal here), and an error is described only as `err: { type, message, code? }`
 * (src/logging/error-fields.ts), never by loose fields.
 */
export function logLineProblem(line: LogLine): string | undefined {
  if (line.raw !== undefined) return 'not JSON';
  for (const loose of ['error', 'error_code', 'error_message', 'sqlstate']) {
    if (loose in line) return `loose error field '${loose}' (use err)`;
  }
  if (!('err' in line)) return undefined;
  const err = line.err as Record<string, unknown> | null;
  const shaped =
    typeof err === 'object' &&
    err !== null &&
    typeof err.type === 'string' &&
    typeof err.message === 'string' &&
    (err.code === undefined || typeof err.code === 'string') &&
    Object.keys(err).every((key) => ['type', 'message', 'code'].includes(key));
  return shaped ? undefined : 'err is not { type, message, code? }';
}

/** Waits until `/readyz` answers `status`. */
export function waitForReady(daemon: DaemonProcess, timeoutMs = 15_000, status = 200) {
  return waitUntil(
    async () => (await daemon.get('/readyz')).status === status,
    timeoutMs,
    `/readyz ${status}`,
    100,
  );
}

/** A sample of the Prometheus text format. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict parser of the Prometheus text exposition format 0.0.4: every line must be a HELP or
 * TYPE comment or a sample; throws on anything else.
 */
export function parsePrometheusText(text: string): {
  types: Map<string, string>;
  samples: PromSample[];
} {
  const types = new Map<string, string>();
  const samples: PromSample[] = [];
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleLine = new RegExp(
    `^(${name})(?:\\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\]|\\\\.)*",?)*)\\})? (\\S+)(?: -?\\d+)?$`,
  );
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    const type = new RegExp(`^# TYPE (${name}) (counter|gauge|histogram|summary|untyped)$`).exec(
      line,
    );
    if (type) {
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    const match = sampleLine.exec(line);
    if (!match) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = pair[2] as string;
    }
    const raw = match[3] as string;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (Number.isNaN(value) && raw !== 'NaN') throw new Error(`bad sample value in ${line}`);
    samples.push({ name: match[1] as string, labels, value });
  }
  return { types, samples };
}

/** Backend pid of a daemon's refresh once it waits for a lock (another session holds the view's). */
export async function refreshWaitingOnLock(
  client: pg.Client,
  daemon: DaemonProcess,
  timeoutMs = 15_000,
): Promise<number> {
  let pid: number | undefined;
  await waitUntil(
    async () => {
      const { rows } = await client.query(
        `SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'hierarchy-db/daemon'
            AND wait_event_type = 'Lock' AND query LIKE '%refresh_hierarchy_views%'`,
      );
      pid = rows[0]?.pid;
      return pid !== undefined;
    },
    timeoutMs,
    `the daemon's refresh waits on the view lock; stderr:\n${daemon.stderr()}`,
  );
  return pid as number;
}
