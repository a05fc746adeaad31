import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { startServer } from './start-server.ts';

function dockerEngineRuns(): boolean {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

// TEST_PG_IMAGE needs Docker; without an engine the suite must fail with one clear line.
describe.skipIf(dockerEngineRuns())('TEST_PG_IMAGE without a Docker engine', () => {
  it('fails with one line naming the image and the missing engine', async () => {
    const error = await startServer({ kind: 'testcontainers', image: 'postgres:16' }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error?.message).toMatch(/^TEST_PG_IMAGE=postgres:16 needs a running Docker engine: /);
    expect(error?.message.split('\n')).toHaveLength(1);
    expect(error?.stack).toBe(error?.message);
  }, 60_000);
});
