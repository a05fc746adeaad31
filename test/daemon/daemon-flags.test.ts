import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';

// Bad daemon flags exit 2 with one line naming the problem, before any connection is tried
// (the URL points at a port with no server and carries a password that must never be echoed).
describe('daemon flags', () => {
  const url = 'postgres://alice:s3cret-pw@127.0.0.1:9/db';
  const daemon = (...args: string[]) =>
    runCli(['--database-url', url, 'daemon', ...args], { timeoutMs: 90_000 });

  it.concurrent.each([
    [
      ['--schedule', 'every minute please'],
      /--schedule: invalid cron expression 'every minute please'/,
    ],
    [['--schedule', '61 * * * * *'], /--schedule: .*61 is a invalid expression for second/],
    [['--schedule', '* * * * * * *'], /--schedule: .*expected 5 or 6 fields/],
    [['--on-change', '--debounce', 'abc'], /--debounce: expected a duration .* got 'abc'/],
    [['--on-change', '--max-wait', '10 parsecs'], /--max-wait: expected a duration/],
    [
      ['--on-change', '--http-port', '70000'],
      /--http-port: expected a port number from 0 to 65535, got '70000'/,
    ],
    [['--on-change', '--http-port', 'http'], /--http-port: expected a port number/],
    [['--on-change', '--grace', 'soon'], /--grace: expected a duration/],
    [
      ['--on-change', '--debounce', '5s', '--max-wait', '1s'],
      /--max-wait \(1000ms\) must be at least --debounce \(5000ms\)/,
    ],
    [[], /nothing to do: give --schedule CRON, --on-change, or both/],
    [
      ['--on-change', '--statement-timeout', '1000h'],
      /^--statement-timeout: expected at most 2147483647ms/,
    ],
    [
      ['--on-change', '--lock-timeout', '2147483648'],
      /^--lock-timeout: expected at most 2147483647ms/,
    ],
  ])(
    'daemon %j exits 2 in one line',
    async (args, message) => {
      const result = await daemon(...args);
      expect(result.code, result.stderr).toBe(2);
      const lines = result.stderr.trim().split('\n');
      expect(lines, result.stderr).toHaveLength(1);
      // stderr is not a terminal, so the logs are JSON: the error is one record, not plain text.
      const record = JSON.parse(lines[0]!) as { event: string; exit_code: number; msg: string };
      expect(record).toMatchObject({ event: 'command.failed', exit_code: 2 });
      expect(record).toHaveProperty('err.type', 'ConfigError');
      expect(record.msg).toMatch(message);
      expect(result.stderr).not.toContain('s3cret-pw');
    },
    120_000,
  ); // twelve CLI starts at once on a loaded machine

  it('documents the flags and what happens with neither --schedule nor --on-change', async () => {
    const result = await runCli(['daemon', '--help']);
    expect(result.code).toBe(0);
    for (const flag of [
      '--schedule',
      '--on-change',
      '--debounce',
      '--max-wait',
      '--http-host',
      '--http-port',
      '--grace',
      '--statement-timeout',
      '--lock-timeout',
    ]) {
      expect(result.stdout).toContain(flag);
    }
    expect(result.stdout).toContain('refuses to start (exit 2)');
  });
});
