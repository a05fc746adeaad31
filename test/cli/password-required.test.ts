import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { type PasswordServer, startPasswordServer } from '../helpers/password-server.ts';

// A server that asks for a password, and a URL without one: pg fails on its own side mid-SCRAM
// and used to leave the socket open, so the CLI printed the error and then hung (README,
// "Commands": exit 3 for a database that cannot be reached, within the connect timeout).
describe('a server that asks for a password the URL does not give', () => {
  let server: PasswordServer | undefined;
  let unavailable = '';

  beforeAll(async () => {
    const started = await startPasswordServer(inject('adminUrl'));
    if ('unavailable' in started) unavailable = started.unavailable;
    else {
      server = started;
      process.stderr.write(`[password-required] on ${server.description}\n`);
    }
  });
  afterAll(async () => {
    await server?.stop();
  });

  it.for<[string, string[]]>([
    ['status (a pool)', ['status']],
    ['migrate status (a client)', ['migrate', 'status']],
    ['refresh', ['refresh']],
    ['seed', ['seed', '--entities', '10']],
  ])('%s exits 3 within the connect timeout, naming host:port only', async ([, args], context) => {
    if (!server) {
      context.skip(unavailable);
      return;
    }
    const url = `postgres://${server.role}@${server.hostPort}/postgres`;
    // The server would wait 60 s (authentication_timeout) for an answer: the bound is below it.
    const result = await runCli([...args, '--database-url', url], { timeoutMs: 45_000 });
    expect(result.code, result.stderr).toBe(3);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(server.hostPort);
    expect(lines[0]).toContain('asks for a password');
    expect(result.stderr).not.toContain(server.password);
    // 5 s connect timeout plus a CLI start through tsx on two busy cores.
    expect(result.durationMs).toBeLessThan(30_000);
  });
});
