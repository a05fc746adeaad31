import type pg from 'pg';
import { isConnectionFailure } from '../db/connection-error.ts';
import type { CanonicalObjects } from './canonical-objects.ts';
import { plainIndexSql, quoteIdent, retargetFunction, withoutTableName } from './sql-text.ts';

/** A canonical definition as PostgreSQL renders it, or why it could not be rendered. */
export type Rendered<T> = { ok: true; value: T } | { ok: false; error: string };

/** A column as the catalog describes it. */
export interface ColumnFact {
  name: string;
  type: string;
  notNull: boolean;
  /** `s` for a stored generated column, '' otherwise. */
  generated: string;
  /** Default or generation expression. */
  expression: string | null;
}

/** A table (or other relation) found under one of the names the project owns. */
export interface RelationFact {
  name: string;
  /** `r` table, `m` materialized view, `v` view, ... */
  kind: string;
  owner: string;
  columns: ColumnFact[];
}

/** A constraint of `entities`. */
export interface ConstraintFact {
  name: string;
  /** `p`, `u`, `f`, `c`, ... */
  type: string;
  validated: boolean;
  columns: string[];
  referencedTable: string | null;
  referencedColumns: string[];
  definition: string;
}

/** An index as it exists. */
export interface LiveIndex {
  table: string;
  valid: boolean;
  ready: boolean;
  unique: boolean;
  partial: boolean;
  /** `pg_get_indexdef` without the table name. */
  definition: string;
}

/** A required index: what exists and what the migrations define. */
export interface IndexFact {
  name: string;
  table: string;
  live: LiveIndex | null;
  /** null for constraint indexes (their shape is checked through the constraint). */
  canonical: Rendered<string> | null;
}

/** A materialized view: what exists and what the migrations define. */
export interface ViewFact {
  name: string;
  live: { kind: string; populated: boolean; owner: string; definition: string | null } | null;
  canonical: Rendered<string>;
}

/** Everything compared between a live function and its canonical definition. */
export interface FunctionAttributes {
  /** `name(argument types)`. */
  identity: string;
  arguments: string;
  result: string;
  language: string;
  volatility: string;
  securityDefiner: boolean;
  config: string[] | null;
  source: string;
  sqlBody: string | null;
  strict: boolean;
  kind: string;
  leakproof: boolean;
  parallel: string;
  cost: number;
  rows: number;
}

/** A function as it exists. */
export interface LiveFunction extends FunctionAttributes {
  owner: string;
  publicExecute: boolean;
}

/** A function: what exists and what the migrations define. */
export interface FunctionFact {
  name: string;
  /** The live function with the canonical argument types, if any. */
  live: LiveFunction | null;
  /** Live functions of that name with other argument types. */
  otherSignatures: string[];
  canonical: Rendered<FunctionAttributes>;
}

/** A trigger: what exists and what the migrations define. */
export interface TriggerFact {
  name: string;
  table: string;
  /** `tgenabled`: O (origin, the default), A (always), R (replica only), D (disabled). */
  live: { enabled: string; definition: string } | null;
  canonical: Rendered<string>;
}

/** One privilege a role should hold. */
export interface GrantFact {
  role: string;
  privilege: string;
  object: string;
  /** null when the object does not exist (reported by its own check). */
  held: boolean | null;
}

/** The live schema next to its canonical definitions. Read in one rolled-back transaction. */
export interface SchemaFacts {
  schema: string;
  /** `quote_ident(schema)`, as the migrations pin it in search_path. */
  quotedSchema: string;
  extensions: Record<string, string | null>;
  relations: Record<string, RelationFact | null>;
  entitiesConstraints: ConstraintFact[];
  indexes: IndexFact[];
  /** Invalid indexes on the project's tables that are not among the required ones. */
  otherInvalidIndexes: { name: string; table: string }[];
  views: ViewFact[];
  functions: FunctionFact[];
  triggers: TriggerFact[];
  /** Roles of SPEC 2.5 that exist, and the privileges they should hold. */
  roles: string[];
  grants: GrantFact[];
}

/** The extensions SPEC 2.1 requires. */
export const REQUIRED_EXTENSIONS = ['ltree', 'btree_gist'] as const;
/** Tables of SPEC 2.1, 2.4 and 2.6 whose presence and shape are checked (never recreated). */
export const REQUIRED_TABLES = [
  'entities',
  'hierarchy_changes',
  'hierarchy_view_state',
  'mv_refresh_audit',
] as const;
/** The least-privilege roles of SPEC 2.5. */
export const ROLES = ['hierarchy_reader', 'hierarchy_refresher'] as const;

