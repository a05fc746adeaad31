import { createHash } from 'node:crypto';
import { readdir, readFile, realpath, writeFile } from 'node:fs/promises';
import { basename, extname, join, resolve, sep } from 'node:path';
import { ConfigError } from '../config/config-error.ts';

import { MIGRATIONS_DIR } from '../package-paths.ts';

export { MIGRATIONS_DIR };

const MIGRATION_EXTENSIONS = new Set(['.ts', '.js', '.sql']);

/** A migration file on disk. `name` is the file name without extension, as node-pg-migrate records it. */
export interface MigrationFile {
  name: string;
  path: string;
  checksum: string;
}

/**
 * Lists migration files in the order they apply, with a SHA-256 of each file's content.
 * Line endings are normalised so a checkout with CRLF does not look tampered with.
 */
export async function listMigrationFiles(dir = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = entries
    .filter(
      (e) => e.isFile() && !e.name.startsWith('.') && MIGRATION_EXTENSIONS.has(extname(e.name)),
    )
    .map((e) => e.name)
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  return Promise.all(
    files.map(async (file) => {
      const path = join(dir, file);
      return { name: basename(file, extname(file)), path, checksum: await checksumFile(path) };
    }),
  );
}

/** SHA-256 (hex) of a file with CRLF normalised to LF. */
export async function checksumFile(path: string): Promise<string> {
  const content = (await readFile(path, 'utf8')).replace(/\r\n/g, '\n');
  return createHash('sha256').update(content).digest('hex');
}

/** True when `dir`, as given or with symlinks resolved, lies inside a `node_modules` directory. */
async function isInsideNodeModules(dir: string): Promise<boolean> {
  const inside = (path: string) => resolve(path).split(sep).includes('node_modules');
  if (inside(dir)) return true;
  const real = await realpath(dir).catch(() => undefined);
  return real !== undefined && inside(real);
}

const TEMPLATE = `// {{NAME}}: describe what this migration changes and why.
// Released migrations are never edited: \`migrate up\` refuses to run when an applied file changed.
import type { MigrationBuilder } from 'node-pg-migrate';

export async function up(pgm: MigrationBuilder): Promise<void> {
  // To use CREATE INDEX CONCURRENTLY, call pgm.noTransaction() first.
  pgm.sql(\`
  \`);
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.sql(\`
  \`);
}
`;

/**
 * Creates `NNNN_name.ts` from the template, numbered after the last migration.
 * @returns the path of the new file
 */
export async function createMigrationFile(name: string, dir = MIGRATIONS_DIR): Promise<string> {
  if (!/^[a-z0-9][a-z0-9_-]*$/i.test(name)) {
    throw new ConfigError(
      `migration name '${name}' must be letters, digits, '-' or '_' (for example add_entity_kind)`,
    );
  }
  if (await isInsideNodeModules(dir)) {
    throw new ConfigError(
      dir === MIGRATIONS_DIR
        ? "migrate create: the migrations shipped with the installed hierarchy-db are not edited in place (an install replaces them); name your project's migrations directory with --migrations-dir DIR"
        : `migrate create: ${dir} is inside node_modules (an install replaces it); name a directory of your project with --migrations-dir DIR`,
    );
  }
  const existing = await listMigrationFiles(dir);
  const last = existing.at(-1);
  const lastNumber = last ? Number.parseInt(last.name, 10) || 0 : 0;
  const fileName = `${String(lastNumber + 1).padStart(4, '0')}_${name.toLowerCase()}.ts`;
  const path = join(dir, fileName);
  await writeFile(path, TEMPLATE.replace('{{NAME}}', fileName), { flag: 'wx' });
  return path;
}
