/** Which PostgreSQL the test suite runs against. */
export type DatabaseProvider =
  | { kind: 'external'; url: string }
  | { kind: 'testcontainers'; image: string }
  | { kind: 'embedded' };

/**
 * Chooses the test database from the environment:
 * `TEST_DATABASE_URL` (an existing server), else `TEST_PG_IMAGE` (a container through
 * testcontainers; needs Docker), else embedded PostgreSQL 18 from npm (no setup at all).
 */
export function selectProvider(env: NodeJS.ProcessEnv): DatabaseProvider {
  const url = env.TEST_DATABASE_URL?.trim();
  const image = env.TEST_PG_IMAGE?.trim();
  if (url && image) {
    throw new Error('set either TEST_DATABASE_URL or TEST_PG_IMAGE, not both');
  }
  if (url) {
    if (!/^postgres(ql)?:\/\//.test(url)) {
      throw new Error(
        `TEST_DATABASE_URL must be a postgres:// URL, got '${url.replace(/:[^:@/]*@/, ':***@')}'`,
      );
    }
    return { kind: 'external', url };
  }
  if (image) {
    if (!/^[\w./-]+(:[\w.-]+)?(@sha256:[a-f0-9]{64})?$/.test(image)) {
      throw new Error(
        `TEST_PG_IMAGE must be an image reference such as postgres:16, got '${image}'`,
      );
    }
    return { kind: 'testcontainers', image };
  }
  return { kind: 'embedded' };
}

/** The same server URL pointing at another database. */
export function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}
