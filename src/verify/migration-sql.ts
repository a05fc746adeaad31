import { MigrationBuilder } from 'node-pg-migrate';

/** The part of a migration module this file needs. */
export interface MigrationModule {
  up?: (pgm: MigrationBuilder) => unknown;
}

/**
 * The SQL a migration's `up` emits, recorded without a database (our migrations only emit
 * SQL; a builder method that would query throws). Used to read definitions that a released
 * migration wrote inline instead of exporting, without editing the released file.
 */
export async function recordMigrationSql(migration: MigrationModule): Promise<string[]> {
  const noDatabase = {
    query: async () => {
      throw new Error('recording a migration: no database queries');
    },
    select: async () => [],
  };
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const pgm = new MigrationBuilder(noDatabase as never, {}, false, silent);
  await migration.up?.(pgm);
  return pgm.getSqlSteps();
}
