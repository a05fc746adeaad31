import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  killDaemons,
  parsePrometheusText,
  startDaemon,
  waitForReady,
} from '../daemon/daemon-process.ts';
import { type CliResult, runCli, runProcess } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';
import { waitUntil } from '../helpers/wait-until.ts';
import { METRIC_LABELS, onPath } from './promql.ts';

// deploy/sql/daemon-login-role.sql, run with psql exactly as a DBA would, then the role it makes
// used as deploy/kubernetes/base/daemon-deployment.yaml uses it: the CLI and the daemon work,
// and nothing else does (sql/grants.sql gives hierarchy_reader and hierarchy_refresher).
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ROLE_SQL = 'deploy/sql/daemon-login-role.sql';
const DEPLOYMENT = 'deploy/kubernetes/base/daemon-deployment.yaml';

const psqlPath = onPath('psql');
const psqlMajor = psqlPath
  ? Number(/(\d+)/.exec(spawnSync(psqlPath, ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? 0)
  : 0;
const psqlReason = psqlPath ? '' : ' (skipped: psql is not on PATH)';

/** `psql URL --no-psqlrc -f deploy/sql/daemon-login-role.sql ...`, no PG* from this process. */
function runRoleSql(
  url: string,
  variables: Record<string, string>,
  env: Record<string, string> = {},
): Promise<CliResult> {
  const args = [url, '--no-psqlrc', '--file', ROLE_SQL];
  for (const [name, value] of Object.entries(variables))
    args.push('--variable', `${name}=${value}`);
  return runProcess(psqlPath!, args, { cwd: REPO_ROOT, env });
}

/** The daemon's arguments in the Deployment, listening on loopback only for the test. */
function deploymentDaemonArgs(): string[] {
  const deployment = parse(readFileSync(`${REPO_ROOT}${DEPLOYMENT}`, 'utf8')) as {
    spec: { template: { spec: { containers: { args: string[] }[] } } };
  };
  const args = [...deployment.spec.template.spec.containers[0]!.args];
  expect(args[0]).toBe('daemon');
  const host = args.indexOf('--http-host');
  if (host >= 0) args[host + 1] = '127.0.0.1';
  return args.slice(1);
}

/** The SQLSTATE of a failed connection attempt, or undefined when it connects. */
async function connectError(url: string): Promise<string | undefined> {
  const client = new pg.Client(url);
  client.on('error', () => {});
  try {
    await client.connect();
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code ?? 'no code';
  } finally {
    await client.end().catch(() => {});
  }
}

describe.skipIf(!psqlPath)(`the daemon's login role (${ROLE_SQL})${psqlReason}`, () => {
  let db: TestDatabase;
  const suffix = randomBytes(3).toString('hex');
  const daemonRole = `hdbt_daemon_${suffix}`;
  const wideRole = `hdbt_wide_${suffix}`;
  const memberRole = `hdbt_member_${suffix}`;
  const created = [daemonRole, wideRole, memberRole];
  // The embedded server asks for a password (md5/scram), the machine's may trust: always give one.
  let password = randomBytes(12).toString('hex');
  const urlAs = (role: string, secret: string) => {
    const url = new URL(db.url);
    url.username = role;
    url.password = secret;
    return url.toString();
  };
  const asDaemon = async <T>(work: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client(urlAs(daemonRole, password));
    client.on('error', () => {});
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    // Group roles are cluster-wide; the template's migration created them.
    const { rows } = await db.client.query(
      `SELECT rolname FROM pg_roles WHERE rolname IN ('hierarchy_reader', 'hierarchy_refresher')`,
    );
    expect(rows).toHaveLength(2);
  });
  afterEach(killDaemons);
  afterAll(async () => {
    if (db) {
      for (const role of created) {
        await db.client.query(`DROP OWNED BY ${role}`).catch(() => {});
        await db.client.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
      }
      await db.drop();
    }
  });

  it('creates a login role that is a member of hierarchy_reader and hierarchy_refresher only', async () => {
    const result = await runRoleSql(db.url, { daemon_role: daemonRole, daemon_password: password });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(daemonRole);
    const { rows } = await db.client.query(
      `SELECT r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication,
              r.rolbypassrls, r.rolinherit,
              ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                     WHERE m.member = r.oid ORDER BY 1) AS member_of
         FROM pg_roles r WHERE r.rolname = $1`,
      [daemonRole],
    );
    expect(rows).toEqual([
      {
        rolcanlogin: true,
        rolsuper: false,
        rolcreatedb: false,
        rolcreaterole: false,
        rolreplication: false,
        rolbypassrls: false,
        rolinherit: true,
        member_of: ['hierarchy_reader', 'hierarchy_refresher'],
      },
    ]);
  });

  it('lets that role run status, history, views and a refresh through the CLI', async () => {
    const url = urlAs(daemonRole, password);
    for (const args of [
      ['status', '--json'],
      ['history', '--json'],
      ['views', '--json'],
    ]) {
      const result = await runCli([...args, '--database-url', url, '--log-level', 'warn']);
      expect(result.code, `${args[0]}: ${result.stderr}`).toBe(0);
      expect(() => JSON.parse(result.stdout)).not.toThrow();
    }
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('c', 'a.c')`);
    const refresh = await runCli(['refresh', '--json', '--force', '--database-url', url]);
    expect(refresh.code, refresh.stderr).toBe(0);
    const { results } = JSON.parse(refresh.stdout) as { results: { status: string }[] };
    expect(results.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);
    const { rows } = await db.client.query(
      `SELECT count(*)::int AS n FROM mv_entity_ancestors WHERE path = 'a.c'`,
    );
    expect(rows[0].n).toBe(1);
  }, 180_000); // four CLI processes in a row

  it("runs the daemon with the Deployment's arguments: ready, refreshing on change, exporting its metrics", async () => {
    const daemon = startDaemon(urlAs(daemonRole, password), deploymentDaemonArgs());
    await waitForReady(daemon, 30_000);
    const before = await db.client.query(
      `SELECT coalesce(max(id), 0)::bigint AS id FROM mv_refresh_audit`,
    );
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('d', 'a.d')`);
    // --on-change: polled, debounced (1 s), refreshed by the daemon as this role.
    await waitUntil(
      async () => {
        const { rows } = await db.client.query(
          `SELECT count(DISTINCT view_name)::int AS n FROM mv_refresh_audit
            WHERE id > $1 AND trigger = 'change' AND status = 'refreshed'
              AND application_name = 'hierarchy-db/daemon'`,
          [before.rows[0].id],
        );
        return rows[0].n === 2;
      },
      30_000,
      `a change refresh of both views by the daemon; stderr:\n${daemon.stderr()}`,
    );
    // Every series the dashboard and the alert rules read is exported (the status gauges once the
    // daemon has read the status), with the labels test/deploy/promql.ts lists.
    const scrape = async () => {
      const metrics = await daemon.get('/metrics');
      expect(metrics.status).toBe(200);
      return parsePrometheusText(metrics.body).samples;
    };
    const expected = Object.keys(METRIC_LABELS).filter((name) => name !== 'up');
    await waitUntil(
      async () => {
        const names = new Set((await scrape()).map((sample) => sample.name));
        return expected.every((name) => names.has(name));
      },
      15_000,
      'every daemon metric exported',
    );
    const samples = await scrape();
    for (const name of expected) {
      const labels = new Set(
        samples.filter((s) => s.name === name).flatMap((s) => Object.keys(s.labels)),
      );
      expect([...labels].sort(), name).toEqual([...(METRIC_LABELS[name] ?? [])].sort());
    }
    expect(samples.find((s) => s.name === 'hierarchy_db_up')?.value).toBe(1);
    daemon.child.kill('SIGTERM');
    const exit = await daemon.exited;
    expect(exit.code, daemon.stderr()).toBe(0);
  }, 90_000);

  it('does not let that role write entities, read the change log, change the schema or migrate', async () => {
    const count = async () =>
      (await db.client.query('SELECT count(*)::int AS n FROM entities')).rows[0].n as number;
    const entities = await count();
    await asDaemon(async (client) => {
      for (const statement of [
        'DELETE FROM entities',
        `INSERT INTO entities (name, path) VALUES ('x', 'x')`,
        `UPDATE entities SET name = 'y'`,
        'TRUNCATE entities',
        'SELECT * FROM entities',
        'SELECT * FROM hierarchy_changes',
        'CREATE TABLE hdbt_not_allowed (id int)',
        'DROP MATERIALIZED VIEW mv_entity_ancestors',
        'DELETE FROM mv_refresh_audit',
      ]) {
        await expect(client.query(statement), statement).rejects.toMatchObject({ code: '42501' });
      }
    });
    const migrate = await runCli(['migrate', 'up', '--database-url', urlAs(daemonRole, password)]);
    expect(migrate.code).not.toBe(0);
    expect(migrate.stderr).toMatch(/permission denied/);
    expect(await count()).toBe(entities);
  }, 60_000);

  it('sets a new password when run again (a rotation)', async () => {
    const old = password;
    const stored = async () =>
      (await db.client.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [daemonRole]))
        .rows[0].rolpassword as string | null;
    const before = await stored();
    expect(before).toMatch(/^(?:SCRAM-SHA-256\$|md5)/); // hashed by the server
    password = randomBytes(12).toString('hex');
    const result = await runRoleSql(db.url, { daemon_role: daemonRole, daemon_password: password });
    expect(result.code, result.stderr).toBe(0);
    expect(await stored()).not.toBe(before);
    await asDaemon((client) => client.query('SELECT 1'));
    // Where the server checks passwords (the embedded one does; a trusting one does not), the
    // old one no longer works.
    if ((await connectError(urlAs(daemonRole, `wrong-${old}`))) !== undefined) {
      expect(await connectError(urlAs(daemonRole, old))).toBe('28P01');
    }
  });

  it.skipIf(psqlMajor < 15)(
    'takes the password from HIERARCHY_DB_DAEMON_PASSWORD (psql 15 and later)',
    async () => {
      password = randomBytes(12).toString('hex');
      const result = await runRoleSql(
        db.url,
        { daemon_role: daemonRole },
        { HIERARCHY_DB_DAEMON_PASSWORD: password },
      );
      expect(result.code, result.stderr).toBe(0);
      await asDaemon((client) => client.query('SELECT 1'));
    },
  );

  it('refuses to run without a password, and changes nothing', async () => {
    const result = await runRoleSql(db.url, { daemon_role: `hdbt_nopassword_${suffix}` });
    expect(result.code).toBe(3); // psql's exit code for an error with ON_ERROR_STOP
    expect(result.stderr).toMatch(/needs a password/);
    const { rows } = await db.client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [
      `hdbt_nopassword_${suffix}`,
    ]);
    expect(rows).toEqual([]);
  });

  it('refuses an existing role with more privileges than the daemon needs', async () => {
    await db.client.query(`CREATE ROLE ${wideRole} LOGIN CREATEDB PASSWORD '${password}'`);
    const wide = await runRoleSql(db.url, { daemon_role: wideRole, daemon_password: password });
    expect(wide.code).toBe(3);
    expect(wide.stderr).toMatch(/attributes the daemon must not have/);
    // pg_read_all_data would let it read entities: not a daemon role.
    await db.client.query(
      `CREATE ROLE ${memberRole} LOGIN PASSWORD '${password}' IN ROLE pg_read_all_data`,
    );
    const member = await runRoleSql(db.url, { daemon_role: memberRole, daemon_password: password });
    expect(member.code).toBe(3);
    expect(member.stderr).toMatch(/also a member of pg_read_all_data/);
    const { rows } = await db.client.query(
      `SELECT m.member::regrole::text AS member FROM pg_auth_members m
        WHERE m.roleid IN ('hierarchy_reader'::regrole, 'hierarchy_refresher'::regrole)
          AND m.member IN ($1::regrole, $2::regrole)`,
      [wideRole, memberRole],
    );
    expect(rows).toEqual([]);
  });
});
