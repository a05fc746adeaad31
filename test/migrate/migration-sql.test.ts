import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logging/logger.ts';
import { listMigrationFiles } from '../../src/migrate/migration-files.ts';
import { droppedTables, migrationSql } from '../../src/migrate/migration-sql.ts';
import { DATA_TABLES } from '../../src/migrate/migrator.ts';

describe('droppedTables', () => {
  it('reads DROP TABLE lists, quoted and schema-qualified names, and skips function bodies', () => {
    expect(
      droppedTables(`
        DROP TABLE IF EXISTS entities;
        drop table public.mv_refresh_audit, "Odd Name", hierarchy_changes CASCADE;
        -- DROP TABLE commented_out;
        CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $fn$ BEGIN DROP TABLE inside_fn; END $fn$;
        DO $$ BEGIN EXECUTE 'DROP TABLE in_do'; END $$;
      `),
    ).toEqual(['entities', 'mv_refresh_audit', 'Odd Name', 'hierarchy_changes']);
  });

  it('finds the data tables in the shipped down migrations that drop them', async () => {
    const logger = createLogger('silent');
    const found: Record<string, string[]> = {};
    for (const file of await listMigrationFiles()) {
      const tables = droppedTables(await migrationSql(file, 'down', logger)).filter((t) =>
        DATA_TABLES.includes(t),
      );
      if (tables.length > 0) found[file.name] = tables;
    }
    expect(found).toEqual({
      '0001_entities': ['entities'],
      '0003_refresh_engine': ['mv_refresh_audit'],
    });
  });
});
