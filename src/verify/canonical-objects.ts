// The canonical definition of every derived object `verify` compares and `repair` rebuilds.
//
// One source of truth per object: the LATEST migration that defines it. Nothing is copied here;
// definitions are imported from the migration files (exported constants where the migration
// exports them, otherwise the SQL its `up` emits, recorded without a database). When a new
// migration redefines an object, point the import below at it: test/verify/canonical-objects
// fails while an object still points at an older migration than the newest defining it.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as entitiesMigration from '../../migrations/0001_entities.ts';
import * as refreshEngineMigration from '../../migrations/0003_refresh_engine.ts';
import { SQL_DIR } from '../package-paths.ts';
import { recordMigrationSql } from './migration-sql.ts';
import { functionNameOf, splitSqlStatements } from './sql-text.ts';

/** A plain index (not backing a constraint). */
export interface CanonicalIndex {
  name: string;
  table: string;
  /** `CREATE [UNIQUE] INDEX name ON table ...`, unqualified. */
  sql: string;
  /** The migration the definition comes from, e.g. `0002_hierarchy_views`. */
  source: string;
}

/** An index that backs a constraint of `entities`: checked for validity, never recreated. */
export interface CanonicalConstraintIndex {
  name: string;
  table: string;
  constraint: string;
  source: string;
}

/** A materialized view and the indexes it needs. */
export interface CanonicalView {
  name: string;
  query: string;
  indexes: CanonicalIndex[];
  source: string;
}

/** A function; its SQL may contain `__SCHEMA__`, replaced by the schema it lives in. */
export interface CanonicalFunction {
  name: string;
  sql: string;
  /** The migration revoked EXECUTE from PUBLIC. */
  revokeFromPublic: boolean;
  source: string;
}

/** A trigger on a table. */
export interface CanonicalTrigger {
  name: string;
  table: string;
  functionName: string;
  sql: string;
  /** Part of change tracking (SPEC 2.4): untracked writes may have happened while it was off. */
  tracksChanges: boolean;
  source: string;
}

/** Everything `verify` and `repair` compare with. */
export interface CanonicalObjects {
  views: CanonicalView[];
  /** Plain indexes on tables, e.g. the composite GiST on `entities`. */
  tableIndexes: CanonicalIndex[];
  constraintIndexes: CanonicalConstraintIndex[];
  functions: CanonicalFunction[];
  triggers: CanonicalTrigger[];
  /** Creates the roles when allowed and grants their privileges (idempotent). */
  grantsSql: string;
  grantsSource: string;
}

interface ViewDefinition {
  name: string;
  query: string;
  indexes: { name: string; sql: string }[];
}

/** Interim: the view's query from its sql/views definition file, and its three indexes. */
function viewFromSql(name: string, definition: string): ViewDefinition {
  const text = readFileSync(join(SQL_DIR, 'views', `${definition}.sql`), 'utf8');
  const query = text
    .slice(text.indexOf(' AS\n') + 4)
    .trim()
    .replace(/;$/, '');
  return {
    name,
    query,
    indexes: [
      {
        name: `${name}_entity_id_key`,
        sql: `CREATE UNIQUE INDEX ${name}_entity_id_key ON ${name} (entity_id)`,
      },
      {
        name: `${name}_path_gist`,
        sql: `CREATE INDEX ${name}_path_gist ON ${name} USING gist (path)`,
      },
      {
        name: `${name}_depth_path_idx`,
        sql: `CREATE INDEX ${name}_depth_path_idx ON ${name} (path_depth, path)`,
      },
    ],
  };
}
const ENTITY_ANCESTORS_VIEW = viewFromSql('mv_entity_ancestors', 'hierarchy_ancestors_definition');
const DESCENDANT_COUNTS_VIEW = viewFromSql(
  'mv_descendant_counts',
  'hierarchy_descendant_counts_definition',
);

const ENTITIES_SOURCE = '0001_entities';
const VIEWS_SOURCE = '0004_fast_hierarchy_views';
const REFRESH_SOURCE = '0003_refresh_engine';

let cached: Promise<CanonicalObjects> | undefined;

/** The canonical objects (loaded once per process). */
export function loadCanonicalObjects(): Promise<CanonicalObjects> {
  cached ??= build();
  return cached;
}

