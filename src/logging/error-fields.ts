import { redactUrl } from '../config/database-url.ts';
import { sqlState } from '../db/sqlstate.ts';

/**
 * How every log record about an error describes it, under the key `err`: log collectors and
 * alerts find the same three fields whoever logged it (the daemon, a command, a refresh).
 */
export interface LoggedError {
  /** The error's class (`ConnectionError`, `DatabaseError`), or `RefreshFailed` for a result. */
  type: string;
  /** Its first line, passwords hidden (the logger only redacts plain string arguments). */
  message: string;
  /** SQLSTATE, errno code (`ECONNREFUSED`) or the refresh's reason code, when there is one. */
  code?: string;
}

/** The `err` field for an error (see {@link LoggedError}). */
export function errorFields(error: unknown): { err: LoggedError } {
  const message = error instanceof Error ? error.message : String(error);
  const code =
    sqlState(error) ??
    (error instanceof Error && 'cause' in error ? sqlState(error.cause) : undefined) ??
    errnoCode(error);
  return {
    err: {
      type: error instanceof Error ? error.constructor.name : typeof error,
      message: redactUrl(message.split('\n')[0] ?? message),
      ...(code !== undefined ? { code } : {}),
    },
  };
}

/** The `err` field for a refresh that ended `failed` or `cancelled` (an audit row's error). */
export function refreshErrorFields(result: {
  error_code: string | null;
  error_message: string | null;
  reason?: string | null;
}): { err: LoggedError } {
  const code = result.error_code ?? result.reason ?? undefined;
  return {
    err: {
      type: 'RefreshFailed',
      message: redactUrl(result.error_message ?? result.reason ?? 'refresh did not complete'),
      ...(code ? { code } : {}),
    },
  };
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown; cause?: { code?: unknown } } | null)?.code;
  if (typeof code === 'string') return code;
  const causeCode = (error as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof causeCode === 'string' ? causeCode : undefined;
}