/** Options for {@link inspectSchema}. */
export interface InspectOptions {
  /** `lock_timeout` of the inspection. Default 10 000 ms. */
  lockTimeoutMs?: number;
  /** `statement_timeout` of the inspection. Default 60 000 ms. */
  statementTimeoutMs?: number;
}

const FUNCTION_ATTRIBUTES = `
  SELECT p.proname AS name,
         p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')' AS identity,
         pg_catalog.pg_get_function_arguments(p.oid) AS arguments,
         pg_catalog.pg_get_function_result(p.oid) AS result,
         l.lanname AS language,
         p.provolatile::text AS volatility,
         p.prosecdef AS "securityDefiner",
         p.proconfig AS config,
         p.prosrc AS source,
         CASE WHEN p.prosqlbody IS NOT NULL THEN pg_catalog.pg_get_function_sqlbody(p.oid) END AS "sqlBody",
         p.proisstrict AS strict,
         p.prokind::text AS kind,
         p.proleakproof AS leakproof,
         p.proparallel::text AS parallel,
         p.procost::float8 AS cost,
         p.prorows::float8 AS rows,
         pg_catalog.pg_get_userbyid(p.proowner) AS owner,
         (p.proacl IS NULL OR EXISTS (
            SELECT 1 FROM pg_catalog.aclexplode(p.proacl) a
             WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) AS "publicExecute"
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_language l ON l.oid = p.prolang`;

/**
 * Reads the live schema (the session's `current_schema()`) and renders every canonical
 * definition through PostgreSQL itself, so that the two are compared in the server's own
 * normal form, never as raw text: canonical views are created as temporary views, their
 * indexes on temporary tables of the same shape, functions in `pg_temp`, triggers on a
 * temporary copy of the table — all inside a transaction that is rolled back. The live objects
 * are only read; nothing outside `pg_temp` is created, and the temporary objects vanish with
 * the rollback. Needs the TEMP privilege (PUBLIC has it by default).
 */
export async function inspectSchema(
  client: pg.Client,
  canonical: CanonicalObjects,
  options: InspectOptions = {},
): Promise<SchemaFacts> {
  await client.query('BEGIN');
  try {
    const { rows: schemaRows } = await client.query<{
      schema: string | null;
      quoted: string | null;
      oid: number | null;
    }>(
      `SELECT current_schema() AS schema, quote_ident(current_schema()) AS quoted,
              (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())::int AS oid`,
    );
    const { schema, quoted, oid: namespace } = schemaRows[0] ?? {};
    if (!schema || !quoted || namespace === null || namespace === undefined) {
      throw new Error(
        'no schema to verify: search_path names no existing schema; set it (or the role default) to the schema the migrations ran in',
      );
    }
    // The canonical statements are run unchanged, so their unqualified `ON entities` must
    // resolve to the temporary copies: put pg_temp first explicitly (it is only implicitly
    // first, unless the path names it later). Functions are never looked up in pg_temp. Live
    // and canonical definitions are both rendered under this same path.
    await client.query(
      `SELECT set_config('search_path', 'pg_temp, ' || current_setting('search_path'), true)`,
    );
    // Canonical function bodies are compared, not run: do not validate them against the
    // (possibly damaged) live schema.
    await client.query(`SET LOCAL check_function_bodies = off`);
    await client.query(`SELECT set_config('lock_timeout', $1, true)`, [
      `${options.lockTimeoutMs ?? 10_000}ms`,
    ]);
    await client.query(`SELECT set_config('statement_timeout', $1, true)`, [
      `${options.statementTimeoutMs ?? 60_000}ms`,
    ]);

    const live = await readLive(client, namespace, canonical);
    const views = await renderViews(client, canonical, live);
    const tables = await renderTableObjects(client, quoted, canonical, live);
    const functions = await renderFunctions(client, quoted, canonical, live);
    const roles = live.roles;
    return {
      schema,
      quotedSchema: quoted,
      extensions: live.extensions,
      relations: live.relations,
      entitiesConstraints: live.entitiesConstraints,
      indexes: [...tables.indexes, ...views.indexes],
      otherInvalidIndexes: live.otherInvalidIndexes,
      views: views.views,
      functions,
      triggers: tables.triggers,
      roles,
      grants: await readGrants(client, schema, roles, live),
    };
  } finally {
    // Everything created above was temporary and is discarded here.
    await client.query('ROLLBACK').catch(() => {});
  }
}

