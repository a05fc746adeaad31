/** SQLSTATE codes the code branches on. Named so logic never compares bare strings. */
export const SQLSTATE = {
  QUERY_CANCELED: '57014',
  LOCK_NOT_AVAILABLE: '55P03',
  ADMIN_SHUTDOWN: '57P01',
  CRASH_SHUTDOWN: '57P02',
  CANNOT_CONNECT_NOW: '57P03',
  INVALID_CATALOG_NAME: '3D000',
  INVALID_PASSWORD: '28P01',
  INVALID_AUTHORIZATION: '28000',
  UNDEFINED_TABLE: '42P01',
  UNDEFINED_FUNCTION: '42883',
  DUPLICATE_OBJECT: '42710',
  INSUFFICIENT_PRIVILEGE: '42501',
  OBJECT_NOT_IN_PREREQUISITE_STATE: '55000',
  CONNECTION_FAILURE: '08006',
  CONNECTION_DOES_NOT_EXIST: '08003',
  SQLCLIENT_UNABLE_TO_ESTABLISH: '08001',
} as const;

/** The SQLSTATE of a driver error, if it carries one. */
export function sqlState(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}
