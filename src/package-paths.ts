import { fileURLToPath } from 'node:url';

/** The package's root directory (where `package.json`, `migrations/` and `sql/` are). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The directory the project's migrations ship in. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations/', import.meta.url));

/** The canonical definitions of the derived database objects, one per file (see `sql/README.md`). */
export const SQL_DIR = fileURLToPath(new URL('../sql/', import.meta.url));
