import pg from 'pg';
import { ConfigError } from '../config/config-error.ts';
import type { ResolvedDatabaseTarget } from '../config/database-url.ts';
import { TrackedClient } from './tracked-client.ts';

const parseInt8 = (value: string) => Number.parseInt(value, 10);
const parseNumeric = (value: string) => Number.parseFloat(value);

/**
 * The type parsers of every pool and client the project opens, given to each as its `types`
 * option; pg's global parsers stay untouched, so importing the library changes nothing for the
 * application's own pg clients. bigint (int8) becomes a JS number (counts and ids here stay far
 * below 2^53), numeric (durations, scores) a number; every other type parses as pg's default.
 */
export const TYPE_PARSERS: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (format !== 'binary') {
      if (oid === pg.types.builtins.INT8) return parseInt8;
      if (oid === pg.types.builtins.NUMERIC) return parseNumeric;
    }
    return pg.types.getTypeParser(oid, format);
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** Connection options shared by every pool and client the project opens. */
export interface ConnectionOptions {
  target: ResolvedDatabaseTarget;
  /** `application_name`, recorded in the audit table. Default `hierarchy-db`. */
  applicationName?: string;
  /** How long to wait for a connection to open. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Session `statement_timeout`; 0 disables it. Default 0 (callers set their own per statement). */
  statementTimeoutMs?: number;
  /** Session `lock_timeout`; 0 disables it. Default 0. */
  lockTimeoutMs?: number;
  /** Pool size. Default 4. */
  max?: number;
  /**
   * The one schema of everything hierarchy-db owns: each session's `search_path` is set to it,
   * and node-pg-migrate keeps its table there (see Migrator). A plain lower-case name (see
   * {@link validateSchemaName}). Default: none, the role's own `search_path` decides.
   */
  schema?: string;
}

/** A schema name usable unquoted everywhere, as `--schema` takes it. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Checks a `--schema` value: lower-case letters, digits and `_`, not starting with a digit, at
 * most 63 characters — a name PostgreSQL keeps as written without quoting, so it means the same
 * in a startup `search_path`, node-pg-migrate's quoting and the catalog. Throws
 * {@link ConfigError} otherwise; `pg_*` names are reserved by PostgreSQL.
 */
export function validateSchemaName(name: string): string {
  if (!SCHEMA_NAME.test(name) || name.startsWith('pg_')) {
    throw new ConfigError(
      `expected a lower-case schema name of letters, digits and _ (not starting with a digit or pg_), got '${name}'`,
      { option: 'schema', value: name },
    );
  }
  return name;
}

/** Default connect timeout: an unreachable database is reported within this bound. */
export const CONNECT_TIMEOUT_MS = 5_000;

/**
 * `pg` client settings: TCP keepalives (first probe after 30 s idle on our side; the server is
 * asked to probe with idle 30 s, interval 10 s, count 5, which Node cannot set per socket),
 * connect timeout, session timeouts, an `application_name` for the audit, and the project's
 * {@link TYPE_PARSERS}.
 */
export function clientConfig(options: ConnectionOptions): pg.ClientConfig {
  const serverSettings = [
    '-c tcp_keepalives_idle=30',
    '-c tcp_keepalives_interval=10',
    '-c tcp_keepalives_count=5',
    // One schema for everything (see ConnectionOptions.schema): objects are created in it and
    // every unqualified name, hierarchy-db's own tables included, resolves to it.
    ...(options.schema !== undefined
      ? [`-c search_path=${validateSchemaName(options.schema)}`]
      : []),
  ];
  return {
    ...(options.target.url !== undefined ? { connectionString: options.target.url } : {}),
    application_name: options.applicationName ?? 'hierarchy-db',
    connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: 30_000,
    options: serverSettings.join(' '),
    types: TYPE_PARSERS,
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    ...(options.lockTimeoutMs ? { lock_timeout: options.lockTimeoutMs } : {}),
  };
}

/** A pool with the project's connection settings. Idle clients are closed after 10 s. */
export function createPool(options: ConnectionOptions): pg.Pool {
  const pool = new pg.Pool({
    ...clientConfig(options),
    Client: TrackedClient,
    max: options.max ?? 4,
    idleTimeoutMillis: 10_000,
  });
  // An idle client losing its connection (database restart) must not crash the process.
  pool.on('error', () => {});
  return pool;
}

/** A single client with the project's connection settings, not yet connected. */
export function createClient(options: ConnectionOptions): pg.Client {
  return new TrackedClient(clientConfig(options));
}
