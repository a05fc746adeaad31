import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { SQL_DIR } from '../package-paths.ts';

/** One file of `sql/`: the canonical definition of the object it is named after. */
export interface SqlFile {
  /** The object's name: the file name without `.sql`. */
  name: string;
  /** Where it came from, for messages: `sql/functions/refresh_hierarchy_views.sql`. */
  file: string;
  sql: string;
}

/** The canonical definitions of the derived objects, as `sql/README.md` lays them out. */
export interface SqlDefinitions {
  /** The definition views (`views/`). */
  views: SqlFile[];
  /** Functions and procedures (`functions/`). */
  functions: SqlFile[];
  /** Triggers on `entities` (`triggers/`). */
  triggers: SqlFile[];
  /** Roles and privileges (`grants.sql`), idempotent. */
  grants: SqlFile;
}

/** Reads the canonical definitions from `dir` (default: the `sql/` shipped with hierarchy-db). */
export async function loadSqlDefinitions(dir: string = SQL_DIR): Promise<SqlDefinitions> {
  const label = basename(dir);
  const read = async (relative: string): Promise<SqlFile> => ({
    name: basename(relative, '.sql'),
    file: `${label}/${relative}`,
    sql: await readFile(join(dir, relative), 'utf8'),
  });
  const folder = async (sub: string) => {
    const names = (await readdir(join(dir, sub))).filter((n) => n.endsWith('.sql')).sort();
    return Promise.all(names.map((n) => read(`${sub}/${n}`)));
  };
  const [views, functions, triggers, grants] = await Promise.all([
    folder('views'),
    folder('functions'),
    folder('triggers'),
    read('grants.sql'),
  ]);
  return { views, functions, triggers, grants };
}
