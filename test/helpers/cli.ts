import { spawn } from 'node:child_process';
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

/** Runs `hierarchy-db ...args` and collects its output. */
export function runCli(args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  return runNode([CLI_PATH, ...args], options);
}

/** Runs `node ...args` with a clean connection environment and collects its output. */
export function runNode(args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key === 'DATABASE_URL' || key.startsWith('PG') || key.startsWith('HIERARCHY_DB_'))
      delete env[key];
  }
  Object.assign(env, options.env);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
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
