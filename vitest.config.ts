import { defineConfig } from 'vitest/config';

/**
 * Test files that need no database: they run in the `unit` project, which never starts
 * PostgreSQL. Everything else is in the `database` project, so a new test file lands there until
 * it is listed here (by name, not by folder: a folder can hold both kinds).
 */
const UNIT_TESTS = [
  'test/cli/config-file.test.ts',
  'test/cli/errors.test.ts',
  'test/cli/lazy-commands.test.ts',
  'test/cli/log-format.test.ts',
  'test/cli/readme.test.ts',
  'test/config/config.test.ts',
  'test/daemon/backoff.test.ts',
  'test/daemon/change-debouncer.test.ts',
  'test/daemon/daemon-flags.test.ts',
  'test/daemon/daemon-probes.test.ts',
  'test/db/embedded-server-access.test.ts',
  'test/deploy/manifests.test.ts',
  'test/migrate/migration-sql.test.ts',
  'test/migrate/shipped-migrations.test.ts',
  'test/package/pack.test.ts',
  'test/public-api.test.ts',
  'test/verify/imports.test.ts',
];

export default defineConfig({
  test: {
    // Test files run in parallel, each on its own cloned database; 2 cores here.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        // The CLI tests run dist/: it is rebuilt first when a source changed.
        test: { name: 'unit', include: UNIT_TESTS, globalSetup: ['test/build-setup.ts'] },
      },
      {
        extends: true,
        test: {
          name: 'database',
          include: ['test/**/*.test.ts'],
          exclude: UNIT_TESTS,
          // Rebuilds dist/ when stale; starts the test server and migrates the template
          // database (only for this project).
          globalSetup: ['test/build-setup.ts', 'test/global-setup.ts'],
        },
      },
    ],
  },
});