interface LiveState {
  extensions: Record<string, string | null>;
  relations: Record<string, RelationFact | null>;
  entitiesConstraints: ConstraintFact[];
  indexes: Map<string, LiveIndex>;
  otherInvalidIndexes: { name: string; table: string }[];
  views: Map<string, NonNullable<ViewFact['live']>>;
  relationOids: Map<string, number>;
  functions: LiveFunction[];
  functionOids: Map<string, number>;
  triggers: Map<string, { table: string; enabled: string; definition: string }>;
  roles: string[];
}

async function readLive(
  client: pg.Client,
  namespace: number,
  canonical: CanonicalObjects,
): Promise<LiveState> {
  const { rows: extensionRows } = await client.query<{ name: string; version: string }>(
    'SELECT extname AS name, extversion AS version FROM pg_catalog.pg_extension WHERE extname = ANY ($1)',
    [REQUIRED_EXTENSIONS],
  );
  const extensions = Object.fromEntries(
    REQUIRED_EXTENSIONS.map((name) => [
      name,
      extensionRows.find((r) => r.name === name)?.version ?? null,
    ]),
  );

  const viewNames = canonical.views.map((v) => v.name);
  const relationNames = [...REQUIRED_TABLES, ...viewNames];
  const { rows: relationRows } = await client.query<{
    oid: number;
    name: string;
    kind: string;
    owner: string;
    populated: boolean;
    definition: string | null;
  }>(
    `SELECT c.oid::int AS oid, c.relname AS name, c.relkind::text AS kind,
            pg_catalog.pg_get_userbyid(c.relowner) AS owner, c.relispopulated AS populated,
            CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END AS definition
       FROM pg_catalog.pg_class c
      WHERE c.relnamespace = $1::oid AND c.relname = ANY ($2)`,
    [namespace, relationNames],
  );
  const { rows: columnRows } = await client.query<ColumnFact & { relation: string }>(
    `SELECT c.relname AS relation, a.attname AS name,
            pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
            a.attgenerated::text AS generated, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS expression
       FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE c.relnamespace = $1::oid AND c.relname = ANY ($2) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [namespace, REQUIRED_TABLES],
  );
  const relations: Record<string, RelationFact | null> = {};
  for (const name of REQUIRED_TABLES) {
    const row = relationRows.find((r) => r.name === name);
    relations[name] = row
      ? {
          name,
          kind: row.kind,
          owner: row.owner,
          columns: columnRows
            .filter((c) => c.relation === name)
            .map(({ relation: _relation, ...column }) => column),
        }
      : null;
  }
  const views = new Map<string, NonNullable<ViewFact['live']>>();
  for (const name of viewNames) {
    const row = relationRows.find((r) => r.name === name);
    if (row) {
      views.set(name, {
        kind: row.kind,
        populated: row.populated,
        owner: row.owner,
        definition: row.definition,
      });
    }
  }

  const entitiesOid = relationRows.find((r) => r.name === 'entities')?.oid;
  const { rows: constraintRows } =
    entitiesOid === undefined
      ? { rows: [] as ConstraintFact[] }
      : await client.query<ConstraintFact>(
          `SELECT con.conname AS name, con.contype::text AS type, con.convalidated AS validated,
                  ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
                         ORDER BY k.i)::text[] AS columns,
                  CASE WHEN con.confrelid <> 0 THEN
                    (SELECT relname FROM pg_catalog.pg_class WHERE oid = con.confrelid) END AS "referencedTable",
                  ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
                          JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
                         ORDER BY k.i)::text[] AS "referencedColumns",
                  pg_catalog.pg_get_constraintdef(con.oid) AS definition
             FROM pg_catalog.pg_constraint con
            WHERE con.conrelid = $1::oid`,
          [entitiesOid],
        );

  const requiredIndexes = [
    ...canonical.tableIndexes,
    ...canonical.constraintIndexes,
    ...canonical.views.flatMap((v) => v.indexes),
  ];
  const ownedTables = [...REQUIRED_TABLES, ...viewNames];
  const { rows: indexRows } = await client.query<LiveIndex & { name: string }>(
    `SELECT c.relname AS name, t.relname AS table, i.indisvalid AS valid, i.indisready AS ready,
            i.indisunique AS unique, i.indpred IS NOT NULL AS partial,
            pg_catalog.pg_get_indexdef(c.oid) AS definition
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
       JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
      WHERE c.relnamespace = $1::oid
        AND (c.relname = ANY ($2) OR (t.relname = ANY ($3) AND NOT (i.indisvalid AND i.indisready)))`,
    [namespace, requiredIndexes.map((i) => i.name), ownedTables],
  );
  const requiredNames = new Set(requiredIndexes.map((i) => i.name));
  const indexes = new Map(
    indexRows
      .filter((r) => requiredNames.has(r.name))
      .map(({ name, ...index }) => [
        name,
        { ...index, definition: withoutTableName(index.definition) },
      ]),
  );
  const otherInvalidIndexes = indexRows
    .filter((r) => !requiredNames.has(r.name))
    .map((r) => ({ name: r.name, table: r.table }));

  const { rows: functionRows } = await client.query<LiveFunction & { name: string; oid: number }>(
    `${FUNCTION_ATTRIBUTES.replace('SELECT p.proname', 'SELECT p.oid::int AS oid, p.proname')}
      WHERE p.pronamespace = $1::oid AND p.proname = ANY ($2)`,
    [namespace, canonical.functions.map((f) => f.name)],
  );
  const functionOids = new Map(functionRows.map((r) => [r.identity, r.oid]));

  const { rows: triggerRows } = await client.query<{
    name: string;
    table: string;
    enabled: string;
    definition: string;
  }>(
    `SELECT t.tgname AS name, c.relname AS table, t.tgenabled::text AS enabled,
            pg_catalog.pg_get_triggerdef(t.oid) AS definition
       FROM pg_catalog.pg_trigger t
       JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
      WHERE c.relnamespace = $1::oid AND NOT t.tgisinternal AND t.tgname = ANY ($2)`,
    [namespace, canonical.triggers.map((t) => t.name)],
  );
  const triggers = new Map(
    triggerRows.map((r) => [
      `${r.table}.${r.name}`,
      { table: r.table, enabled: r.enabled, definition: withoutTableName(r.definition) },
    ]),
  );

  const { rows: roleRows } = await client.query<{ name: string }>(
    'SELECT rolname AS name FROM pg_catalog.pg_roles WHERE rolname = ANY ($1) ORDER BY rolname',
    [ROLES],
  );

  return {
    extensions,
    relations,
    entitiesConstraints: constraintRows,
    indexes,
    otherInvalidIndexes,
    views,
    relationOids: new Map(relationRows.map((r) => [r.name, r.oid])),
    functions: functionRows.map(({ oid: _oid, ...f }) => f),
    functionOids,
    triggers,
    roles: roleRows.map((r) => r.name),
  };
}

let savepointCounter = 0;

/** Runs `fn` inside a savepoint that is always rolled back; an error becomes `{ ok: false }`. */
async function rendered<T>(client: pg.Client, fn: () => Promise<T>): Promise<Rendered<T>> {
  const savepoint = `hdb_verify_${++savepointCounter}`;
  await client.query(`SAVEPOINT ${savepoint}`);
  try {
    const value = await fn();
    await client.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
    return { ok: true, value };
  } catch (error) {
    if (isConnectionFailure(error)) throw error;
    await client.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, error: message.split('\n')[0] ?? message };
  }
}

async function tempIndexDefinition(client: pg.Client, name: string): Promise<string> {
  const { rows } = await client.query<{ definition: string }>(
    `SELECT pg_catalog.pg_get_indexdef(c.oid) AS definition FROM pg_catalog.pg_class c
      WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relname = $1 AND c.relkind = 'i'`,
    [name],
  );
  if (!rows[0]) throw new Error(`the canonical SQL did not create index ${name}`);
  return withoutTableName(rows[0].definition);
}

async function renderViews(
  client: pg.Client,
  canonical: CanonicalObjects,
  live: LiveState,
): Promise<{ views: ViewFact[]; indexes: IndexFact[] }> {
  const views: ViewFact[] = [];
  const indexes: IndexFact[] = [];
  for (const view of canonical.views) {
    let indexDefinitions = new Map<string, Rendered<string>>();
    const definition = await rendered(client, async () => {
      // A plain temporary view renders the same query text as a materialized view would.
      const probe = `hdb_canonical_${view.name}`;
      await client.query(`CREATE TEMPORARY VIEW ${quoteIdent(probe)} AS ${view.query}`);
      const { rows } = await client.query<{ definition: string }>(
        `SELECT pg_catalog.pg_get_viewdef(c.oid) AS definition FROM pg_catalog.pg_class c
          WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relname = $1`,
        [probe],
      );
      // A temporary table with the view's name and columns: the canonical index statements,
      // unchanged, resolve `ON <view>` to it (pg_temp is searched first).
      await client.query(
        `CREATE TEMPORARY TABLE ${quoteIdent(view.name)} AS ${view.query} WITH NO DATA`,
      );
      indexDefinitions = new Map();
      for (const index of view.indexes) {
        indexDefinitions.set(
          index.name,
          await rendered(client, async () => {
            await client.query(plainIndexSql(index.sql));
            return tempIndexDefinition(client, index.name);
          }),
        );
      }
      return rows[0]!.definition;
    });
    views.push({ name: view.name, live: live.views.get(view.name) ?? null, canonical: definition });
    for (const index of view.indexes) {
      indexes.push({
        name: index.name,
        table: index.table,
        live: live.indexes.get(index.name) ?? null,
        canonical: definition.ok
          ? (indexDefinitions.get(index.name) ?? { ok: false, error: 'not rendered' })
          : { ok: false, error: `canonical view ${view.name} failed: ${definition.error}` },
      });
    }
  }
  return { views, indexes };
}

async function renderTableObjects(
  client: pg.Client,
  quotedSchema: string,
  canonical: CanonicalObjects,
  live: LiveState,
): Promise<{ indexes: IndexFact[]; triggers: TriggerFact[] }> {
  const indexes: IndexFact[] = [];
  const triggers: TriggerFact[] = [];
  const tables = new Set([
    ...canonical.tableIndexes.map((i) => i.table),
    ...canonical.triggers.map((t) => t.table),
  ]);
  for (const table of tables) {
    const indexDefinitions = new Map<string, Rendered<string>>();
    const triggerDefinitions = new Map<string, Rendered<string>>();
    const copy = await rendered(client, async () => {
      // Columns only (no indexes, constraints or triggers): the canonical statements add them.
      await client.query(
        `CREATE TEMPORARY TABLE ${quoteIdent(table)} (LIKE ${quotedSchema}.${quoteIdent(table)})`,
      );
      for (const index of canonical.tableIndexes.filter((i) => i.table === table)) {
        indexDefinitions.set(
          index.name,
          await rendered(client, async () => {
            await client.query(plainIndexSql(index.sql));
            return tempIndexDefinition(client, index.name);
          }),
        );
      }
      for (const trigger of canonical.triggers.filter((t) => t.table === table)) {
        triggerDefinitions.set(
          trigger.name,
          await rendered(client, async () => {
            await client.query(trigger.sql);
            const { rows } = await client.query<{ definition: string }>(
              `SELECT pg_catalog.pg_get_triggerdef(t.oid) AS definition FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid = $1::regclass AND t.tgname = $2`,
              [`pg_temp.${quoteIdent(table)}`, trigger.name],
            );
            if (!rows[0])
              throw new Error(`the canonical SQL did not create trigger ${trigger.name}`);
            return withoutTableName(rows[0].definition);
          }),
        );
      }
    });
    const failed = (what: string): Rendered<string> => ({
      ok: false,
      error: copy.ok ? `${what} not rendered` : `cannot copy table ${table}: ${copy.error}`,
    });
    for (const index of canonical.tableIndexes.filter((i) => i.table === table)) {
      indexes.push({
        name: index.name,
        table,
        live: live.indexes.get(index.name) ?? null,
        canonical: indexDefinitions.get(index.name) ?? failed(`index ${index.name}`),
      });
    }
    for (const trigger of canonical.triggers.filter((t) => t.table === table)) {
      const found = live.triggers.get(`${table}.${trigger.name}`);
      triggers.push({
        name: trigger.name,
        table,
        live: found ? { enabled: found.enabled, definition: found.definition } : null,
        canonical: triggerDefinitions.get(trigger.name) ?? failed(`trigger ${trigger.name}`),
      });
    }
  }
  for (const index of canonical.constraintIndexes) {
    indexes.push({
      name: index.name,
      table: index.table,
      live: live.indexes.get(index.name) ?? null,
      canonical: null,
    });
  }
  return { indexes, triggers };
}

async function renderFunctions(
  client: pg.Client,
  quotedSchema: string,
  canonical: CanonicalObjects,
  live: LiveState,
): Promise<FunctionFact[]> {
  const facts: FunctionFact[] = [];
  for (const fn of canonical.functions) {
    const attributes = await rendered(client, async () => {
      // Created in pg_temp with the schema pinned exactly as the migration pins it.
      const sql = retargetFunction(fn.sql.replaceAll('__SCHEMA__', quotedSchema), {
        schema: 'pg_temp',
        orReplace: false,
      });
      await client.query(sql);
      const { rows } = await client.query<FunctionAttributes & { owner: string; name: string }>(
        `${FUNCTION_ATTRIBUTES}
          WHERE p.pronamespace = pg_catalog.pg_my_temp_schema() AND p.proname = $1`,
        [fn.name],
      );
      const row = rows[0];
      if (!row) throw new Error(`the canonical SQL did not create function ${fn.name}`);
      return functionAttributes(row);
    });
    const candidates = live.functions.filter((f) => f.identity.startsWith(`${fn.name}(`));
    const match = attributes.ok
      ? candidates.find((f) => f.identity === attributes.value.identity)
      : candidates.length === 1
        ? candidates[0]
        : undefined;
    facts.push({
      name: fn.name,
      live: match
        ? { ...functionAttributes(match), owner: match.owner, publicExecute: match.publicExecute }
        : null,
      otherSignatures: candidates.filter((f) => f !== match).map((f) => f.identity),
      canonical: attributes,
    });
  }
  return facts;
}

function functionAttributes(row: FunctionAttributes): FunctionAttributes {
  return {
    identity: row.identity,
    arguments: row.arguments,
    result: row.result,
    language: row.language,
    volatility: row.volatility,
    securityDefiner: row.securityDefiner,
    config: row.config,
    source: row.source,
    sqlBody: row.sqlBody,
    strict: row.strict,
    kind: row.kind,
    leakproof: row.leakproof,
    parallel: row.parallel,
    cost: Number(row.cost),
    rows: Number(row.rows),
  };
}

/** The privileges SPEC 2.5 gives the roles (granted by the migrations' roles SQL). */
async function readGrants(
  client: pg.Client,
  schema: string,
  roles: string[],
  live: LiveState,
): Promise<GrantFact[]> {
  const wanted: { role: string; privilege: string; object: string; check: string; arg: unknown }[] =
    [];
  const oidOf = (identity: string) => live.functionOids.get(identity) ?? null;
  if (roles.includes('hierarchy_reader')) {
    wanted.push({
      role: 'hierarchy_reader',
      privilege: 'USAGE',
      object: `schema ${schema}`,
      check: `has_schema_privilege($1, $2::text, 'USAGE')`,
      arg: schema,
    });
    for (const view of live.views.keys()) {
      wanted.push({
        role: 'hierarchy_reader',
        privilege: 'SELECT',
        object: view,
        check: `has_table_privilege($1, $2::oid, 'SELECT')`,
        arg: live.relationOids.get(view) ?? null,
      });
    }
    wanted.push({
      role: 'hierarchy_reader',
      privilege: 'EXECUTE',
      object: 'hierarchy_view_status()',
      check: `has_function_privilege($1, $2::oid, 'EXECUTE')`,
      arg: oidOf('hierarchy_view_status()'),
    });
  }
  if (roles.includes('hierarchy_refresher')) {
    wanted.push({
      role: 'hierarchy_refresher',
      privilege: 'USAGE',
      object: `schema ${schema}`,
      check: `has_schema_privilege($1, $2::text, 'USAGE')`,
      arg: schema,
    });
    wanted.push({
      role: 'hierarchy_refresher',
      privilege: 'EXECUTE',
      object: 'refresh_hierarchy_views(boolean, text[], text)',
      check: `has_function_privilege($1, $2::oid, 'EXECUTE')`,
      arg: oidOf('refresh_hierarchy_views(boolean, text[], text)'),
    });
  }
  const grants: GrantFact[] = [];
  for (const { role, privilege, object, check, arg } of wanted) {
    let held: boolean | null = null;
    if (arg !== null) {
      const { rows } = await client.query<{ held: boolean | null }>(`SELECT ${check} AS held`, [
        role,
        arg,
      ]);
      held = rows[0]?.held ?? null;
    }
    grants.push({ role, privilege, object, held });
  }
  return grants;
}
