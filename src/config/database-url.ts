import { parse as parseConnectionString } from 'pg-connection-string';
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
  rememberPasswords(env.PGPASSWORD, { bare: true });
  if (flagUrl !== undefined && flagUrl !== '') return validate(flagUrl, 'flag');
  const envUrl = env.DATABASE_URL;
  if (envUrl !== undefined && envUrl !== '') return validate(envUrl, 'DATABASE_URL');
  const host = env.PGHOST ?? 'localhost';
  const port = env.PGPORT ?? '5432';
  return { url: undefined, source: 'PG*', display: `${host}:${port}` };
}

function validate(raw: string, source: DatabaseUrlSource): ResolvedDatabaseTarget {
  // First, so that no message about this URL, here or later, can show its password.
  rememberPasswords(raw);
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(
      `malformed database URL from ${describe(source)}: expected postgres://host:port/database with user:password@ before the host (percent-encode @ : / ? # % and spaces in the password), got ${showMalformed(raw)}`,
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

/**
 * A malformed URL as a message may show it: what follows its last `@` (host, port, database),
 * never what precedes it. Where a malformed URL's user information ends cannot be known (a
 * password may hold `@`, spaces, `/`), so without an `@` nothing of it is shown.
 */
function showMalformed(raw: string): string {
  const at = raw.lastIndexOf('@');
  if (at < 0) return 'a value that is not shown (it may hold a password)';
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(raw)?.[0] ?? '';
  return `'${scheme}***${raw.slice(at)}'`;
}

/** Passwords of the connection URLs this process was given (see {@link rememberPasswords}). */
const knownPasswords = new Set<string>();
/** Shorter "passwords" are not hidden in text: they would blank out ordinary words. */
const MIN_HIDDEN_LENGTH = 3;

/**
 * Remembers the password of a connection URL, as pg will read it (pg-connection-string) and,
 * for a URL too malformed to parse, as everything between the first `:` of the user information
 * and the last `@` — raw and percent-decoded — so that {@link redactUrl} hides it wherever it
 * appears, inside a URL or not. Also takes a bare password (`PGPASSWORD`) with `{ bare: true }`.
 */
export function rememberPasswords(
  text: string | undefined,
  options: { bare?: boolean } = {},
): void {
  if (!text) return;
  const candidates: string[] = [];
  if (options.bare) candidates.push(text);
  else {
    try {
      const password = parseConnectionString(text).password;
      if (password) candidates.push(password);
    } catch {
      // Not parseable: the heuristic below still finds it.
    }
    const userinfo = /^[a-z][a-z0-9+.-]*:\/\/([\s\S]*)@/i.exec(text)?.[1];
    const colon = userinfo?.indexOf(':') ?? -1;
    if (userinfo !== undefined && colon >= 0) candidates.push(userinfo.slice(colon + 1));
  }
  for (const candidate of candidates) {
    for (const form of [candidate, safeDecode(candidate)]) {
      if (form.length >= MIN_HIDDEN_LENGTH) knownPasswords.add(form);
    }
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Hides passwords in text: the user information of anything URL-shaped (`postgres://u:***@h`,
 * up to the last `@` of the URL, since a password may hold `@`), and every password
 * {@link rememberPasswords} was given, wherever it appears (one with a space, say, is not
 * bounded the way a URL is).
 */
export function redactUrl(text: string): string {
  let redacted = text.replace(
    /(postgres(?:ql)?:\/\/)([^\s]*)@/gi,
    (_match, scheme: string, userinfo: string) => {
      const colon = userinfo.indexOf(':');
      return colon < 0 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
    },
  );
  // Longest first, so that a password containing another is hidden whole.
  for (const password of [...knownPasswords].sort((a, b) => b.length - a.length)) {
    redacted = redacted.split(password).join('***');
  }
  return redacted;
}
