import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const PACKAGE_JSON = new URL('../../package.json', import.meta.url);

/**
 * The CLI entry that package.json's `bin` names (compiled, in dist/; test/build-setup.ts rebuilds
 * it when stale), run as a subprocess exactly as `npx hierarchy-db` runs it.
 */
export const CLI_PATH = fileURLToPath(
  new URL(
    (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { bin: Record<string, string> }).bin[
      'hierarchy-db'
    ]!,
    PACKAGE_JSON,
  ),
);

/** The outcome of one CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Options for {@link runCli}. */
export interface RunCliOptions {
  /** Environment added to a clean copy of this process's (DATABASE_URL and PG* removed). */
  env?: Record<string, string | undefined>;
  /** Kill the process after this long. Default 60 000 ms. */
  timeoutMs?: number;
  /** Working directory. Default: this process's. */
  cwd?: string;
}

/** This process's environment without connection settings, plus `extra`. */
function cleanEnv(
  extra: Record<string, string | undefined> = {},
): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key === 'DATABASE_URL' || key.startsWith('PG') || key.startsWith('HIERARCHY_DB_'))
      delete env[key];
  }
  return Object.assign(env, extra);
}

/** Runs `hierarchy-db ...args` and collects its output. */
export function runCli(args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  return runNode([CLI_PATH, ...args], options);
}

/** Runs `node ...args` with a clean connection environment and collects its output. */
export function runNode(args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  return runProcess(process.execPath, args, options);
}

/** Runs `command ...args` with a clean connection environment and collects its output. */
export function runProcess(
  command: string,
  args: string[],
  options: RunCliOptions = {},
): Promise<CliResult> {
  const env = cleanEnv(options.env);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env,
      ...(options.cwd ? { cwd: options.cwd } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, durationMs: Date.now() - started });
    });
  });
}

/** A CLI process started by {@link startCli}, still running or not. */
export interface RunningCli {
  /** The pid of node itself (inside the PID namespace's parent, when run as PID 1). */
  pid: number;
  /** Whether node runs as PID 1 of a PID namespace of its own (as in a container without init). */
  asPid1: boolean;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited, with its code (null when a signal killed it). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills it (and its namespace) at once; for cleanup. */
  kill(): void;
}

let unshareWorks: boolean | undefined;

/**
 * Whether `unshare --pid --fork` can run a process here as PID 1 of a new PID namespace (root,
 * util-linux). Then a signal without a handler is ignored by that process, as in a container.
 */
export function canRunAsPid1(): boolean {
  if (unshareWorks === undefined) {
    const result = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true'], {
      stdio: 'ignore',
      timeout: 10_000,
    });
    unshareWorks = result.status === 0;
  }
  return unshareWorks;
}

/**
 * Starts `node <CLI_PATH> ...args` directly (never through npx, which does not forward
 * signals), as PID 1 of a PID namespace of its own when {@link canRunAsPid1}, so a test can send
 * it signals as a container runtime does.
 */
export async function startCli(
  args: string[],
  options: { env?: Record<string, string | undefined> } = {},
): Promise<RunningCli> {
  const env = cleanEnv(options.env);
  const asPid1 = canRunAsPid1();
  const child = asPid1
    ? spawn('unshare', ['--pid', '--fork', '--kill-child', process.execPath, CLI_PATH, ...args], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
    : spawn(process.execPath, [CLI_PATH, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  let pid = child.pid!;
  if (asPid1) {
    // unshare forks node; its pid here is unshare's only child.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean);
      if (children.length > 0) {
        pid = Number(children[0]);
        break;
      }
      if (Date.now() > deadline) throw new Error('unshare started no child within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  return {
    pid,
    asPid1,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    kill: () => {
      // SIGKILL reaches a namespace's PID 1 from outside; --kill-child ends the rest.
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
      child.kill('SIGKILL');
    },
  };
}
