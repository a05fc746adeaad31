import { SQLSTATE, sqlState } from './sqlstate.ts';

/**
 * The database could not be reached (network, authentication, missing database, server
 * starting or shutting down). The CLI maps it to exit code 3.
 */
export class ConnectionError extends Error {
  override readonly name = 'ConnectionError';
  constructor(
    readonly target: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot reach the database at ${target}: ${reason}`, options);
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ENOENT', // a Unix socket path that does not exist
]);

const CONNECTION_SQLSTATES = new Set<string>([
  SQLSTATE.CANNOT_CONNECT_NOW,
  SQLSTATE.ADMIN_SHUTDOWN,
  SQLSTATE.CRASH_SHUTDOWN,
  SQLSTATE.INVALID_CATALOG_NAME,
  SQLSTATE.INVALID_PASSWORD,
  SQLSTATE.INVALID_AUTHORIZATION,
  SQLSTATE.CONNECTION_FAILURE,
  SQLSTATE.CONNECTION_DOES_NOT_EXIST,
  SQLSTATE.SQLCLIENT_UNABLE_TO_ESTABLISH,
]);

/** True when the error means "the connection failed or was lost", as opposed to a SQL error. */
export function isConnectionFailure(error: unknown): boolean {
  if (error instanceof ConnectionError) return true;
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) return true;
  const state = sqlState(error);
  if (state !== undefined && (CONNECTION_SQLSTATES.has(state) || state.startsWith('08')))
    return true;
  const message = String((error as { message?: unknown }).message ?? '');
  if (isMissingPassword(message)) return true;
  return /connection terminated|connection timeout|timeout expired|Connection terminated unexpectedly|Client has encountered a connection error|not queryable/i.test(
    message,
  );
}

/**
 * pg's errors when the server asks for a password and there is none (SCRAM: "SASL:
 * SCRAM-SERVER-FIRST-MESSAGE: client password must be a string"; cleartext or md5 with a
 * password callback: "Password must be a string"). pg gives them no code, only this text.
 */
function isMissingPassword(message: string): boolean {
  return /^SASL: .*password must be a string|^Password must be a string/i.test(message);
}

/** Wraps a connection failure into a {@link ConnectionError} with a short, password-free reason. */
export function toConnectionError(error: unknown, target: string): ConnectionError {
  if (error instanceof ConnectionError) return error;
  const err = error as { code?: string; message?: string };
  let reason = err.message ?? String(error);
  if (err.code === 'ECONNREFUSED') reason = 'connection refused';
  else if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') reason = 'host not found';
  else if (/timeout/i.test(reason)) reason = 'connection timed out';
  else if (isMissingPassword(reason)) {
    reason =
      'the server asks for a password and none was given (put it in the URL, PGPASSWORD or ~/.pgpass)';
  }
  return new ConnectionError(target, reason.split('\n')[0] ?? reason, { cause: error });
}
