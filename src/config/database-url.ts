import { ConfigError } from './config-error.ts';

/** Where the connection settings came from, for error messages. */
export type DatabaseUrlSource = 'flag' | 'DATABASE_URL' | 'PG*';

/** A validated connection target. `url` is undefined when libpq `PG*` variables are used. */
export interface ResolvedDatabaseTarget {
  url: string | undefined;
  source: DatabaseUrlSource;
  /** `host:port` for messages, never with credentials. */
  display: string;
}

/**
 * Picks the connection: `--database-url`, else `DATABASE_URL`, else libpq `PG*` variables
 * (which `pg` reads itself). Throws {@link ConfigError} for a malformed URL.
 */
export function resolveDatabaseTarget(
  flagUrl: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedDatabaseTarget {
  if (flagUrl !== undefined && flagUrl !== '') return validate(flagUrl, 'flag');
  const envUrl = env.DATABASE_URL;
  if (envUrl !== undefined && envUrl !== '') return validate(envUrl, 'DATABASE_URL');
  const host = env.PGHOST ?? 'localhost';
  const port = env.PGPORT ?? '5432';
  return { url: undefined, source: 'PG*', display: `${host}:${port}` };
}

function validate(raw: string, source: DatabaseUrlSource): ResolvedDatabaseTarget {
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(
      `malformed database URL from ${describe(source)}: expected postgres://user:password@host:port/database, got '${redactUrl(raw)}'`,
    );
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new ConfigError(
      `malformed database URL from ${describe(source)}: scheme must be postgres:// or postgresql://, got '${parsed.protocol}//'`,
    );
  }
  if (parsed.port !== '' && !/^\d+$/.test(parsed.port)) {
    throw new ConfigError(`malformed database URL from ${describe(source)}: bad port`);
  }
  const host = parsed.hostname || parsed.searchParams.get('host') || 'localhost';
  return { url: raw, source, display: `${host}:${parsed.port || '5432'}` };
}

function describe(source: DatabaseUrlSource): string {
  return source === 'flag' ? '--database-url' : source;
}

/** Replaces the password of a connection URL (or anything URL-shaped) with `***`. */
export function redactUrl(text: string): string {
  return text.replace(/(postgres(?:ql)?:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@');
}
