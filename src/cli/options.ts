import {
  DEFAULT_LOCK_TIMEOUT_MS,
  DEFAULT_STATEMENT_TIMEOUT_MS,
} from '../refresh/refresh-engine.ts';

// Flag definitions several commands share, so their names, defaults and help stay identical.

/** `--json`: one JSON document on stdout. */
export const jsonOption = (describe = 'one JSON document on stdout') => ({
  type: 'boolean' as const,
  default: false,
  describe,
});

/** `--migrations-dir`: another directory of migration files (development and tests). */
export const migrationsDirOption = {
  type: 'string' as const,
  describe: 'directory of migration files (default: the migrations shipped with hierarchy-db)',
};

/** `--statement-timeout` of a refresh call. */
export const statementTimeoutOption = {
  type: 'string' as const,
  default: `${DEFAULT_STATEMENT_TIMEOUT_MS / 60_000}m`,
  describe: 'bound on each refresh call (0 = none)',
};

/** `--lock-timeout` of each lock wait during a refresh. */
export const lockTimeoutOption = {
  type: 'string' as const,
  default: `${DEFAULT_LOCK_TIMEOUT_MS / 1000}s`,
  describe: 'bound on each lock wait during a refresh (0 = none)',
};

/** The detail column of refresh results and audit rows: `SQLSTATE message`, or the message. */
export function formatRefreshDetail(row: {
  reason?: string | null;
  error_code: string | null;
  error_message: string | null;
}): string | null {
  const message = row.error_code ? `${row.error_code} ${row.error_message}` : row.error_message;
  if (!row.reason) return message;
  return message ? `${row.reason}: ${message}` : row.reason;
}
