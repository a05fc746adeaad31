import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';

// Exit codes and one-line errors (README, "Commands"; src/cli/exit-codes.ts).
describe('CLI errors', () => {
  it('exits 3 in one line, naming host:port and never the password, when the database is unreachable', async () => {
    const result = await runCli([
      'migrate',
      'status',
      '--database-url',
      'postgres://alice:s3cret-pw@127.0.0.1:1/db',
    ]);
    expect(result.code).toBe(3);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('127.0.0.1:1');
    expect(result.stderr).not.toContain('s3cret-pw');
    expect(result.stderr).not.toMatch(/\bat .*\.ts:\d+/);
  });

  it('reports an unreachable host within the connect timeout', async () => {
    // Port 9 (discard) has no server here: refused at once, well inside the connect timeout.
    // What the CLI's own start costs on this machine right now (it varies tenfold with load).
    const start = await runCli(['--version'], { timeoutMs: 120_000 });
    const result = await runCli(
      ['migrate', 'status', '--database-url', 'postgres://u:pw@127.0.0.1:9/db'],
      { timeoutMs: 120_000 },
    );
    expect(result.code).toBe(3);
    // The refusal is immediate: what it adds to a start must stay under the connect timeout.
    expect(result.durationMs).toBeLessThan(2 * start.durationMs + 10_000);
  });

  it('exits 2 for a malformed URL without echoing the password', async () => {
    const result = await runCli([
      'migrate',
      'status',
      '--database-url',
      'mysql://bob:hunter2@host/db',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).not.toContain('hunter2');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it.each([
    ['postgres://u:s3@cret@[bad/x', ['s3@cret', 'cret']],
    ['postgres://u:pa ss@[bad/db', ['pa ss']],
  ])(
    'exits 2 for the malformed URL %j without echoing any of its password',
    async (url, secrets) => {
      for (const args of [
        ['status', '--database-url', url],
        // A parse error (an unknown positional argument) echoes the argument.
        ['status', url],
      ]) {
        const result = await runCli(args);
        expect(result.code, result.stderr).toBe(2);
        for (const secret of secrets) expect(result.stderr).not.toContain(secret);
      }
    },
  );

  it('exits 2, before connecting, for timeouts PostgreSQL cannot take', async () => {
    for (const [flag, value] of [
      ['--statement-timeout', '1000h'],
      ['--lock-timeout', '2147483648'],
    ] as const) {
      const result = await runCli([
        'refresh',
        flag,
        value,
        '--database-url',
        'postgres://u:pw@127.0.0.1:9/db',
        // The line for a person; JSON logs carry it as a record (test/cli/log-format.test.ts).
        '--log-format',
        'pretty',
      ]);
      expect(result.code, result.stderr).toBe(2);
      const lines = result.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toBe(
        `hierarchy-db: ${flag}: expected at most 2147483647ms (596h 31m), got '${value}' (${value === '1000h' ? 3_600_000_000 : 2_147_483_648}ms)`,
      );
    }
  });

  it('exits 2 for an unknown flag and for an unknown command', async () => {
    expect((await runCli(['migrate', 'status', '--no-such-flag'])).code).toBe(2);
    expect((await runCli(['no-such-command'])).code).toBe(2);
  });

  it('reads DATABASE_URL and HIERARCHY_DB_DATABASE_URL', async () => {
    const viaEnv = await runCli(['migrate', 'status'], {
      env: { DATABASE_URL: 'postgres://x:pw1@127.0.0.1:2/db' },
    });
    expect(viaEnv.code).toBe(3);
    expect(viaEnv.stderr).toContain('127.0.0.1:2');
    const viaPrefixed = await runCli(['migrate', 'status'], {
      env: { HIERARCHY_DB_DATABASE_URL: 'postgres://x:pw2@127.0.0.1:3/db' },
    });
    expect(viaPrefixed.code).toBe(3);
    expect(viaPrefixed.stderr).toContain('127.0.0.1:3');
  });

  it('--help lists the commands and exit codes', async () => {
    const result = await runCli(['--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('migrate');
    expect(result.stdout).toContain('Exit codes');
  });
});
