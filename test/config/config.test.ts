import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/config-error.ts';
import { redactUrl, resolveDatabaseTarget } from '../../src/config/database-url.ts';
import { formatDuration, MAX_DURATION_MS, parseDuration } from '../../src/config/duration.ts';
import { selectProvider } from '../helpers/database-provider.ts';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1.5s', 1_500],
    ['250', 250],
  ])('%s -> %d ms', (input, expected) => {
    expect(parseDuration(input)).toBe(expected);
  });
  it.each(['abc', '5 minutes', '-1s', '', '1d'])('rejects %j', (input) => {
    expect(() => parseDuration(input, 'debounce')).toThrow(ConfigError);
    expect(() => parseDuration(input, 'debounce')).toThrow(/^debounce: expected a duration/);
  });
  it('rejects what PostgreSQL timeouts and Node timers cannot take (above 2^31 - 1 ms)', () => {
    expect(parseDuration('2147483647', 'statement-timeout')).toBe(MAX_DURATION_MS);
    expect(MAX_DURATION_MS).toBe(2_147_483_647);
    for (const value of ['1000h', '2147483648', '597h', 2 ** 31]) {
      let error: unknown;
      try {
        parseDuration(value, 'statement-timeout');
      } catch (caught) {
        error = caught;
      }
      expect(error, String(value)).toBeInstanceOf(ConfigError);
      expect(error).toMatchObject({ option: 'statement-timeout', value });
      expect((error as ConfigError).problem).toMatch(/^expected at most 2147483647ms/);
    }
    expect(parseDuration('1000h', 'max-staleness', { maxMs: Number.MAX_SAFE_INTEGER })).toBe(
      3_600_000_000,
    );
  });
  it('formats', () => {
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(12_340)).toBe('12.3s');
  });
});

describe('resolveDatabaseTarget', () => {
  it('prefers the flag, then DATABASE_URL, then PG* variables', () => {
    expect(
      resolveDatabaseTarget('postgres://a@h1:1/d', { DATABASE_URL: 'postgres://b@h2/d' }).display,
    ).toBe('h1:1');
    expect(resolveDatabaseTarget(undefined, { DATABASE_URL: 'postgres://b@h2/d' }).display).toBe(
      'h2:5432',
    );
    const pgvars = resolveDatabaseTarget(undefined, { PGHOST: 'h3', PGPORT: '6543' });
    expect(pgvars).toEqual({ url: undefined, source: 'PG*', display: 'h3:6543' });
  });
  it('rejects a malformed URL with ConfigError', () => {
    expect(() => resolveDatabaseTarget('not a url')).toThrow(ConfigError);
    expect(() => resolveDatabaseTarget('http://x@y/z')).toThrow(/scheme/);
  });
  it('redacts passwords', () => {
    expect(redactUrl('postgres://u:secret@h:5432/d')).toBe('postgres://u:***@h:5432/d');
    // Up to the URL's last @: a password may hold one.
    expect(redactUrl('at postgres://u:s3@cret@[bad/x now')).toBe('at postgres://u:***@[bad/x now');
    expect(redactUrl('postgres://u@h/d')).toBe('postgres://u@h/d');
  });
  it.each([
    ['postgres://u:s3@cret@[bad/x', ['s3@cret', 'cret', 's3@']],
    ['postgres://u:pa ss@[bad/db', ['pa ss']],
    ['postgres://u:pa ss/db', ['pa ss']],
    ['postgres://u:p%20w0rd@[bad/db', ['p%20w0rd', 'p w0rd']],
  ])('never echoes the password of the malformed URL %j', (url, secrets) => {
    let message = '';
    try {
      resolveDatabaseTarget(url);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      message = (error as Error).message;
    }
    expect(message).toMatch(/^malformed database URL/);
    for (const secret of secrets) expect(message).not.toContain(secret);
  });
  it('hides a password the URL gave wherever it appears later, spaces and all', () => {
    resolveDatabaseTarget('postgres://u:open%20sesame@h/d');
    expect(redactUrl("role u: password 'open sesame' failed")).toBe(
      "role u: password '***' failed",
    );
    resolveDatabaseTarget(undefined, { PGPASSWORD: 'pg pass word' });
    expect(redactUrl('pg pass word')).toBe('***');
  });
});

describe('test database selection', () => {
  it('defaults to embedded PostgreSQL', () => {
    expect(selectProvider({})).toEqual({ kind: 'embedded' });
  });
  it('uses TEST_DATABASE_URL for an existing server', () => {
    expect(selectProvider({ TEST_DATABASE_URL: 'postgres://p@127.0.0.1/db' })).toEqual({
      kind: 'external',
      url: 'postgres://p@127.0.0.1/db',
    });
  });
  it('uses testcontainers for TEST_PG_IMAGE', () => {
    expect(selectProvider({ TEST_PG_IMAGE: 'postgres:16' })).toEqual({
      kind: 'testcontainers',
      image: 'postgres:16',
    });
  });
  it('rejects both at once and malformed values', () => {
    expect(() =>
      selectProvider({ TEST_DATABASE_URL: 'postgres://x/y', TEST_PG_IMAGE: 'postgres:16' }),
    ).toThrow(/not both/);
    expect(() => selectProvider({ TEST_DATABASE_URL: 'mysql://x/y' })).toThrow(/postgres:\/\//);
    expect(() => selectProvider({ TEST_PG_IMAGE: 'bad image!' })).toThrow(/image reference/);
  });
});
