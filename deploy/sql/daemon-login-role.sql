-- The login role the refresh daemon connects as (deploy/kubernetes/base/daemon-deployment.yaml,
-- Secret hierarchy-db-daemon). It is a member of hierarchy_reader and hierarchy_refresher
-- (sql/grants.sql) and nothing else: the daemon reads the views' status and the audit
-- (`status`, `history`, /metrics), runs the change probe and refresh_hierarchy_views(), and can
-- neither write entities nor change the schema. Migrations (`hierarchy-db migrate up`, the
-- migrate Job) keep running as the owning role, with a Secret of their own.
--
-- Run it with psql in the application's database, after `hierarchy-db migrate up` (which
-- creates the two group roles), as a superuser or as the role that ran the migrations (it
-- created the group roles, so it may grant them; it needs CREATEROLE):
--
--   HIERARCHY_DB_DAEMON_PASSWORD='...' psql "$OWNER_DATABASE_URL" -f deploy/sql/daemon-login-role.sql
--   psql "$OWNER_DATABASE_URL" -v daemon_role=hierarchy_daemon -v daemon_password='...' \
--        -f deploy/sql/daemon-login-role.sql
--
-- psql variables:
--   daemon_role      name of the login role (default hierarchy_daemon)
--   daemon_password  its password; when unset, taken from the environment variable
--                    HIERARCHY_DB_DAEMON_PASSWORD (psql 15 or later reads it; -v works with any
--                    psql), which keeps it out of the process list and the shell history
--
-- Running it again is safe: it sets the password again (a rotation) and re-grants the two
-- roles. It refuses a role of that name that has more than it should (superuser, CREATEDB,
-- CREATEROLE, REPLICATION, BYPASSRLS, or membership in any other role). The password travels to
-- the server in the ALTER ROLE statement, which the server hashes (password_encryption); with
-- log_statement = 'ddl' or 'all' it would reach the server log, so set a new one afterwards with
-- psql's `\password hierarchy_daemon` (hashed client-side) if that matters to you.

\set ON_ERROR_STOP on
\set QUIET on

\if :{?daemon_role}
\else
  \set daemon_role hierarchy_daemon
\endif
\if :{?daemon_password}
\else
  \getenv daemon_password HIERARCHY_DB_DAEMON_PASSWORD
\endif
\if :{?daemon_password}
\else
  \warn 'hierarchy-db: no password: pass -v daemon_password=... or set HIERARCHY_DB_DAEMON_PASSWORD'
  DO $$ BEGIN RAISE EXCEPTION 'hierarchy-db: the daemon login role needs a password'; END $$;
\endif

-- The DO block below cannot read psql variables; a session setting hands it the name.
SELECT set_config('hierarchy_db.daemon_role', :'daemon_role', false) \gset

DO $do$
DECLARE
  login text := current_setting('hierarchy_db.daemon_role');
  existing pg_roles%ROWTYPE;
  extra text;
BEGIN
  IF (SELECT count(*) FROM pg_roles WHERE rolname IN ('hierarchy_reader', 'hierarchy_refresher')) < 2 THEN
    RAISE EXCEPTION 'hierarchy-db: roles hierarchy_reader and hierarchy_refresher do not exist'
      USING HINT = 'Run `hierarchy-db migrate up` as a role that may create roles first.';
  END IF;
  IF login IN ('hierarchy_reader', 'hierarchy_refresher') OR login = current_user THEN
    RAISE EXCEPTION 'hierarchy-db: % cannot be the daemon login role', login;
  END IF;

  SELECT * INTO existing FROM pg_roles WHERE rolname = login;
  IF NOT FOUND THEN
    EXECUTE format(
      'CREATE ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
      login);
  ELSE
    IF existing.rolsuper OR existing.rolcreatedb OR existing.rolcreaterole
       OR existing.rolreplication OR existing.rolbypassrls OR NOT existing.rolinherit THEN
      RAISE EXCEPTION 'hierarchy-db: role % exists with attributes the daemon must not have (or NOINHERIT)', login
        USING HINT = 'Drop it, or pick another name with -v daemon_role=...';
    END IF;
    SELECT string_agg(g.rolname, ', ' ORDER BY g.rolname) INTO extra
      FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
     WHERE m.member = existing.oid
       AND g.rolname NOT IN ('hierarchy_reader', 'hierarchy_refresher');
    IF extra IS NOT NULL THEN
      RAISE EXCEPTION 'hierarchy-db: role % is also a member of %', login, extra
        USING HINT = 'The daemon needs hierarchy_reader and hierarchy_refresher only.';
    END IF;
  END IF;

  EXECUTE format('GRANT hierarchy_reader, hierarchy_refresher TO %I', login);
  -- PUBLIC may connect unless someone revoked it.
  IF NOT has_database_privilege(login, current_database(), 'CONNECT') THEN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), login);
  END IF;
END
$do$;

ALTER ROLE :"daemon_role" WITH LOGIN PASSWORD :'daemon_password';
\echo 'hierarchy-db: login role' :"daemon_role" 'is a member of hierarchy_reader and hierarchy_refresher only'
