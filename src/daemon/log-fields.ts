import { redactUrl } from '../config/database-url.ts';
import { sqlState } from '../db/sqlstate.ts';

/**
 * Log fields for an error: its first line (password redacted: the logger only redacts plain
 * string arguments, not fields) and its SQLSTATE or errno code.
 */
export function errorFields(error: unknown): { error: string; error_code?: string } {
  const message = error instanceof Error ? error.message : String(error);
  const code =
    sqlState(error) ??
    (error instanceof Error && 'cause' in error ? sqlState(error.cause) : undefined) ??
    errnoCode(error);
  return {
    error: redactUrl(message.split('\n')[0] ?? message),
    ...(code !== undefined ? { error_code: code } : {}),
  };
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown; cause?: { code?: unknown } } | null)?.code;
  if (typeof code === 'string') return code;
  const causeCode = (error as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof causeCode === 'string' ? causeCode : undefined;
}
