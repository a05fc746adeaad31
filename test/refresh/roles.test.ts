import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// Least privilege (docs/semantics.md, "Roles"): hierarchy_refresher may only run the refresh, hierarchy_reader may
// only read the views, PUBLIC may do neither; the SECURITY DEFINER function works on 15 and 18.
describe('roles and the SECURITY DEFINER refresh', () => {
  let db: TestDatabase;
  const suffix = randomBytes(3).toString('hex');
  const refresher = `hdbt_refresher_${suffix}`;
  const reader = `hdbt_reader_${suffix}`;
  const writer = `hdbt_writer_${suffix}`;
  const nobody = `hdbt_nobody_${suffix}`;
  const daemonLogin = `hdbt_daemon_${suffix}`;
  // The embedded server asks for a password (md5/scram), the machine's may trust: give one.
  const daemonPassword = randomBytes(12).toString('hex');
  const asRole = async (role: string, statement: string) => {
    await db.client.query(`SET ROLE ${role}`);
    try {
      return await db.client.query(statement);
    } finally {
      await db.client.query('RESET ROLE');
    }
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b')`);
    for (const role of [refresher, reader, writer, nobody])
      await db.client.query(`CREATE ROLE ${role} NOLOGIN`);
    await db.client.query(`GRANT hierarchy_refresher TO ${refresher}`);
    await db.client.query(`GRANT hierarchy_reader TO ${reader}`);
    await db.client.query(`GRANT SELECT, INSERT, UPDATE ON entities TO ${writer}`);
    // What the README gives the daemon: a login role holding both roles.
    await db.client.query(
      `CREATE ROLE ${daemonLogin} LOGIN PASSWORD '${daemonPassword}' IN ROLE hierarchy_reader, hierarchy_refresher`,
    );
  });
  afterAll(async () => {
    if (db) {
      for (const role of [refresher, reader, writer, nobody, daemonLogin]) {
        await db.client.query(`DROP OWNED BY ${role}`).catch(() => {});
        await db.client.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
      }
      await db.drop();
    }
  });

  it('declares the function SECURITY DEFINER with a pinned search_path and no PUBLIC execute', async () => {
    const { rows } = await db.client.query(
      `SELECT p.prosecdef, p.proconfig,
              has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec
         FROM pg_proc p WHERE p.proname = 'refresh_hierarchy_views'`,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].prosecdef).toBe(true);
    expect(rows[0].proconfig).toEqual(['search_path=public, pg_temp']);
    expect(rows[0].public_exec).toBe(false);
  });

  it('grants PUBLIC execute on none of the project functions', async () => {
    const { rows } = await db.client.query<{ fn: string }>(
      `SELECT p.oid::regprocedure::text AS fn FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND (p.proname LIKE 'hierarchy\\_%' OR p.proname IN ('refresh_hierarchy_views', 'entities_touch_updated_at'))
          AND has_function_privilege('public', p.oid, 'EXECUTE')`,
    );
    expect(rows.map((r) => r.fn)).toEqual([]);
    const all = await db.client.query(
      `SELECT count(*)::int AS n FROM pg_proc p WHERE p.proname LIKE 'hierarchy\\_%'`,
    );
    expect(all.rows[0].n).toBeGreaterThanOrEqual(10); // the query above did see them
    await expect(asRole(nobody, 'SELECT * FROM hierarchy_view_status()')).rejects.toMatchObject({
      code: '42501',
    });
    await expect(
      asRole(nobody, 'SELECT * FROM hierarchy_pending_changes($$mv_entity_ancestors$$)'),
    ).rejects.toMatchObject({
      code: '42501',
    });
  });

  it('lets the daemon login role (reader + refresher) run status, history, views and the change probe', async () => {
    await db.client.query('SELECT * FROM refresh_hierarchy_views(true)');
    const probe = await asRole(daemonLogin, 'SELECT * FROM hierarchy_changes_probe()');
    expect(probe.rows[0].pending).toBe(false);
    const url = new URL(db.url);
    url.username = daemonLogin;
    url.password = daemonPassword;
    for (const args of [
      ['status', '--json'],
      ['history', '--json'],
      ['views', '--json'],
    ]) {
      const result = await runCli([
        ...args,
        '--database-url',
        url.toString(),
        '--log-level',
        'warn',
      ]);
      expect(result.code, `${args[0]}: ${result.stderr}`).toBe(0);
      expect(() => JSON.parse(result.stdout)).not.toThrow();
    }
    const refresh = await runCli([
      'refresh',
      '--json',
      '--force',
      '--database-url',
      url.toString(),
    ]);
    expect(refresh.code, refresh.stderr).toBe(0);
  }, 180_000); // five CLI processes in a row

  it('lets hierarchy_refresher refresh, and nothing else', async () => {
    const result = await asRole(refresher, 'SELECT * FROM refresh_hierarchy_views(true)');
    expect(result.rows.map((r) => r.status)).toEqual(['refreshed', 'refreshed']);
    await expect(asRole(refresher, 'SELECT * FROM entities')).rejects.toMatchObject({
      code: '42501',
    });
    await expect(asRole(refresher, 'SELECT * FROM mv_entity_ancestors')).rejects.toMatchObject({
      code: '42501',
    });
    await expect(asRole(refresher, 'SELECT * FROM mv_refresh_audit')).rejects.toMatchObject({
      code: '42501',
    });
    const audit = await db.client.query(
      'SELECT application_name, trigger FROM mv_refresh_audit ORDER BY id DESC LIMIT 1',
    );
    expect(audit.rows[0].trigger).toBe('sql');
  });

  it('lets hierarchy_reader read the views but not refresh', async () => {
    const rows = await asRole(
      reader,
      `SELECT ancestors FROM mv_entity_ancestors WHERE path = 'a.b'`,
    );
    expect(rows.rows[0].ancestors).toEqual(['a']);
    await expect(asRole(reader, 'SELECT * FROM refresh_hierarchy_views()')).rejects.toMatchObject({
      code: '42501',
    });
  });

  it('refuses a role with no grant', async () => {
    await expect(asRole(nobody, 'SELECT * FROM refresh_hierarchy_views()')).rejects.toMatchObject({
      code: '42501',
    });
  });

  it('tracks writes of a role that has no privilege on the change log', async () => {
    const before = await db.client.query('SELECT count(*)::int AS n FROM hierarchy_changes');
    await asRole(writer, `UPDATE entities SET name = 'b2' WHERE path = 'a.b'`);
    const after = await db.client.query('SELECT count(*)::int AS n FROM hierarchy_changes');
    expect(after.rows[0].n).toBe(before.rows[0].n + 1);
    await expect(asRole(writer, 'SELECT * FROM hierarchy_changes')).rejects.toMatchObject({
      code: '42501',
    });
  });
});
