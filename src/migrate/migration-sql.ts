import { readFile } from 'node:fs/promises';
import { jiti, MigrationBuilder } from 'node-pg-migrate';
import type { Logger } from '../logging/logger.ts';
import type { MigrationFile } from './migration-files.ts';

/**
 * The SQL a migration runs in one direction, without a database: a `.sql` file's section (its
 * up section runs from the start to the `-- Down Migration` marker, the down section after it,
 * as node-pg-migrate reads them), or what a `.ts`/`.js` file's `up`/`down` emits into a
 * builder that refuses queries (this project's migrations only emit SQL). Empty when the
 * migration has no such direction.
 */
export async function migrationSql(
  file: MigrationFile,
  direction: 'up' | 'down',
  logger: Logger,
): Promise<string> {
  if (file.path.endsWith('.sql')) {
    const text = await readFile(file.path, 'utf8');
    const marker = /^\s*--[\s-]*down\s+migration.*$/im.exec(text);
    if (direction === 'up') return (marker ? text.slice(0, marker.index) : text).trim();
    return marker ? text.slice(marker.index + marker[0].length).trim() : '';
  }
  // Loaded as node-pg-migrate loads it (its shared jiti instance): the runner may load the same
  // file next in this process, and Node refuses to require() an ES module that import() holds.
  const module = (await jiti.import(file.path)) as Partial<
    Record<'up' | 'down', (pgm: MigrationBuilder) => unknown>
  >;
  const fn = module[direction];
  if (typeof fn !== 'function') return '';
  const noDatabase = {
    query: async () => {
      throw new Error('migration SQL without a database: no queries');
    },
    select: async () => [],
  };
  const pgm = new MigrationBuilder(noDatabase as never, {}, false, logger as never);
  await fn(pgm);
  return pgm.getSqlSteps().join('\n');
}

/**
 * Names of the tables a SQL text drops with `DROP TABLE` (lower-cased, unquoted, without
 * schema). Dollar-quoted bodies are skipped: a function that drops a table when called does not
 * drop it when the migration runs.
 */
export function droppedTables(sqlText: string): string[] {
  const text = sqlText.replace(/\$([A-Za-z_]\w*)?\$[\s\S]*?\$\1\$/g, ' ').replace(/--[^\n]*/g, ' ');
  const names = new Set<string>();
  for (const match of text.matchAll(/\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?([^;]+)/gi)) {
    const list = (match[1] ?? '').replace(/\s+(?:CASCADE|RESTRICT)\s*$/i, '');
    for (const item of list.split(',')) {
      const name = item.trim().split('.').at(-1)?.trim() ?? '';
      const unquoted = name.startsWith('"') ? name.slice(1, -1) : name.toLowerCase();
      if (unquoted) names.add(unquoted);
    }
  }
  return [...names];
}
