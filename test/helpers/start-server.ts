import { EmbeddedServerAccessError, startEmbeddedServer } from '../../src/db/embedded-server.ts';
import type { DatabaseProvider } from './database-provider.ts';

/** A server the suite can create databases on. */
export interface TestServer {
  /** Superuser URL of a maintenance database on the server. */
  adminUrl: string;
  description: string;
  stop(): Promise<void>;
}

/** Starts (or connects to) the server the provider names. */
export async function startServer(provider: DatabaseProvider): Promise<TestServer> {
  switch (provider.kind) {
    case 'external':
      return { adminUrl: provider.url, description: 'TEST_DATABASE_URL', stop: async () => {} };
    case 'embedded': {
      const server = await startEmbeddedServer().catch((error: unknown) => {
        if (!(error instanceof EmbeddedServerAccessError)) throw error;
        // One line, with the way out the suite has besides moving the checkout.
        const clear = new Error(
          `${error.message}, or run the tests against a server with TEST_DATABASE_URL=postgres://...`,
        );
        clear.stack = clear.message;
        throw clear;
      });
      return {
        adminUrl: server.url,
        description: `embedded PostgreSQL on port ${server.port}`,
        stop: () => server.destroy(),
      };
    }
    case 'testcontainers':
      return startContainer(provider.image);
  }
}

async function startContainer(image: string): Promise<TestServer> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  try {
    const container = await new PostgreSqlContainer(image).withStartupTimeout(120_000).start();
    return {
      adminUrl: container.getConnectionUri(),
      description: `container ${image}`,
      stop: async () => {
        await container.stop();
      },
    };
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    // One clear line instead of testcontainers' multi-page trace.
    const clear = new Error(`TEST_PG_IMAGE=${image} needs a running Docker engine: ${reason}`);
    clear.stack = clear.message;
    throw clear;
  }
}
