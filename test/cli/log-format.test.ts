import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { logFormatOf } from '../../src/cli/context.ts';
import { ConfigError } from '../../src/config/config-error.ts';
import { runCli, runNode } from '../helpers/cli.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

// `--log-format json|pretty` (src/logging/logger.ts): JSON lines by default for pipes and log
// collectors, pino-pretty's lines for a person at a terminal.
describe('--log-format', () => {
  it('defaults to pretty on a terminal and json elsewhere; a flag wins', () => {
    expect(logFormatOf(undefined, true)).toBe('pretty');
    expect(logFormatOf(undefined, false)).toBe('json');
    expect(logFormatOf('json', true)).toBe('json');
    expect(logFormatOf('pretty', false)).toBe('pretty');
    expect(() => logFormatOf('xml', false)).toThrow(ConfigError);
  });

  it('exits 2 in one line for an unknown format', async () => {
    const result = await runCli(['migrate', 'status', '--log-format', 'xml']);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toEqual([
      "hierarchy-db: --log-format: expected one of json, pretty, got 'xml'",
    ]);
  });

  it('reports the error that ends a command as a JSON record with json, as one line for a person with pretty', async () => {
    // Port 1 has no server: exit 3 once the logger exists, after the connection attempt.
    const url = 'postgres://alice:s3cret-pw@127.0.0.1:1/db';
    const json = await runCli(['status', '--database-url', url, '--log-format', 'json']);
    expect(json.code).toBe(3);
    const lines = json.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: 50,
      event: 'command.failed',
      exit_code: 3,
      err: { type: 'ConnectionError', code: 'ECONNREFUSED' },
      msg: 'cannot reach the database at 127.0.0.1:1: connection refused',
    });
    const pretty = await runCli(['status', '--database-url', url, '--log-format', 'pretty']);
    expect(pretty.code).toBe(3);
    expect(pretty.stderr.trim().split('\n')).toEqual([
      'hierarchy-db: cannot reach the database at 127.0.0.1:1: connection refused',
    ]);
    // Below the logger's level it is still reported, as the plain line.
    const fatal = await runCli(['status', '--database-url', url, '--log-level', 'fatal']);
    expect(fatal.stderr.trim()).toBe(
      'hierarchy-db: cannot reach the database at 127.0.0.1:1: connection refused',
    );
    for (const result of [json, pretty, fatal]) expect(result.stderr).not.toContain('s3cret-pw');
  });

  /** One record logged through the package's createLogger in a fresh process; its stderr. */
  async function logOnce(format: string): Promise<string> {
    const result = await runNode(
      [
        '--input-type=module',
        '--eval',
        `import { createLogger } from 'hierarchy-db';
       createLogger('info', 'test', ${JSON.stringify(format)}).info(
         { event: 'demo.step', password: 'hunter2' },
         'connected to postgres://alice:s3cret@db:5432/app',
       );`,
      ],
      { cwd: ROOT },
    );
    expect(result.code, result.stderr).toBe(0);
    return result.stderr;
  }

  it('writes JSON lines with json', async () => {
    const line = JSON.parse((await logOnce('json')).trim());
    expect(line).toMatchObject({ level: 30, event: 'demo.step', password: '***' });
    expect(line.msg).toBe('connected to postgres://alice:***@db:5432/app');
  });

  it('writes one readable line per record with pretty, redacted the same way', async () => {
    const text = (await logOnce('pretty')).trim();
    expect(text.split('\n')).toHaveLength(1);
    expect(text).toMatch(
      /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: connected to postgres:\/\/alice:\*\*\*@db/,
    );
    expect(text).toContain('"event":"demo.step"');
    expect(text).not.toContain('s3cret');
    expect(text).not.toContain('hunter2');
  });
});