async function build(): Promise<CanonicalObjects> {
  // 0001 writes its indexes, function and trigger inline: read them from the SQL it emits.
  const entities = definitionsIn(await recordMigrationSql(entitiesMigration), ENTITIES_SOURCE);
  const refreshStatements = await recordMigrationSql(refreshEngineMigration);
  const revoked = new Set(
    refreshStatements.flatMap((s) =>
      [
        ...s.matchAll(
          /REVOKE\s+ALL\s+ON\s+FUNCTION\s+([A-Za-z_][\w$]*)\s*\([^)]*\)\s+FROM\s+PUBLIC/gi,
        ),
      ].map((m) => m[1]!),
    ),
  );

  const views = [ENTITY_ANCESTORS_VIEW, DESCENDANT_COUNTS_VIEW].map((view) =>
    canonicalView(view, VIEWS_SOURCE),
  );
  const functions: CanonicalFunction[] = [
    ...entities.functions,
    ...[
      refreshEngineMigration.TRACK_CHANGE_FUNCTION_SQL,
      refreshEngineMigration.PENDING_CHANGES_FUNCTION_SQL,
      refreshEngineMigration.VIEW_STATUS_FUNCTION_SQL,
      refreshEngineMigration.REFRESH_FUNCTION_SQL,
    ].map((sql) => ({
      name: functionNameOf(sql),
      sql: sql.trim(),
      revokeFromPublic: revoked.has(functionNameOf(sql)),
      source: REFRESH_SOURCE,
    })),
  ];
  const triggers: CanonicalTrigger[] = [
    ...entities.triggers,
    ...refreshEngineMigration.TRACKING_TRIGGERS_SQL.map((sql) => ({
      ...triggerOf(sql, REFRESH_SOURCE),
      tracksChanges: true,
    })),
  ];
  return {
    views,
    tableIndexes: entities.indexes,
    // Both back constraints declared in 0001's CREATE TABLE (SPEC 2.1: primary key, unique path).
    constraintIndexes: [
      {
        name: 'entities_pkey',
        table: 'entities',
        constraint: 'entities_pkey',
        source: ENTITIES_SOURCE,
      },
      {
        name: 'entities_path_key',
        table: 'entities',
        constraint: 'entities_path_key',
        source: ENTITIES_SOURCE,
      },
    ],
    functions,
    triggers,
    grantsSql: refreshEngineMigration.ROLES_SQL,
    grantsSource: REFRESH_SOURCE,
  };
}

function canonicalView(view: ViewDefinition, source: string): CanonicalView {
  return {
    name: view.name,
    query: view.query.trim(),
    indexes: view.indexes.map((index) => ({
      name: index.name,
      table: view.name,
      sql: index.sql.trim(),
      source,
    })),
    source,
  };
}

const INDEX_STATEMENT =
  /^CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][\w$]*)\s+ON\s+(?:ONLY\s+)?([A-Za-z_][\w$]*)/i;

/** Indexes, functions and triggers a migration's recorded SQL defines, in order. */
export function definitionsIn(
  statements: string[],
  source: string,
): { indexes: CanonicalIndex[]; functions: CanonicalFunction[]; triggers: CanonicalTrigger[] } {
  const indexes: CanonicalIndex[] = [];
  const functions: CanonicalFunction[] = [];
  const triggers: CanonicalTrigger[] = [];
  for (const statement of statements.flatMap(splitSqlStatements)) {
    const index = INDEX_STATEMENT.exec(statement);
    if (index) {
      indexes.push({ name: index[1]!, table: index[2]!, sql: statement, source });
    } else if (/^CREATE\s+(OR\s+REPLACE\s+)?FUNCTION\s/i.test(statement)) {
      functions.push({
        name: functionNameOf(statement),
        sql: statement,
        revokeFromPublic: false,
        source,
      });
    } else if (/^CREATE\s+TRIGGER\s/i.test(statement)) {
      triggers.push({ ...triggerOf(statement, source), tracksChanges: false });
    }
  }
  return { indexes, functions, triggers };
}

function triggerOf(sql: string, source: string): Omit<CanonicalTrigger, 'tracksChanges'> {
  const name = /CREATE\s+TRIGGER\s+([A-Za-z_][\w$]*)/i.exec(sql)?.[1];
  const table = /\sON\s+([A-Za-z_][\w$]*)/i.exec(sql)?.[1];
  const functionName = /EXECUTE\s+(?:FUNCTION|PROCEDURE)\s+([A-Za-z_][\w$]*)/i.exec(sql)?.[1];
  if (!name || !table || !functionName) {
    throw new Error(`cannot read the trigger definition: ${sql.slice(0, 80)}`);
  }
  return { name, table, functionName, sql: sql.trim(), source };
}
