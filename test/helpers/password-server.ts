import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from '../../src/db/embedded-server.ts';
import { waitUntil } from './wait-until.ts';

/** A PostgreSQL server that asks for a password (SCRAM) and a login role on it. */
export interface PasswordServer {
  /** `host:port` of the server. */
  hostPort: string;
  /** The server's version (`server_version`). */
  version: string;
  /** A LOGIN role that has a password; connect as it without one to be refused. */
  role: string;
  password: string;
  /** Where the server came from, for test output. */
  description: string;
  stop(): Promise<void>;
}

/**
 * A server that asks `role` for a password: the test server itself when it does (embedded
 * PostgreSQL 18 uses scram-sha-256), otherwise — a server that trusts local connections, as the
 * machine's PostgreSQL 15 does — a private cluster initialised with `-A scram-sha-256` from the
 * binaries of the test server's own major version (Debian's /usr/lib/postgresql/N/bin), so the
 * same server version is exercised. `{ unavailable }`, saying why, when neither is possible.
 */
export async function startPasswordServer(
  adminUrl: string,
): Promise<PasswordServer | { unavailable: string }> {
  const role = `hdbt_pw_${randomBytes(3).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  const admin = new pg.Client(adminUrl);
  await admin.connect();
  let version: string;
  try {
    version = (await admin.query<{ v: string }>("SELECT current_setting('server_version') AS v"))
      .rows[0]!.v;
    await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  const dropRole = async () => {
    const cleanup = new pg.Client(adminUrl);
    await cleanup.connect();
    await cleanup.query(`DROP ROLE IF EXISTS ${role}`).finally(() => cleanup.end());
  };
  if (await asksForPassword(url.hostname, Number(url.port || 5432), role)) {
    return {
      hostPort: `${url.hostname}:${url.port || 5432}`,
      version,
      role,
      password,
      description: `the test server (PostgreSQL ${version})`,
      stop: dropRole,
    };
  }
  await dropRole();
  return startPrivateCluster(version, role, password);
}

/** True when the server refuses `role` without a password (it asked for one). */
async function asksForPassword(host: string, port: number, role: string): Promise<boolean> {
  // A password callback that gives none: pg fails on its side as soon as the server asks.
  const client = new pg.Client({
    host,
    port,
    user: role,
    database: 'postgres',
    password: async () => undefined as unknown as string,
    connectionTimeoutMillis: 5_000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.end();
    return false;
  } catch {
    client.connection.stream.destroy();
    return true;
  }
}

async function startPrivateCluster(
  version: string,
  role: string,
  password: string,
): Promise<PasswordServer | { unavailable: string }> {
  const major = version.split(/[.\s]/)[0];
  const binDir = `/usr/lib/postgresql/${major}/bin`;
  if (!existsSync(join(binDir, 'initdb'))) {
    return {
      unavailable: `the test server (PostgreSQL ${version}) trusts local connections and no PostgreSQL ${major} binaries are at ${binDir} to start a private cluster that asks for passwords`,
    };
  }
  // As root, PostgreSQL refuses to run: it runs as the `postgres` user of the Debian package.
  const ids = process.getuid?.() === 0 ? systemUser('postgres') : undefined;
  const dir = await mkdtemp(join(tmpdir(), 'hdbt-scram-'));
  await chmod(dir, 0o755);
  const data = join(dir, 'data');
  const pwfile = join(dir, 'pwfile');
  const superPassword = randomBytes(12).toString('hex');
  await writeFile(pwfile, `${superPassword}\n`);
  if (ids) {
    await chown(dir, ids.uid, ids.gid);
    await chown(pwfile, ids.uid, ids.gid);
  }
  const asUser = ids ? { uid: ids.uid, gid: ids.gid } : {};
  execFileSync(
    join(binDir, 'initdb'),
    ['-D', data, '-U', 'postgres', `--pwfile=${pwfile}`, '-A', 'scram-sha-256', '--no-sync'],
    { ...asUser, stdio: 'ignore' },
  );
  const port = await freePort();
  const server = spawn(
    join(binDir, 'postgres'),
    [
      '-D',
      data,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'fsync=off',
    ],
    { ...asUser, stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  const stop = async () => {
    // SIGQUIT: immediate shutdown, nothing in this cluster is worth writing.
    server.kill('SIGQUIT');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const superUrl = `postgres://postgres:${superPassword}@127.0.0.1:${port}/postgres`;
    await waitUntil(
      async () => {
        const client = new pg.Client(superUrl);
        client.on('error', () => {});
        await client.connect();
        try {
          await client.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
        } finally {
          await client.end();
        }
        return true;
      },
      30_000,
      `private PostgreSQL ${major} cluster on port ${port} accepting connections`,
      200,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    hostPort: `127.0.0.1:${port}`,
    version,
    role,
    password,
    description: `a private PostgreSQL ${major} cluster with scram-sha-256 (the test server trusts local connections)`,
    stop,
  };
}

function systemUser(name: string): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  return { uid, gid };
}
