import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listMigrationFiles, MIGRATIONS_DIR } from '../../src/migrate/migration-files.ts';
import { runCli, runNode } from '../helpers/cli.ts';

// The migrations run from the files the package ships (migrations/, in the installed package
// under node_modules/hierarchy-db): what is checksummed is what ships and what runs.

/**
 * Checksums (SHA-256, LF line endings) that databases migrated by the released versions
 * recorded. A changed file would make every such database refuse `migrate up`.
 */
const RELEASED = {
  '0001_entities': '57ff985e80f12264e56d14363b23ce7085aaa332380823a5bbbd375b39bddb13',
  '0002_hierarchy_views': 'bb087bfb3f2bb8d229b18b0877d4d143f236ae30b4b6641c8b3191c79551d84c',
  '0003_refresh_engine': '1ec29dd71c8f56178ef24a0a019c68b9d1096faa1647c15e2fb398342531fa43',
  '0004_fast_hierarchy_views': '318cd34c1dae95645f1d173073e13c042ccd04b4d61f8bd8aa5317c7c721d7f8',
};

describe('shipped migrations', () => {
  it('keep the checksums that migrated databases recorded', async () => {
    const files = await listMigrationFiles();
    const checksums = Object.fromEntries(files.map((f) => [f.name, f.checksum]));
    for (const [name, checksum] of Object.entries(RELEASED)) {
      expect(checksums[name], name).toBe(checksum);
    }
  });

  it('load in plain Node, without a TypeScript loader, as node-pg-migrate loads them', async () => {
    const files = (await listMigrationFiles()).filter((f) => f.path.endsWith('.ts'));
    expect(files.length).toBeGreaterThanOrEqual(4);
    const result = await runNode([
      '--input-type=module',
      '--eval',
      `import { jiti } from 'node-pg-migrate';
       const out = {};
       for (const path of ${JSON.stringify(files.map((f) => f.path))}) {
         const m = await jiti.import(path);
         out[path] = [typeof m.up, typeof m.down];
       }
       console.log(JSON.stringify(out));`,
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(Object.values(JSON.parse(result.stdout))).toEqual(
      files.map(() => ['function', 'function']),
    );
  });
});

describe('migrate create', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hierarchy-db-create-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses to write inside node_modules, with exit 2 and one line', async () => {
    const installed = join(dir, 'node_modules', 'hierarchy-db', 'migrations');
    await mkdir(installed, { recursive: true });
    const result = await runCli([
      ...['migrate', 'create', 'add_kind', '--migrations-dir', installed, '--log-format', 'pretty'],
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^hierarchy-db: migrate create: .*node_modules.*--migrations-dir/),
    ]);
    expect(await readdir(installed)).toEqual([]);
  });

  it('writes into a project directory named with --migrations-dir', async () => {
    const project = join(dir, 'project', 'migrations');
    await mkdir(project, { recursive: true });
    const result = await runCli(['migrate', 'create', 'add_kind', '--migrations-dir', project]);
    expect(result.code, result.stderr).toBe(0);
    expect(await readdir(project)).toEqual(['0001_add_kind.ts']);
    // The package's own directory is untouched.
    expect((await readdir(MIGRATIONS_DIR)).some((f) => f.includes('add_kind'))).toBe(false);
  });
});
